"""The runner's TrainerPort over the torch Trainer: built from the run's model at first use, then kept."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import struct
from pathlib import Path

from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.model import LLM, Checkpoint, CheckpointKind, HubRepo
from psyche.client.actions import Train, TrainOutcome
from psyche.client.config import TrainerEnv
from psyche.client.parallelism import resolve_parallelism
from psyche.client.train import Trainer, run_seed, trainer_for_run
from psyche.errors import ConfigError

log = logging.getLogger("psyche.client")


def offline_model(model: LLM) -> LLM:
    """The run's model with a P2P checkpoint read as its source: peers are not reachable (no P2P network).

    Epoch ends turn Dummy/Hub into P2P (spec 5.1); the repo it names is the original Hub repo, or an
    empty one when the run started from Dummy weights.
    """
    cp = model.checkpoint
    if cp.kind is CheckpointKind.P2P and isinstance(cp.repo, HubRepo):
        kind = CheckpointKind.Hub if cp.repo.repo_id.strip("\x00") else CheckpointKind.Dummy
        return dataclasses.replace(model, checkpoint=Checkpoint(kind, cp.repo))
    return model


class TorchTrainerPort:
    """Builds one Trainer for the run (the same seed on every client) and keeps it across epochs."""

    def __init__(self, env: TrainerEnv, run_id: str) -> None:
        self.env = env
        self.run_id = run_id
        self.trainer: Trainer | None = None

    def _build(self, acc: CoordinatorAccount) -> Trainer:
        par = resolve_parallelism(self.env)
        if par.world_size > 1:
            # Multi-process grids need one process per rank driven in lockstep; the protocol client runs
            # a single process, so it refuses rather than training a different grid than asked for.
            raise ConfigError(
                f"DATA_PARALLELISM x TENSOR_PARALLELISM = {par.world_size}: the reference client trains "
                "in one process; set both to 1"
            )
        trainer = trainer_for_run(offline_model(acc.model), self.env, run_seed(self.run_id), par)
        if self.env.checkpoint_dir is not None and self.env.checkpoint_dir.is_dir():
            resumed = trainer.load_latest_checkpoint(self.env.checkpoint_dir)
            if resumed is not None:
                log.info("resumed epoch %d step %d from %s", resumed[0], resumed[1], self.env.checkpoint_dir)
        return trainer

    def prepare(self, acc: CoordinatorAccount, epoch: int) -> None:
        if self.trainer is None:
            log.info("loading the model for epoch %d", epoch)
            self.trainer = self._build(acc)
        else:
            log.info("epoch %d: keeping the model in memory", epoch)

    def train(self, acc: CoordinatorAccount, task: Train) -> TrainOutcome:
        if self.trainer is None:
            self.trainer = self._build(acc)
        result = self.trainer.train_step(task.indices)
        # The commitment stands for the result a P2P client would publish; with no P2P exchange it is the
        # hash of what identifies this step's result: the round, the samples and the loss.
        commitment = hashlib.sha256(
            struct.pack("<QQQQd", task.key[0], task.key[1], task.start, task.end, result.loss)
        ).digest()
        return TrainOutcome(
            result.loss, result.tokens, result.tokens_per_second, commitment, result.mfu or 0.0
        )

    def save(self, epoch: int, step: int) -> None:
        root: Path | None = self.env.checkpoint_dir
        if root is None or self.trainer is None:
            return
        root.mkdir(parents=True, exist_ok=True)
        self.trainer.save_checkpoint(root, epoch, step)
