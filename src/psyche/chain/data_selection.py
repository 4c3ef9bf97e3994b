"""Which samples each trainer trains on in a round: batch-size ramp and contiguous interval assignment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from psyche.chain import committee

T = TypeVar("T")

_U64 = (1 << 64) - 1
# Upstream `psyche_core::lcg::LCG` constants (Knuth's MMIX multiplier and increment).
_LCG_A = 6364136223846793005
_LCG_C = 1442695040888963407


class BatchConfig(Protocol):
    """The three `CoordinatorConfig` fields the batch-size ramp reads."""

    @property
    def global_batch_size_warmup_tokens(self) -> int: ...
    @property
    def global_batch_size_start(self) -> int: ...
    @property
    def global_batch_size_end(self) -> int: ...


def _round_half_away(value: float) -> int:
    """Rust `f64::round` (halves away from zero) for the non-negative values the ramp produces."""
    floor = math.floor(value)
    return floor + 1 if value - floor >= 0.5 else floor


def batch_size_for_tokens(config: BatchConfig, tokens_processed: int) -> int:
    """`CoordinatorConfig::get_batch_size`: linear start→end ramp over the warmup tokens, rounded."""
    warmup = config.global_batch_size_warmup_tokens
    start, end = config.global_batch_size_start, config.global_batch_size_end
    if tokens_processed >= warmup:
        return end
    progress = float(tokens_processed) / float(warmup)
    value = float(start) + (float(end) - float(start)) * progress
    # `as u16` saturates.
    return min(max(_round_half_away(value), 0), 0xFFFF)


def batch_size(config: BatchConfig, data_index: int, max_seq_len: int) -> int:
    """Global batch size (in samples) of a round that starts at sample ``data_index``."""
    return batch_size_for_tokens(config, (data_index * max_seq_len) & _U64)


def deterministic_shuffle(items: Sequence[T], seed: int) -> list[T]:
    """Upstream `deterministic_shuffle`: Fisher-Yates from the end, j = LCG(seed).next() % (i + 1)."""
    out = list(items)
    state = seed & _U64
    for i in range(len(out) - 1, 0, -1):
        state = (state * _LCG_A + _LCG_C) & _U64
        j = state % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


@dataclass(frozen=True, slots=True)
class BatchAssignment(Generic[T]):
    """Trainer ``trainer`` trains samples ``start..=end`` (inclusive, one sample = max_seq_len tokens)."""

    trainer: T
    start: int
    end: int

    @property
    def size(self) -> int:
        """Number of samples in the interval."""
        return self.end - self.start + 1


def assign_batches(
    trainers: Sequence[T], round_random_seed: int, data_index: int, batch_size: int
) -> list[BatchAssignment[T]]:
    """Split ``batch_size`` samples from ``data_index`` into contiguous intervals over the trainers.

    ``trainers`` is in epoch-client order; it is shuffled with `deterministic_shuffle(round.random_seed)`
    and the i-th shuffled trainer gets floor(B/n) samples, plus one for i < B mod n. Trainers whose
    share is empty (B < n) get no interval. Result is in data order.
    """
    if not trainers:
        return []
    shuffled = deterministic_shuffle(trainers, round_random_seed)
    n = len(shuffled)
    base, remainder = divmod(batch_size, n)
    out: list[BatchAssignment[T]] = []
    current = data_index
    for i, trainer in enumerate(shuffled):
        size = base + (1 if i < remainder else 0)
        if size > 0:
            out.append(BatchAssignment(trainer, current, current + size - 1))
            current += size
    return out


def trainer_indices(
    clients_len: int, round_random_seed: int, tie_breaker_tasks: int = 0, verification_percent: int = 0
) -> list[int]:
    """Epoch-client indices in the Trainer committee (all of them while verification_percent = 0)."""
    if tie_breaker_tasks == 0 and verification_percent == 0:
        return list(range(clients_len))
    return [
        i
        for i in range(clients_len)
        if committee.committee_from_position(
            committee.committee_position(i, clients_len, round_random_seed),
            clients_len,
            tie_breaker_tasks,
            verification_percent,
        )
        == committee.TRAINER
    ]
