"""What rank 0 tells the other ranks of a multi-process client, and the loop those ranks run (torch-free)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from psyche.chain.accounts.model import LLM
from psyche.errors import RunManagerError


@dataclass(frozen=True, slots=True)
class Build:
    """Build the trainer for the run's ``model`` and, when ``resume`` is set, resume its newest checkpoint.

    Collective: every rank builds at once (tensor-parallel sharding and the resume barrier talk)."""

    model: LLM
    resume: Path | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """Take one optimizer step over ``indices`` (every rank gets the same ones; each trains its share)."""

    indices: Sequence[int]


@dataclass(frozen=True, slots=True)
class Save:
    """Save a checkpoint for ``epoch``/``step`` under ``root`` (collective; rank 0 writes the files)."""

    root: Path
    epoch: int
    step: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Leave the loop and exit 0."""


Message = Build | Step | Save | Shutdown


class WorkerTrainer(Protocol):
    """The part of ``train.Trainer`` a worker rank calls, with the arguments rank 0 uses."""

    def train_step(self, sample_indices: Sequence[int]) -> object: ...

    def save_checkpoint(self, root: Path, epoch: int, step: int) -> object: ...


def serve(receive: Callable[[], object], build: Callable[[Build], WorkerTrainer]) -> int:
    """A worker rank's loop: receive a message, then build / train_step / save_checkpoint, until Shutdown
    (returns 0). Rank 0 gone (``EOFError``) or a message out of order is a RunManagerError."""
    trainer: WorkerTrainer | None = None
    while True:
        try:
            message = receive()
        except EOFError:
            raise RunManagerError("rank 0 went away (its pipe closed)") from None
        if isinstance(message, Shutdown):
            return 0
        if isinstance(message, Build):
            if trainer is not None:
                raise RunManagerError("Build received twice")
            trainer = build(message)
            continue
        if not isinstance(message, Step | Save):
            raise RunManagerError(f"unknown message from rank 0: {type(message).__name__}")
        if trainer is None:
            raise RunManagerError(f"{type(message).__name__} received before Build")
        if isinstance(message, Step):
            trainer.train_step(message.indices)
        else:
            trainer.save_checkpoint(message.root, message.epoch, message.step)
