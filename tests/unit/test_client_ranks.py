"""Rank 0 and its workers: the message loop, the port's lockstep sends, and the worker processes' monitor."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

pytest.importorskip("torch")

from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.model import (
    LLM,
    Checkpoint,
    CheckpointKind,
    HubRepo,
)
from psyche.client.actions import Train
from psyche.client.checkpoint import write_checkpoint
from psyche.client.config import TrainerEnv
from psyche.client.distributed import ParallelContext
from psyche.client.parallelism_choice import resolve_parallelism
from psyche.client.rank_messages import (
    Apply,
    Build,
    Message,
    ResetErrors,
    RoundBf16,
    Save,
    Shutdown,
    Step,
    serve,
)
from psyche.client.rank_processes import RankGroup, describe_exit
from psyche.client.trainer_port import Ranks, TorchTrainerPort
from psyche.errors import RunManagerError
from psyche.parallelism_table import Parallelism
from tests.support.client_run import MODEL, P2P_MODEL
from tests.support.rank_fakes import raising_worker, recording_worker
from tests.support.trainer_fakes import FakeTrainer


class FakeRanks(Ranks):
    """What rank 0 sent to the other ranks."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.closed = False

    def broadcast(self, message: Message) -> None:
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True


class Scripted:
    """A receive() that hands out messages, then EOF."""

    def __init__(self, messages: Sequence[object]) -> None:
        self.messages: Iterator[object] = iter(messages)

    def __call__(self) -> object:
        try:
            return next(self.messages)
        except StopIteration:
            raise EOFError from None


def _account(model: LLM = P2P_MODEL) -> CoordinatorAccount:
    # The port reads the model and, for the resume decision, the epoch and the step it started from.
    return cast(
        CoordinatorAccount,
        SimpleNamespace(
            model=model,
            progress=SimpleNamespace(epoch=1, step=5),
            epoch_state=SimpleNamespace(start_step=5),
        ),
    )


# ------------------------------------------------------------------------------------ the worker loop


def test_serve_calls_the_trainer_in_message_order_and_ends_on_shutdown(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    builds: list[Build] = []

    def build(message: Build) -> FakeTrainer:
        builds.append(message)
        return trainer

    script = [
        Build(P2P_MODEL, tmp_path),
        Step(range(0, 4)),
        Save(tmp_path, 1, 7),
        Step(range(4, 8)),
        Shutdown(),
    ]
    assert serve(Scripted(script), build) == 0
    assert builds == [Build(P2P_MODEL, tmp_path)]
    assert trainer.calls == [
        ("train_step", [0, 1, 2, 3]),
        ("save_checkpoint", tmp_path, 1, 7),
        ("train_step", [4, 5, 6, 7]),
    ]


def test_serve_passes_distro_messages_to_the_trainer(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    results = [["r0"], ["r1"]]
    script = [
        Build(P2P_MODEL),
        ResetErrors(),
        Step(range(0, 2), step=5),
        Apply(results, 5),
        RoundBf16(),
        Shutdown(),
    ]
    assert serve(Scripted(script), lambda message: trainer) == 0
    assert trainer.calls == [
        ("reset_errors",),
        ("train_step", [0, 1], 5),
        ("apply_results", results, 5),
        ("round_to_bf16",),
    ]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ([Build(P2P_MODEL)], "rank 0 went away (its pipe closed)"),
        ([Step(range(2))], "Step received before Build"),
        ([Save(Path("x"), 0, 1)], "Save received before Build"),
        ([Build(P2P_MODEL), Build(P2P_MODEL)], "Build received twice"),
        ([Build(P2P_MODEL), "train"], "unknown message from rank 0: str"),
    ],
    ids=["eof", "step-first", "save-first", "build-twice", "unknown"],
)
def test_serve_refuses_what_rank_0_would_never_send(script: list[object], message: str) -> None:
    with pytest.raises(RunManagerError) as err:
        serve(Scripted(script), lambda _: FakeTrainer())
    assert str(err.value) == message


# ------------------------------------------------------------------------------------ rank 0's port


def _port(
    tmp_path: Path, par: Parallelism, leader: FakeTrainer, ranks: FakeRanks, started: list[Parallelism]
) -> TorchTrainerPort:
    def start(
        p: Parallelism, env: TrainerEnv, run_id: str, on_failure: object
    ) -> tuple[FakeRanks, ParallelContext | None]:
        started.append(p)
        return ranks, None

    return TorchTrainerPort(
        TrainerEnv(device="cpu", checkpoint_dir=tmp_path / "ckpt"),
        "run",
        resolve=lambda env, model: par,
        build=lambda build, env, run_id, p, ctx: leader,
        start_ranks=start,
    )


def test_rank_0_sends_every_call_first_so_a_worker_makes_the_same_ones(tmp_path: Path) -> None:
    leader, ranks = FakeTrainer(), FakeRanks()
    started: list[Parallelism] = []
    port = _port(tmp_path, Parallelism(2, 1, 4), leader, ranks, started)
    port.prepare(_account(), 0)
    port.prepare(_account(), 1)  # kept in memory: no second Build
    first = port.train(_account(), Train((0, 1), 1, 0, 7))
    port.save(0, 1)
    second = port.train(_account(), Train((1, 1), 2, 8, 15))
    port.close()

    assert started == [Parallelism(2, 1, 4)]
    assert second.loss < first.loss
    root = tmp_path / "ckpt" / "run"  # each run's checkpoints in a folder of their own
    assert ranks.sent == [
        Build(MODEL, None),  # P2P read as Dummy; no checkpoint yet
        Step(range(0, 8), 1),  # the coordinator's step: a DisTrO run's LR follows it
        Save(root, 0, 1),
        Step(range(8, 16), 2),
    ]
    assert ranks.closed
    worker = FakeTrainer()
    assert serve(Scripted([*ranks.sent, Shutdown()]), lambda _: worker) == 0
    assert worker.calls == leader.calls


