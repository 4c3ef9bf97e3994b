"""A StepTrainer that records its calls instead of training (rank 0 and resume tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psyche.client.train import StepResult


class FakeTrainer:
    """Records every call; the loss falls by one per step."""

    distro = None  # an AdamW run

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def train_step(self, sample_indices: Sequence[int], *, step: int | None = None) -> StepResult:
        self.calls.append(("train_step", list(sample_indices)) + (() if step is None else (step,)))
        n = len(self.calls)
        return StepResult(n, 10.0 - n, len(sample_indices) * 32, 0.1, 320.0, 1e-2, None)

    def save_checkpoint(self, root: Path, epoch: int, step: int) -> Path | None:
        self.calls.append(("save_checkpoint", root, epoch, step))
        return None

    def apply_results(self, results: Sequence[Sequence[object]], step: int) -> None:
        self.calls.append(("apply_results", results, step))

    def round_to_bf16(self) -> None:
        self.calls.append(("round_to_bf16",))

    def reset_errors(self) -> None:
        self.calls.append(("reset_errors",))
