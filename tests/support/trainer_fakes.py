"""A StepTrainer that records its calls instead of training (rank 0 and resume tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psyche.client import checkpoint as ckpt
from psyche.client.distro import DistroOptimizer
from psyche.client.distro_payload import PayloadShape
from psyche.client.rank_messages import WorkerTrainer
from psyche.client.train import StepResult
from psyche.client.trainer_port import StepTrainer


class FakeTrainer(StepTrainer, WorkerTrainer):
    """Records every call; the loss falls by one per step.

    It declares both Protocols it stands in for (rank 0's and a worker's), so mypy fails when they drift.
    """

    distro: DistroOptimizer | None = None  # an AdamW run

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

    def payload_shapes(self) -> list[PayloadShape]:
        self.calls.append(("payload_shapes",))
        return []

    def checkpoint_content(self, step: int | None = None) -> ckpt.Content:
        raise AssertionError("FakeTrainer has no weights to serve")
