"""Borsh argument types that only instructions carry: ``WitnessMetadata`` and the ``Committee`` tag."""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from psyche.chain.layout import Writer

EVAL_NAME_BYTES = 32
MAX_EVALS = 8
MAX_PROMPT_RESULTS = 16


class Committee(enum.IntEnum):
    """A client's committee in a round (Borsh u8)."""

    TIE_BREAKER = 0
    VERIFIER = 1
    TRAINER = 2


@dataclass(frozen=True, slots=True)
class WitnessMetadata:
    """Training statistics a witness reports; the program ignores them but requires all 389 bytes."""

    SIZE: ClassVar[int] = 389

    step: int = 0
    tokens_per_sec: float = 0.0
    bandwidth_per_sec: float = 0.0
    loss: float = 0.0
    evals: Sequence[tuple[str, float]] = field(default_factory=tuple)
    prompt_results: Sequence[int] = field(default_factory=tuple)
    prompt_index: int = 0
    efficiency: float = 0.0

    def to_borsh(self) -> bytes:
        """Encode; ``FixedVec<T, N>`` is all N slots (unused ones zero) followed by the u64 length."""
        if len(self.evals) > MAX_EVALS:
            raise ValueError(f"at most {MAX_EVALS} evals fit in witness metadata, got {len(self.evals)}")
        if len(self.prompt_results) > MAX_PROMPT_RESULTS:
            raise ValueError(
                f"at most {MAX_PROMPT_RESULTS} prompt results fit in witness metadata, "
                f"got {len(self.prompt_results)}"
            )
        w = Writer().u32(self.step).f32(self.tokens_per_sec).f32(self.bandwidth_per_sec).f32(self.loss)
        for name, value in self.evals:
            w.fixed_str(name, EVAL_NAME_BYTES, truncate=True).f32(value)
        w.zeros((EVAL_NAME_BYTES + 4) * (MAX_EVALS - len(self.evals))).u64(len(self.evals))
        for result in self.prompt_results:
            try:
                w.raw(struct.pack("<i", result))
            except struct.error as exc:
                raise ValueError(f"prompt result {result} out of range for i32") from exc
        w.zeros(4 * (MAX_PROMPT_RESULTS - len(self.prompt_results))).u64(len(self.prompt_results))
        return w.u8(self.prompt_index).f32(self.efficiency).getvalue()