def test_resume_is_decided_by_rank_0_and_sent_with_build(tmp_path: Path) -> None:
    # The end of epoch 0 at step 5, which epoch 1 (the account's) started from: rank 0 names that directory.
    current = write_checkpoint(tmp_path / "ckpt" / "run", 0, 5, {"model": {}}, {"run_id": "run"})
    leader, ranks = FakeTrainer(), FakeRanks()
    port = _port(tmp_path, Parallelism(1, 2, 1), leader, ranks, [])
    port.prepare(_account(), 1)
    assert ranks.sent == [Build(MODEL, current)]


def test_one_rank_starts_no_processes_and_sends_nothing(tmp_path: Path) -> None:
    leader, ranks = FakeTrainer(), FakeRanks()
    started: list[Parallelism] = []
    port = _port(tmp_path, Parallelism(1, 1, 2), leader, ranks, started)
    port.train(_account(), Train((0, 1), 1, 0, 3))
    port.save(0, 1)
    port.close()
    assert started == [] and ranks.sent == [] and not ranks.closed
    assert leader.calls[0] == ("train_step", [0, 1, 2, 3], 1)


def test_parallelism_auto_decides_the_grid(tmp_path: Path) -> None:
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"org/model": {"H100": {"2": {"dp": 2, "tp": 1, "micro_batch_size": 3}}}}))
    started: list[Parallelism] = []

    def start(
        p: Parallelism, env: TrainerEnv, run_id: str, on_failure: object
    ) -> tuple[FakeRanks, ParallelContext | None]:
        started.append(p)
        return FakeRanks(), None

    env = TrainerEnv(data_parallelism=1, parallelism_auto=True, parallelism_table=table, device="cpu")
    port = TorchTrainerPort(
        env,
        "run",
        resolve=lambda e, model: resolve_parallelism(e, model, detect=lambda: ("H100", 2)),
        build=lambda build, env, run_id, p, ctx: FakeTrainer(),
        start_ranks=start,
    )
    # The table's key is the repo the run's checkpoint names (Dummy weights here: nothing to find on disk).
    account = _account(
        dataclasses.replace(P2P_MODEL, checkpoint=Checkpoint(CheckpointKind.Dummy, HubRepo("org/model")))
    )
    port.prepare(account, 0)
    assert started == [Parallelism(2, 1, 3)]


# ------------------------------------------------------------------------------------ worker processes


def test_describe_exit_names_the_code_or_the_signal() -> None:
    assert describe_exit(1, 3) == "training rank 1 exited with code 3"
    assert describe_exit(2, -9) == "training rank 2 was killed by SIGKILL"
    assert describe_exit(2, -200) == "training rank 2 was killed by signal 200"


def _collect() -> tuple[list[str], threading.Event, Callable[[str], None]]:
    failures: list[str] = []
    failed = threading.Event()

    def on_failure(message: str) -> None:
        failures.append(message)
        failed.set()

    return failures, failed, on_failure


def test_workers_receive_every_message_and_leave_on_close(tmp_path: Path) -> None:
    failures, _, on_failure = _collect()
    group = RankGroup(3, recording_worker, (str(tmp_path),), on_failure=on_failure)
    group.broadcast(Build(P2P_MODEL, tmp_path))
    group.broadcast(Step(range(3)))
    group.broadcast(Save(tmp_path / "ck", 2, 9))
    group.close()
    assert [p.exitcode for p in group.procs] == [0, 0]
    assert failures == [] and group.failure is None
    for rank in (1, 2):
        lines = (tmp_path / f"rank{rank}.log").read_text().splitlines()
        assert lines == [f"build {tmp_path}", "step [0, 1, 2]", "save ck 2 9"]
    with pytest.raises(RunManagerError, match="training rank 1 is gone"):
        group.broadcast(Step(range(1)))


def test_a_worker_crash_is_reported_at_once_and_stops_the_others(tmp_path: Path) -> None:
    failures, failed, on_failure = _collect()
    group = RankGroup(2, recording_worker, (str(tmp_path), 3), on_failure=on_failure)
    try:
        group.broadcast(Build(P2P_MODEL))
        crashed = time.monotonic()
        group.broadcast(Step(range(2)))
        assert failed.wait(10)
        assert time.monotonic() - crashed < 3
        assert failures == ["training rank 1 exited with code 3"]
    finally:
        group.close()


def test_a_killed_worker_ends_every_rank(tmp_path: Path) -> None:
    failures, failed, on_failure = _collect()
    group = RankGroup(3, recording_worker, (str(tmp_path),), on_failure=on_failure)
    try:
        pid = group.pids[1]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert failed.wait(10)
        assert failures == ["training rank 2 was killed by SIGKILL"]
        group.procs[0].join(5)
        assert not group.procs[0].is_alive()  # rank 1 was stopped too
    finally:
        group.close()


def test_a_worker_error_prints_one_line_and_exits_1(capfd: pytest.CaptureFixture[str]) -> None:
    failures, failed, on_failure = _collect()
    group = RankGroup(2, raising_worker, on_failure=on_failure)
    try:
        group.broadcast(Build(P2P_MODEL))
        group.broadcast(Step(range(1)))
        assert failed.wait(10)
    finally:
        group.close()
    assert failures == ["training rank 1 exited with code 1"]
    err = capfd.readouterr().err
    assert "[!] training rank 1: ValueError: bad batch\n" in err
    assert "Traceback" not in err
