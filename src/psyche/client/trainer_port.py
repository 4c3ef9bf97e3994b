"""The runner's TrainerPort over the torch Trainer: built from the run's model at first use, then kept."""

from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.client.config import TrainerEnv, model_source, trainer_config
from psyche.client.data import data_source
from psyche.client.model import ModelSpec, preset, read_hf_config
from psyche.client.parallelism import resolve_parallelism
from psyche.client.protocol import Train, TrainOutcome
from psyche.client.train import Trainer
from psyche.errors import ConfigError

log = logging.getLogger("psyche.client")


def run_seed(run_id: str) -> int:
    """The initialisation seed every client of a run shares: the first 8 bytes of sha256(run_id)."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "little")


class TorchTrainerPort:
    """Builds one Trainer for the run (same seed on every client) and keeps it across epochs."""

    def __init__(self, env: TrainerEnv, run_id: str) -> None:
        self.env = env
        self.run_id = run_id
        self.trainer: Trainer | None = None

    def _build(self, acc: CoordinatorAccount) -> Trainer:
        model = acc.model
        par = resolve_parallelism(self.env)
        if par.world_size > 1:
            # Multi-process grids need one process per rank driven in lockstep; the protocol client runs
            # a single process, so it refuses rather than training a different grid than asked for.
            raise ConfigError(
                f"DATA_PARALLELISM x TENSOR_PARALLELISM = {par.world_size}: the reference client trains "
                "in one process; set both to 1"
            )
        source = model_source(model, self.env)
        spec: ModelSpec
        if source.kind == "hf_dir" and source.directory is not None:
            spec = ModelSpec.from_hf_config(read_hf_config(source.directory), model.max_seq_len)
        else:
            spec = preset(source.preset, model.max_seq_len)
        seed = run_seed(self.run_id)
        data = data_source(
            model.data_location, seq_len=model.max_seq_len, vocab_size=spec.vocab_size, seed=seed
        )
        config = trainer_config(
            model,
            self.env,
            dp=par.dp,
            tp=par.tp,
            micro_batch_size=par.micro_batch_size,
            device=self.env.device,
        )
        trainer = Trainer(config, spec, seed, data, weights_dir=source.directory)
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
