"""The runner's TrainerPort over the torch Trainer: built from the run's model at first use, then kept; with
DATA_PARALLELISM x TENSOR_PARALLELISM > 1 it drives the other ranks (local processes) in lockstep."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import TCPStore

from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.model import LLM, Checkpoint, CheckpointKind, HubRepo
from psyche.chain.accounts.optimizer import Distro
from psyche.client import checkpoint as ckpt
from psyche.client.actions import RoundKey, Train, TrainOutcome
from psyche.client.checkpoint import CorruptCheckpoint, RunPoint, current_checkpoint, run_root
from psyche.client.config import TrainerEnv, model_source
from psyche.client.distributed import LOOPBACK, ParallelContext, init_parallel
from psyche.client.distro import DistroOptimizer, SparseParam
from psyche.client.distro_payload import PayloadShape, max_payload_bytes
from psyche.client.parallelism_choice import resolve_parallelism
from psyche.client.rank_messages import Apply, Build, Message, ResetErrors, RoundBf16, Save, Step, serve
from psyche.client.rank_processes import RankGroup
from psyche.client.train import StepResult, Trainer, resolve_device, run_seed, trainer_for_run
from psyche.errors import ConfigError, RunManagerError
from psyche.parallelism_table import Parallelism

log = logging.getLogger("psyche.client")

# Bounds every collective, so a live but stuck rank cannot hang the others for ever. A crashed rank is
# seen sooner: gloo fails at once when a peer's socket closes, and RankGroup watches the processes.
COLLECTIVE_TIMEOUT_S = 600.0
STARTUP_TIMEOUT_S = 120.0  # for a worker process to start, import torch and reach rank 0's store
_READY = "psyche/ready/{rank}"


def offline_model(model: LLM) -> LLM:
    """The run's model with a P2P checkpoint read as its source, for when no peer serves it (AdamW runs, or
    a DisTrO run none of whose previous clients came back).

    Epoch ends turn Dummy/Hub into P2P (spec 5.1); the repo it names is the original Hub repo, or an
    empty one when the run started from Dummy weights.
    """
    cp = model.checkpoint
    if cp.kind is CheckpointKind.P2P and isinstance(cp.repo, HubRepo):
        kind = CheckpointKind.Hub if cp.repo.repo_id.strip("\x00") else CheckpointKind.Dummy
        return dataclasses.replace(model, checkpoint=Checkpoint(kind, cp.repo))
    return model


class StepTrainer(Protocol):
    """What the port calls on a trainer (``train.Trainer``; tests pass fakes)."""

    distro: DistroOptimizer | None  # None: an AdamW run

    def train_step(self, sample_indices: range, *, step: int | None = None) -> StepResult:
        """One optimizer step over this replica's share of ``sample_indices``."""

    def apply_results(self, results: list[list[SparseParam]], step: int) -> None:
        """Apply agreed DisTrO results with the LR of coordinator ``step``."""

    def round_to_bf16(self) -> None:
        """Round every parameter to bf16 and back (epoch end: holders and joiners end equal)."""

    def reset_errors(self) -> None:
        """Zero DisTrO's error buffers (a cold-start epoch)."""

    def payload_shapes(self) -> list[PayloadShape]:
        """What a valid DisTrO payload for this model holds, per parameter."""

    def checkpoint_content(self, step: int | None = None) -> ckpt.Content:
        """What a checkpoint of the trainer holds (a collective: every rank calls it)."""

    def save_checkpoint(self, root: Path, epoch: int, step: int) -> Path | None:
        """Write a checkpoint; the directory on rank 0, None on the other ranks."""


class ModelSharing(Protocol):
    """The part of ``sharing.ResultSharing`` the port uses."""

    def publish(self, acc: CoordinatorAccount, task: Train, results: list[SparseParam]) -> bytes:
        """Publish our result of ``task`` to peers; returns its commitment."""

    def agreed_results(
        self, acc: CoordinatorAccount, source: RoundKey
    ) -> tuple[list[list[SparseParam]], int]:
        """The results of round ``source`` its witnesses agreed on, in batch-id order, and their step.

        Raises:
            Desync: an agreed result cannot be had.
        """

    def serve_model(self, epoch: int, step: int, content: ckpt.Content) -> None:
        """Serve the epoch's final model to the next epoch's joiners."""

    def set_model(self, shapes: list[PayloadShape], max_payload: int, quantize_1bit: bool) -> None:
        """The payload shapes a peer's result must match, and at most how big it is."""

    def fetch_model(self, acc: CoordinatorAccount) -> tuple[int, int, ckpt.Content]:
        """The previous epoch's model from peers: ``(epoch, step, content)``.

        Raises:
            ModelUnavailable: no peer serves it.
        """


