"""What rank 0 tells the other ranks of a multi-process client, and the loop those ranks run (torch-free)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
    """Take one optimizer step over ``indices`` (every rank gets the same ones; each trains its share);
    ``step``: the coordinator's step, which sets a Distro run's learning rate (``Trainer.train_step``)."""

    indices: Sequence[int]
    step: int | None = None


@dataclass(frozen=True, slots=True)
class Apply:
    """Apply DisTrO ``results`` (``list[list[SparseParam]]``, in the order every client uses) at the
    coordinator ``step`` (``Trainer.apply_results``); every rank applies the same ones."""

    results: Sequence[Sequence[Any]]
    step: int


@dataclass(frozen=True, slots=True)
class RoundBf16:
    """Round the parameters to bfloat16 and back (``Trainer.round_to_bf16``, at Cooldown)."""


@dataclass(frozen=True, slots=True)
class ResetErrors:
    """Zero DisTrO's error buffers (``Trainer.reset_errors``, round 0 of a cold-start epoch)."""


@dataclass(frozen=True, slots=True)
class Save:
    """Save a checkpoint for ``epoch``/``step`` under ``root`` (collective; rank 0 writes the files)."""

    root: Path
    epoch: int
    step: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Leave the loop and exit 0."""


Message = Build | Step | Save | Apply | RoundBf16 | ResetErrors | Shutdown


class WorkerTrainer(Protocol):
    """The part of ``train.Trainer`` a worker rank calls, with the arguments rank 0 uses."""

    def train_step(self, sample_indices: Sequence[int], *, step: int | None = None) -> object:
        """One optimizer step over ``sample_indices`` (``Step``)."""

    def save_checkpoint(self, root: Path, epoch: int, step: int) -> object:
        """Checkpoint ``epoch`` at ``step`` under ``root`` (``Save``; every rank calls it, rank 0 writes)."""

    def apply_results(self, results: Sequence[Sequence[Any]], step: int) -> object:
        """Apply DisTrO ``results`` at ``step`` (``Apply``)."""

    def round_to_bf16(self) -> object:
        """Round the weights to bf16 (``RoundBf16``)."""

    def reset_errors(self) -> object:
        """Reset DisTrO's error feedback (``ResetErrors``)."""


def serve(receive: Callable[[], object], build: Callable[[Build], WorkerTrainer]) -> int:
    """A worker rank's loop: receive a message, then build or call the trainer method it names, until
    Shutdown (returns 0). Rank 0 gone (``EOFError``) or a message out of order is a RunManagerError."""
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
        if not isinstance(message, Step | Save | Apply | RoundBf16 | ResetErrors):
            raise RunManagerError(f"unknown message from rank 0: {type(message).__name__}")
        if trainer is None:
            raise RunManagerError(f"{type(message).__name__} received before Build")
        if isinstance(message, Step):
            trainer.train_step(message.indices, step=message.step)
        elif isinstance(message, Save):
            trainer.save_checkpoint(message.root, message.epoch, message.step)
        elif isinstance(message, Apply):
            trainer.apply_results(message.results, message.step)
        elif isinstance(message, RoundBf16):
            trainer.round_to_bf16()
        else:
            trainer.reset_errors()
