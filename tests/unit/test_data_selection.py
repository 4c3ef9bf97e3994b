"""Batch-size ramp and contiguous per-trainer sample intervals."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from psyche.chain import data_selection


@dataclass(frozen=True)
class Cfg:
    global_batch_size_warmup_tokens: int
    global_batch_size_start: int
    global_batch_size_end: int


def test_batch_size_ramp() -> None:
    cfg = Cfg(1000, 10, 20)
    assert data_selection.batch_size(cfg, 0, 10) == 10
    assert data_selection.batch_size(cfg, 50, 10) == 15  # halfway
    assert data_selection.batch_size(cfg, 100, 10) == 20  # reached
    assert data_selection.batch_size(cfg, 5000, 10) == 20
    # 0.25 of the way: 12.5 rounds half away from zero (Rust f64::round), not to even.
    assert data_selection.batch_size(cfg, 25, 10) == 13
    assert data_selection.batch_size(Cfg(1000, 11, 20), 50, 10) == 16  # 15.5 -> 16


def test_batch_size_without_warmup_is_end() -> None:
    assert data_selection.batch_size(Cfg(0, 1, 2048), 0, 2048) == 2048


def _reference_shuffle(items: list[int], seed: int) -> list[int]:
    items = list(items)
    state = seed
    for i in range(len(items) - 1, 0, -1):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        j = state % (i + 1)
        items[i], items[j] = items[j], items[i]
    return items


def test_shuffle_matches_reference_lcg_fisher_yates() -> None:
    for seed in (0, 42, 2**64 - 1):
        assert data_selection.deterministic_shuffle(list(range(9)), seed) == _reference_shuffle(
            list(range(9)), seed
        )


def test_assign_batches_sizes_and_order() -> None:
    out = data_selection.assign_batches(["a", "b", "c"], 42, 100, 8)
    order = _reference_shuffle([0, 1, 2], 42)
    assert [a.trainer for a in out] == ["abc"[i] for i in order]
    assert [(a.start, a.end) for a in out] == [(100, 102), (103, 105), (106, 107)]


def test_fewer_samples_than_trainers_leaves_some_idle() -> None:
    out = data_selection.assign_batches(list(range(5)), 1, 0, 2)
    assert [(a.start, a.end) for a in out] == [(0, 0), (1, 1)]


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=40),
    batch=st.integers(min_value=0, max_value=300),
    start=st.integers(min_value=0, max_value=10**9),
    seed=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_assignment_covers_the_batch_exactly_once(n: int, batch: int, start: int, seed: int) -> None:
    out = data_selection.assign_batches(list(range(n)), seed, start, batch)
    covered = [i for a in out for i in range(a.start, a.end + 1)]
    assert covered == list(range(start, start + batch))
    sizes = sorted((a.size for a in out), reverse=True)
    assert all(s in (batch // n, batch // n + 1) for s in sizes)
    assert len({a.trainer for a in out}) == len(out)


def test_trainer_indices_is_everyone_without_verification() -> None:
    assert data_selection.trainer_indices(4, 9) == [0, 1, 2, 3]
    some = data_selection.trainer_indices(10, 9, tie_breaker_tasks=0, verification_percent=50)
    assert len(some) == 5


def test_fixed_shuffle_vector() -> None:
    # Computed once with _reference_shuffle above.
    assert data_selection.deterministic_shuffle(list(range(6)), 42) == [4, 2, 1, 3, 0, 5]