class Ranks(Protocol):
    """Ranks 1..n-1 as rank 0 sees them (``RankGroup``)."""

    def broadcast(self, message: Message) -> None:
        """Send ``message`` to every other rank.

        Raises:
            RunManagerError: a rank is gone.
        """

    def close(self) -> None:
        """Stop the other ranks."""


BuildTrainer = Callable[[Build, TrainerEnv, str, Parallelism, ParallelContext | None], StepTrainer]
StartRanks = Callable[
    [Parallelism, TrainerEnv, str, Callable[[str], None]], tuple[Ranks, ParallelContext | None]
]


def build_trainer(
    build: Build, env: TrainerEnv, run_id: str, par: Parallelism, ctx: ParallelContext | None
) -> Trainer:
    """This rank's Trainer for ``build.model`` (same seed on every rank and client), resumed from
    ``build.resume`` (the checkpoint rank 0 chose) when set.

    Raises:
        ConfigError: the model's source cannot be loaded.
        RunManagerError: resuming the checkpoint failed.
    """
    trainer = trainer_for_run(
        build.model, env, run_seed(run_id), par, ctx=ctx, resume=build.resume, run_id=run_id
    )
    if build.resume is not None:
        try:
            epoch, step = trainer.load_checkpoint(build.resume)
        except CorruptCheckpoint as exc:
            if model_source(build.model, env, build.resume).kind == "checkpoint":
                raise RunManagerError(f"resuming the checkpoint failed: {exc}") from None
            log.warning("ignoring checkpoint: %s; starting from the run's model", exc)
        else:
            if ctx is None or ctx.is_leader:
                log.info("resumed epoch %d step %d from %s", epoch, step, build.resume)
    return trainer


def resume_point(acc: CoordinatorAccount, run_id: str) -> RunPoint:
    """What a local checkpoint must match to be current (``checkpoint.current_checkpoint``)."""
    return RunPoint(run_id, acc.progress.epoch, acc.epoch_state.start_step)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker rank needs to join rank 0's process group and build its trainer."""

    env: TrainerEnv
    run_id: str
    parallelism: Parallelism
    device_type: str
    store_port: int
    timeout_s: float = COLLECTIVE_TIMEOUT_S
    startup_s: float = STARTUP_TIMEOUT_S


def _share_cores(world_size: int) -> None:
    # Each process gets its share of the cores; oversubscription makes gloo collectives crawl.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))


def torch_worker(rank: int, conn: Connection, spec: WorkerSpec) -> int:
    """A worker rank's process: join the group through rank 0's store, then ``ranks.serve`` its messages."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s [rank {rank}] %(message)s", stream=sys.stdout
    )
    par, timeout = spec.parallelism, timedelta(seconds=spec.timeout_s)
    if spec.device_type == "cpu":
        _share_cores(par.world_size)
    store = TCPStore(
        LOOPBACK, spec.store_port, par.world_size, is_master=False, timeout=timedelta(seconds=spec.startup_s)
    )
    store.set(_READY.format(rank=rank), "1")
    ctx = init_parallel(rank, par.dp, par.tp, spec.device_type, store=store, timeout=timeout)
    code = serve(conn.recv, lambda build: build_trainer(build, spec.env, spec.run_id, par, ctx))
    # Only a clean Shutdown gets here; after a failure the process just exits (a peer may be gone).
    dist.destroy_process_group()
    return code


def _await_workers(store: TCPStore, group: RankGroup, world_size: int) -> None:
    # init_process_group would wait out the whole collective timeout for a worker that died while starting
    # (importing torch takes seconds); polling the store lets the crash monitor's verdict end the wait.
    keys = [_READY.format(rank=rank) for rank in range(1, world_size)]
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not store.check(keys):
        if group.failure is not None:
            raise RunManagerError(group.failure)
        if time.monotonic() > deadline:
            raise RunManagerError(f"the training ranks did not start within {STARTUP_TIMEOUT_S:g} s")
        time.sleep(0.05)


def start_local_ranks(
    par: Parallelism, env: TrainerEnv, run_id: str, on_failure: Callable[[str], None]
) -> tuple[RankGroup, ParallelContext]:
    """Spawn ranks 1..n-1 on this machine and join the process group as rank 0 (its store listens on
    127.0.0.1, on a port the system picks).

    Raises:
        RunManagerError: a rank died, or the ranks did not start within STARTUP_TIMEOUT_S.
    """
    device_type = resolve_device(env.device).type
    if device_type == "cpu":
        _share_cores(par.world_size)
    timeout = timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    store = TCPStore(LOOPBACK, 0, par.world_size, is_master=True, timeout=timeout, wait_for_workers=False)
    spec = WorkerSpec(env, run_id, par, device_type, store.port)
    group = RankGroup(par.world_size, torch_worker, (spec,), on_failure=on_failure)
    try:
        _await_workers(store, group, par.world_size)
        ctx = init_parallel(0, par.dp, par.tp, device_type, store=store, timeout=timeout)
    except BaseException:
        group.close()
        raise
    log.info("%d training ranks (dp=%d tp=%d) on %s", par.world_size, par.dp, par.tp, device_type)
    return group, ctx


class TorchTrainerPort:
    """Builds one Trainer for the run (the same seed on every client) and keeps it across epochs.

    With dp x tp > 1 this process is rank 0: it starts the other ranks at first use and sends each of them
    every Build, Step and Save before doing the same itself, so the collectives line up. ``on_failure``
    is called (from a monitor thread) when another rank dies; ``close()`` stops them."""

    def __init__(
        self,
        env: TrainerEnv,
        run_id: str,
        *,
        resolve: Callable[[TrainerEnv, LLM], Parallelism] = resolve_parallelism,
        build: BuildTrainer = build_trainer,
        start_ranks: StartRanks = start_local_ranks,
        sharing: ModelSharing | None = None,
    ) -> None:
        self.env = env
        self.run_id = run_id
        self.resolve = resolve
        self.build = build
        self.start_ranks = start_ranks
        self.trainer: StepTrainer | None = None
        self.ranks: Ranks | None = None
        self.failure: str | None = None
        self.on_failure: Callable[[str], None] = lambda message: None
        self.busy = False  # a trainer call (maybe a collective) is running on the training thread
        self.sharing = sharing
        self.stale = False  # DisTrO: we could not apply what our peers applied; reload at the next epoch

    def _failed(self, message: str) -> None:
        self.failure = message
        self.on_failure(message)

    def _shares(self, acc: CoordinatorAccount) -> bool:
        return self.sharing is not None and isinstance(acc.model.optimizer, Distro)

    def _fetch_from_peers(self, acc: CoordinatorAccount, root: Path) -> Path | None:
        """DisTrO runs with a P2P checkpoint: the previous epoch's model from its clients, written as our own
        checkpoint (the same bytes they wrote), or None when no peer serves it."""
        if not self._shares(acc) or acc.model.checkpoint.kind is not CheckpointKind.P2P:
            return None
        assert self.sharing is not None
        try:
            epoch, step, content = self.sharing.fetch_model(acc)
        except RunManagerError as exc:
            log.warning("no peer served the model (%s); starting from the run's model", exc)
            return None
        path = ckpt.write_content(root, epoch, step, content)
        log.info("fetched the model of epoch %d step %d from peers into %s", epoch, step, path)
        return path

    def _build(self, acc: CoordinatorAccount) -> StepTrainer:
        par = self.resolve(self.env, acc.model)
        model = offline_model(acc.model)
        # Rank 0 decides whether to resume, so every rank makes the same (collective) choice.
        resume, local = None, "no checkpoint directory (CHECKPOINT_DIR, or SCRATCH_DIR mounted at /scratch)"
        if self.env.checkpoint_dir is not None:
            root = run_root(self.env.checkpoint_dir, self.run_id)
            chosen = current_checkpoint(root, resume_point(acc, self.run_id))
            if chosen.info is None and self._fetch_from_peers(acc, root) is not None:
                chosen = current_checkpoint(root, resume_point(acc, self.run_id))
            resume, local = (chosen.info.path if chosen.info else None), chosen.describe(root)
        try:
            model_source(model, self.env, resume)  # a Hub repo neither on disk nor served by a checkpoint
        except ConfigError as exc:
            raise ConfigError(f"{exc.message}; {local}") from None
        build = Build(model, resume)
        ctx = None
        if par.world_size > 1:
            self.ranks, ctx = self.start_ranks(par, self.env, self.run_id, self._failed)
            self.ranks.broadcast(build)
        return self.build(build, self.env, self.run_id, par, ctx)

    def _send(self, message: Message) -> None:
        if self.ranks is not None:
            self.ranks.broadcast(message)

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        self.busy = True
        try:
            yield
        finally:
            self.busy = False

    def prepare(self, acc: CoordinatorAccount, epoch: int) -> None:
        """Have a model for ``epoch``: keep the one in memory (resetting DisTrO's errors on a cold start),
        or build it (load it again when the last epoch left it stale).

        Raises:
            ConfigError: the model's source cannot be found (the message says what was looked at).
            RunManagerError: another rank is gone.
        """
        if self.stale:
            log.info("epoch %d: our model left our peers' in the last epoch; loading it again", epoch)
            self.close()
            self.trainer, self.stale = None, False
        if self.trainer is None:
            log.info("loading the model for epoch %d", epoch)
            with self._calling():
                self.trainer = self._build(acc)
            self._describe_payloads(acc)
        else:
            log.info("epoch %d: keeping the model in memory", epoch)
            if self.trainer.distro is not None and acc.epoch_state.cold_start_epoch:
                # DisTrO's error buffers start from zero with every cold-start epoch (spec 1).
                with self._calling():
                    self._send(ResetErrors())
                    self.trainer.reset_errors()

    def _describe_payloads(self, acc: CoordinatorAccount) -> None:
        """Tell the exchange what our peers' payloads must look like (DisTrO runs)."""
        opt = acc.model.optimizer
        if self.sharing is None or self.trainer is None or not isinstance(opt, Distro):
            return
        shapes = self.trainer.payload_shapes()
        self.sharing.set_model(shapes, max_payload_bytes(shapes, opt), opt.quantize_1bit)

    def train(self, acc: CoordinatorAccount, task: Train) -> TrainOutcome:
        """Train ``task`` on every rank; a DisTrO run publishes the result, an AdamW run commits to its
        loss.

        Raises:
            RunManagerError: a DisTrO run without a P2P node, or another rank is gone.
        """
        with self._calling():
            if self.trainer is None:
                self.trainer = self._build(acc)
                self._describe_payloads(acc)
            self._send(Step(task.indices, task.step))
            result = self.trainer.train_step(task.indices, step=task.step)
        if result.payload_results is not None:
            if self.sharing is None:
                raise RunManagerError(
                    "a DisTrO run shares results peer to peer, and this client has no P2P node"
                )
            commitment = self.sharing.publish(acc, task, result.payload_results)
        else:
            # AdamW runs exchange nothing: the commitment is the hash of what identifies this step's result
            # (the round, the samples and the loss).
            commitment = hashlib.sha256(
                struct.pack("<QQQQd", task.key[0], task.key[1], task.start, task.end, result.loss)
            ).digest()
        return TrainOutcome(
            result.loss, result.tokens, result.tokens_per_second, commitment, result.mfu or 0.0
        )

    def apply(self, acc: CoordinatorAccount, source: RoundKey) -> None:
        """Apply the results of round ``source`` its witnesses agreed on, on every rank.

        Raises:
            Desync: an agreed result cannot be had (the model is then marked stale, to load again next epoch).
            RunManagerError: no model or no P2P node to apply with.
        """
        if self.trainer is None or self.sharing is None:
            raise RunManagerError("no model to apply results to")
        try:
            results, step = self.sharing.agreed_results(acc, source)
        except RunManagerError:
            self.stale = True
            raise
        if results:
            with self._calling():
                self._send(Apply(results, step))
                self.trainer.apply_results(results, step)
        log.info("round %d: applied %d agreed result(s) of step %d", source[1], len(results), step)

    def save(self, epoch: int, step: int) -> None:
        """End of epoch: a DisTrO run rounds to bf16 and serves the model to joiners; with a checkpoint
        directory, every rank saves."""
        if self.trainer is None:
            return
        if self.sharing is not None and self.trainer.distro is not None:
            # Holders and joiners end the epoch bit-identical (spec 5): every client rounds to bf16, saves,
            # and serves exactly that model to the next epoch's joiners.
            with self._calling():
                self._send(RoundBf16())
                self.trainer.round_to_bf16()
                content = self.trainer.checkpoint_content(step)
            self.sharing.serve_model(epoch, step, content)
        if self.env.checkpoint_dir is None:
            return
        root = run_root(self.env.checkpoint_dir, self.run_id)
        root.mkdir(parents=True, exist_ok=True)
        with self._calling():
            self._send(Save(root, epoch, step))
            self.trainer.save_checkpoint(root, epoch, step)

    def close(self) -> None:
        """Stop the other ranks (Shutdown, then terminate stragglers) and leave the process group."""
        ranks, self.ranks = self.ranks, None
        if ranks is None:
            return
        ranks.close()
        # After a rank died, a call still inside a collective would block the teardown: leave it to exit.
        if dist.is_initialized() and not (self.failure is not None and self.busy):
            dist.destroy_process_group()
