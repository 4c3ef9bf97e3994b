"""The supervisor's decisions, asserted on its event list, with a scripted FakeRuntime and a fake clock."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from psyche.errors import (
    AccountNotFound,
    ClientExited,
    GpuRuntimeMissing,
    ImagePullFailed,
    InvalidClientVersion,
    RpcUnavailable,
    VersionMismatch,
)
from psyche.manager import events as ev
from psyche.manager.launch import LABEL_WALLET
from psyche.manager.runtime import ContainerInfo
from psyche.manager.supervisor import (
    LABEL_CLIENT_VERSION,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_RUN_ID,
    LaunchConfig,
    RestartPolicy,
    Supervisor,
)
from tests.support.clock import FakeClock
from tests.support.fake_runtime import SIGKILL_EXIT, SIGTERM_EXIT, FakeRuntime, Script

REPO = "127.0.0.1:5000/psyche-client"
V1 = f"{REPO}:v1"
V2 = f"{REPO}:v2"
SECRET = "[1,2,3,4]"
E = TypeVar("E")


@dataclass
class Rig:
    clock: FakeClock
    runtime: FakeRuntime
    supervisor: Supervisor
    events: list[ev.Event] = field(default_factory=list)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def log_lines(self) -> list[ev.LogLine]:
        """Every client line, in the order the batches came."""
        return [line for e in self.events if isinstance(e, ev.LogLines) for line in e.lines]

    def manager_events(self) -> list[ev.Event]:
        """Everything but pull progress (checked separately), in order."""
        return [e for e in self.events if not isinstance(e, ev.PullProgress)]


def versions(*values: str) -> Callable[[], str]:
    """A version source returning ``values`` in turn, then the last one forever."""
    remaining = list(values)

    def read() -> str:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return read


def rig(
    scripts: list[Script],
    source: Callable[[], str] | None = None,
    *,
    policy: RestartPolicy | None = None,
    launch: LaunchConfig | None = None,
    hook: Callable[[ev.Event], None] | None = None,
    clock: FakeClock | None = None,
    **runtime_options: object,
) -> Rig:
    clock = clock or FakeClock()
    # rig forwards FakeRuntime's own keyword options untouched; their types are checked there, not here.
    runtime = FakeRuntime(clock, scripts, **runtime_options)  # type: ignore[arg-type]
    events: list[ev.Event] = []

    def on_event(event: ev.Event) -> None:
        events.append(event)
        if hook is not None:
            hook(event)

    supervisor = Supervisor(
        runtime,
        launch
        or LaunchConfig(
            run_id="run-1",
            env={"RPC": "http://rpc", "RAW_WALLET_PRIVATE_KEY": SECRET},
            repository=REPO,
            instance_id="inst0001",
        ),
        source or versions("v1"),
        on_event=on_event,
        policy=policy or RestartPolicy(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        poll_interval=0.005,
    )
    return Rig(clock, runtime, supervisor, events)


def pulled(image: str, *, background: bool = False) -> list[ev.Event]:
    return [ev.PullStarted(image, 1, background=background), ev.PullDone(image, 0.0)]


def test_happy_path_pulls_runs_streams_and_finishes_zero() -> None:
    r = rig([Script(exit_code=0, stdout=("hello", "wörld"), stderr=("warn",), runs_for=3.0)])

    assert r.supervisor.run() == 0

    logs = r.log_lines()
    assert [e for e in logs if e.stream == "stdout"] == [ev.LogLine("hello"), ev.LogLine("wörld")]
    assert [e for e in logs if e.stream == "stderr"] == [ev.LogLine("warn", "stderr")]
    assert [e for e in r.manager_events() if not isinstance(e, ev.LogLines)] == [
        ev.ImageResolved("v1", V1, local=False),
        *pulled(V1),
        ev.ContainerStarted("c1", "psyche-client-run-1-inst0001-1", V1, "v1"),
        ev.ContainerExited("c1", 0, 3.0),
        ev.ContainerRemoved("c1"),
        ev.Finished(0),
    ]
    # Log lines come between the start and the exit, never after.
    kinds = [type(e) for e in r.manager_events()]
    assert kinds.index(ev.ContainerStarted) < kinds.index(ev.LogLines) < kinds.index(ev.ContainerExited)
    assert r.of(ev.PullProgress) == [
        ev.PullProgress("aaa111", "Downloading", 1, 2),
        ev.PullProgress("aaa111", "Pull complete"),
    ]
    assert r.runtime.live() == []


def test_container_spec_carries_env_labels_and_flags_but_no_secret_in_repr() -> None:
    launch = LaunchConfig(
        run_id="run/1",
        env={
            "RPC": "http://rpc",
            "RAW_WALLET_PRIVATE_KEY": SECRET,
            "CLIENT_VERSION": "stale",
            "HF_TOKEN": "t",
        },
        repository=REPO,
        scratch_dir="/data/scratch",
        devices=("/dev/infiniband",),
        entrypoint="/bin/bash",
        command=("-c", "echo hi"),
        extra_labels={"team": "a"},
        instance_id="abcdef0123",
    )
    r = rig([Script()], launch=launch)
    r.supervisor.run()

    (spec,) = r.runtime.specs
    assert spec.image == V1
    assert dict(spec.env) == {
        "RPC": "http://rpc",
        "RAW_WALLET_PRIVATE_KEY": SECRET,
        "HF_TOKEN": "t",
        "RUN_ID": "run/1",
        "CLIENT_VERSION": "v1",  # always the image's version, whatever the .env said
        "PSYCHE_RUN_ONCE": "1",  # the manager owns restarts: the reference entrypoint runs the client once
    }
    assert dict(spec.labels) == {
        "team": "a",
        LABEL_MANAGED: "true",
        LABEL_RUN_ID: "run/1",
        LABEL_INSTANCE: "abcdef0123",
        LABEL_CLIENT_VERSION: "v1",
    }
    assert (spec.gpus, spec.privileged, spec.network_mode, spec.shm_size) == (True, False, "host", "1g")
    assert (spec.scratch_dir, spec.devices, spec.entrypoint, spec.command) == (
        "/data/scratch",
        ("/dev/infiniband",),
        "/bin/bash",
        ("-c", "echo hi"),
    )
    assert spec.name == "psyche-client-run-1-abcdef01-1"
    assert SECRET not in repr(spec) and SECRET not in repr(launch)


def test_exit_10_with_a_changed_version_runs_the_new_image_without_sleeping() -> None:
    r = rig([Script(exit_code=10, runs_for=2.0), Script(exit_code=0)], versions("v1", "v2"))

    assert r.supervisor.run() == 0

    assert [e for e in r.manager_events() if not isinstance(e, ev.LogLines)] == [
        ev.ImageResolved("v1", V1, local=False),
        *pulled(V1),
        ev.ContainerStarted("c1", "psyche-client-run-1-inst0001-1", V1, "v1"),
        ev.ContainerExited("c1", 10, 2.0),
        ev.ContainerRemoved("c1"),
        ev.VersionChanged("v1", "v2", live=False),
        ev.ImageResolved("v2", V2, local=False),
        *pulled(V2),
        ev.ContainerStarted("c2", "psyche-client-run-1-inst0001-2", V2, "v2"),
        ev.ContainerExited("c2", 0, 1.0),
        ev.ContainerRemoved("c2"),
        ev.Finished(0),
    ]
    assert r.clock.slept == 0.0
    assert r.runtime.specs[1].env["CLIENT_VERSION"] == "v2"


def test_exit_10_on_an_unchanged_version_backs_off_then_gives_up_with_code_10() -> None:
    policy = RestartPolicy(max_version_retries=2, backoff_base=5.0, backoff_cap=60.0)
    r = rig([Script(exit_code=10, stdout=(f"mismatch {i}",)) for i in range(3)], policy=policy)

    with pytest.raises(VersionMismatch) as raised:
        r.supervisor.run()

    assert raised.value.exit_code == 10
    assert "3 times" in str(raised.value) and "'v1'" in str(raised.value)
    assert r.of(ev.Restarting) == [
        ev.Restarting(1, 5.0, "exit code 10 (version mismatch) but client_version is still 'v1'"),
        ev.Restarting(2, 10.0, "exit code 10 (version mismatch) but client_version is still 'v1'"),
    ]
    assert r.of(ev.GivingUp) == [
        ev.GivingUp("exit code 10 on an unchanged client_version 'v1'", 10, ("mismatch 2",))
    ]
    assert r.clock.slept == pytest.approx(15.0)
    assert [c for c in r.runtime.calls if c[0] == "run"] == [("run", V1)] * 3
    assert r.runtime.live() == []


def test_crash_loop_backs_off_exponentially_then_gives_up_with_the_last_lines() -> None:
    policy = RestartPolicy(max_restarts=3, backoff_base=1.0, backoff_cap=3.0, last_lines=2)
    crash = [Script(exit_code=3, stdout=(f"step {i}", f"boom {i}"), runs_for=1.0) for i in range(4)]
    r = rig(crash, policy=policy)

    with pytest.raises(ClientExited) as raised:
        r.supervisor.run()

    assert (raised.value.code, raised.value.exit_code) == (3, 1)
    assert r.of(ev.Restarting) == [
        ev.Restarting(1, 1.0, "exit code 3"),
        ev.Restarting(2, 2.0, "exit code 3"),
        ev.Restarting(3, 3.0, "exit code 3"),  # capped
    ]
    assert r.of(ev.GivingUp) == [
        ev.GivingUp("exit code 3, 4 quick failures in a row", 3, ("step 3", "boom 3"))
    ]
    assert r.manager_events()[-1] == r.of(ev.GivingUp)[0]
    assert r.runtime.live() == []


def test_a_healthy_run_resets_the_crash_counter() -> None:
    policy = RestartPolicy(max_restarts=1, healthy_after=120.0, backoff_base=1.0)
    scripts = [
        Script(exit_code=1, runs_for=5.0),
        Script(exit_code=1, runs_for=500.0),  # healthy for long enough: the counter starts over
        Script(exit_code=1, runs_for=5.0),
    ]
    r = rig(scripts, policy=policy)

    with pytest.raises(ClientExited):
        r.supervisor.run()

    # Without the reset the second failure would already exceed max_restarts=1.
    assert [e.attempt for e in r.of(ev.Restarting)] == [1, 1]
    assert len(r.of(ev.ContainerStarted)) == 3


def test_a_crash_restart_picks_up_a_version_changed_during_the_backoff() -> None:
    r = rig(
        [Script(exit_code=1), Script(exit_code=0)], versions("v1", "v2"), policy=RestartPolicy(backoff_base=1)
    )

    assert r.supervisor.run() == 0

    assert ev.VersionChanged("v1", "v2", live=False) in r.events
    assert [c for c in r.runtime.calls if c[0] == "run"] == [("run", V1), ("run", V2)]


def test_live_version_change_pulls_while_the_old_client_runs_then_swaps() -> None:
    holder: list[Supervisor] = []
    old = Script(
        until_stopped=True, stdout=("training",), on_running=lambda: holder[0].notify_version_changed("v2")
    )
    r = rig([old, Script(exit_code=0)])
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0

    assert r.runtime.running_during_pull[V2] == ["c1"]  # pre-pulled while the old one still ran
    order = [c for c in r.runtime.calls if c[0] in ("pull", "run", "stop", "remove")]
    assert order == [
        ("pull", V1),
        ("run", V1),
        ("pull", V2),
        ("stop", "c1"),
        ("remove", "c1"),
        ("run", V2),
        ("remove", "c2"),
    ]
    assert [e for e in r.manager_events() if not isinstance(e, ev.LogLines)] == [
        ev.ImageResolved("v1", V1, local=False),
        *pulled(V1),
        ev.ContainerStarted("c1", "psyche-client-run-1-inst0001-1", V1, "v1"),
        ev.VersionChanged("v1", "v2", live=True),
        ev.ImageResolved("v2", V2, local=False),
        *pulled(V2, background=True),
        ev.Stopping("c1", "client_version changed to 'v2'", 10.0),
        ev.ContainerExited("c1", SIGTERM_EXIT, 1.0),
        ev.ContainerRemoved("c1"),
        ev.ImageResolved("v2", V2, local=False),
        ev.ContainerStarted("c2", "psyche-client-run-1-inst0001-2", V2, "v2"),
        ev.ContainerExited("c2", 0, 1.0),
        ev.ContainerRemoved("c2"),
        ev.Finished(0),
    ]


def test_a_notice_of_the_running_version_such_as_a_pause_never_stops_a_healthy_client() -> None:
    holder: list[Supervisor] = []

    def paused_then_done() -> None:
        holder[0].notify_version_changed("v1")  # the watcher fires, but the version did not move
        threading.Timer(0.3, r.runtime.finish, args=("c1", 0)).start()

    r = rig([Script(until_stopped=True, on_running=paused_then_done)])
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0
    assert [c for c in r.runtime.calls if c[0] in ("stop", "kill")] == []
    assert r.of(ev.VersionChanged) == [] and r.of(ev.Finished) == [ev.Finished(0)]


def test_an_invalid_live_version_is_reported_and_the_client_keeps_running() -> None:
    holder: list[Supervisor] = []

    def bad_notice() -> None:
        holder[0].notify_version_changed("../evil")
        threading.Timer(0.3, r.runtime.finish, args=("c1", 0)).start()

    r = rig([Script(until_stopped=True, on_running=bad_notice)])
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0
    (notice,) = r.of(ev.Notice)
    assert "ignoring the client_version change" in notice.message and "'/'" in notice.message
    assert [c for c in r.runtime.calls if c[0] == "stop"] == []


def test_a_failed_pre_pull_keeps_the_old_client() -> None:
    holder: list[Supervisor] = []

    def notice() -> None:
        holder[0].notify_version_changed("v2")
        threading.Timer(0.3, r.runtime.finish, args=("c1", 0)).start()

    r = rig([Script(until_stopped=True, on_running=notice)], pull_failures={V2: 1})
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0
    assert r.of(ev.PullFailed) == [ev.PullFailed(V2, 1, f"pulling {V2} failed: manifest unknown", None)]
    assert ev.Notice("keeping client_version 'v1' running") in r.events
    assert [c for c in r.runtime.calls if c[0] == "stop"] == []


def test_a_flood_arrives_whole_in_order_and_in_few_batches() -> None:
    numbers = tuple(str(i) for i in range(20_000))
    script = Script(
        exit_code=2, stdout=numbers, stderr=("e1", "e2"), unterminated="no newline", chunk_size=65536
    )
    r = rig([script], policy=RestartPolicy(max_restarts=0, last_lines=3))

    with pytest.raises(ClientExited):
        r.supervisor.run()

    lines = r.log_lines()
    assert [e.text for e in lines if e.stream == "stdout"] == [*numbers, "no newline"]
    assert [e.text for e in lines if e.stream == "stderr"] == ["e1", "e2"]
    batches = r.of(ev.LogLines)
    assert len(batches) <= 5  # 20,000 lines: one batch per 64 KiB read, not one event per line
    assert all(batch.lines for batch in batches)
    # The unterminated line is emitted when the output ends, before the exit is reported.
    assert r.manager_events().index(batches[-1]) < r.manager_events().index(r.of(ev.ContainerExited)[0])
    assert r.of(ev.GivingUp)[0].last_lines == ("e1", "e2", "no newline")


def test_stop_request_stops_and_removes_the_container_and_returns_zero() -> None:
    holder: list[Supervisor] = []
    r = rig([Script(until_stopped=True, stdout=("up",), on_running=lambda: holder[0].request_stop())])
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0

    assert [e for e in r.manager_events() if not isinstance(e, ev.LogLines)][-4:] == [
        ev.Stopping("c1", "stop requested", 10.0),
        ev.ContainerExited("c1", SIGTERM_EXIT, 1.0),
        ev.ContainerRemoved("c1"),
        ev.Stopped("stop requested"),
    ]
    assert r.log_lines() == [ev.LogLine("up")]
    assert r.runtime.live() == []


def test_a_second_stop_request_kills_a_client_that_ignores_sigterm() -> None:
    holder: list[Supervisor] = []

    def twice() -> None:
        holder[0].request_stop()
        holder[0].request_stop()

    r = rig([Script(until_stopped=True, ignores_term=True, on_running=twice)])
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0
    assert ev.Killing("c1") in r.events
    assert ev.ContainerExited("c1", SIGKILL_EXIT, 1.0) in r.events
    assert [c[0] for c in r.runtime.calls if c[0] in ("stop", "kill", "remove")] == ["stop", "kill", "remove"]
    assert r.runtime.live() == []


def test_a_stop_during_the_backoff_ends_without_another_start() -> None:
    holder: list[Supervisor] = []

    def stop_on_restart(event: ev.Event) -> None:
        if isinstance(event, ev.Restarting):
            holder[0].request_stop()

    r = rig([Script(exit_code=1), Script(exit_code=0)], hook=stop_on_restart)
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0
    assert r.manager_events()[-1] == ev.Stopped("stop requested")
    assert len(r.of(ev.ContainerStarted)) == 1


def chain_down_between(first: str, outage: int, then: str) -> Callable[[], str]:
    """A version source: ``first``, then ``outage`` reads with no endpoint answering, then ``then``."""
    answers: list[str | None] = [first, *[None] * outage, then]

    def read() -> str:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer is None:
            raise RpcUnavailable({"http://127.0.0.1:8899": "ConnectError: [Errno 111] Connection refused"})
        return answer

    return read


def test_a_restart_waits_out_an_unreachable_chain_then_starts_the_client_again() -> None:
    policy = RestartPolicy(backoff_base=0.5)
    r = rig([Script(exit_code=1), Script(exit_code=0)], chain_down_between("v1", 3, "v2"), policy=policy)

    assert r.supervisor.run() == 0

    down = "all RPC endpoints failed: http://127.0.0.1:8899: ConnectError: [Errno 111] Connection refused"
    events = [e for e in r.manager_events() if not isinstance(e, ev.LogLines)]
    assert events[events.index(ev.ContainerRemoved("c1")) + 1 :] == [
        ev.Restarting(1, 0.5, "exit code 1"),
        ev.ChainUnreachable(down, 1.0),  # one line for three failed reads (1 + 2 + 4 s)
        ev.ChainReachable(7.0),
        ev.VersionChanged("v1", "v2", live=False),  # what the chain said when it came back
        ev.ImageResolved("v2", V2, local=False),
        *pulled(V2),
        ev.ContainerStarted("c2", "psyche-client-run-1-inst0001-2", V2, "v2"),
        ev.ContainerExited("c2", 0, 1.0),
        ev.ContainerRemoved("c2"),
        ev.Finished(0),
    ]
    assert r.clock.slept == pytest.approx(7.5)


def test_a_stop_while_the_chain_is_unreachable_returns_zero_at_once() -> None:
    holder: list[Supervisor] = []

    def stop_when_down(event: ev.Event) -> None:
        if isinstance(event, ev.ChainUnreachable):
            holder[0].request_stop()

    r = rig([Script(exit_code=1)], chain_down_between("v1", 1000, "v1"), hook=stop_when_down)
    holder.append(r.supervisor)

    assert r.supervisor.run() == 0
    assert r.manager_events()[-2:] == [r.of(ev.ChainUnreachable)[0], ev.Stopped("stop requested")]
    assert r.runtime.live() == []


def test_a_run_gone_at_a_restart_ends_the_job() -> None:
    def gone() -> Callable[[], str]:
        reads = iter(["v1"])

        def read() -> str:
            for version in reads:
                return version
            raise AccountNotFound("coordinator", "Coord1111")

        return read

    r = rig([Script(exit_code=1)], gone())
    with pytest.raises(AccountNotFound):
        r.supervisor.run()
    assert r.of(ev.ChainUnreachable) == [] and r.runtime.live() == []


def test_gpu_runtime_missing_is_a_clear_error_with_no_container_left() -> None:
    r = rig([Script()], gpu_available=False)

    with pytest.raises(GpuRuntimeMissing):
        r.supervisor.run()

    assert r.runtime.live() == []
    assert r.of(ev.ContainerStarted) == [] and r.of(ev.Restarting) == []


def test_orphans_of_this_run_are_announced_then_removed_before_the_start() -> None:
    mine = {LABEL_MANAGED: "true", LABEL_RUN_ID: "run-1", LABEL_INSTANCE: "dead-instance"}
    other_run = {LABEL_MANAGED: "true", LABEL_RUN_ID: "run-2", LABEL_INSTANCE: "live-instance"}
    orphans = [
        ContainerInfo("o1", "old-client", "Up 3 hours", mine),
        ContainerInfo("o2", "other", "Up", other_run),
    ]
    r = rig([Script()], orphans=orphans)

    assert r.supervisor.run() == 0

    assert r.manager_events()[:3] == [
        ev.OrphanFound("o1", "old-client", "Up 3 hours"),
        ev.OrphanRemoved("o1", "old-client"),
        ev.ImageResolved("v1", V1, local=False),
    ]
    assert r.runtime.live() == ["o2"]


def test_a_container_of_another_wallet_on_the_same_run_is_not_an_orphan() -> None:
    """Two wallets may run one run on one host: each run-manager removes only its own wallet's leftovers."""
    run = {LABEL_MANAGED: "true", LABEL_RUN_ID: "run-1"}
    orphans = [
        ContainerInfo("o1", "mine", "Up", {**run, LABEL_WALLET: "WalletA", LABEL_INSTANCE: "dead"}),
        ContainerInfo("o2", "neighbour", "Up", {**run, LABEL_WALLET: "WalletB", LABEL_INSTANCE: "live"}),
    ]
    launch = LaunchConfig(run_id="run-1", repository=REPO, instance_id="inst0001", wallet="WalletA")
    r = rig([Script()], orphans=orphans, launch=launch)

    assert r.supervisor.run() == 0

    assert r.of(ev.OrphanRemoved) == [ev.OrphanRemoved("o1", "mine")]
    assert r.runtime.live() == ["o2"]
    [spec] = r.runtime.specs
    assert spec.labels[LABEL_WALLET] == "WalletA"


def test_invalid_client_version_is_refused_before_any_docker_call() -> None:
    r = rig([Script()], versions("v1 beta"))

    with pytest.raises(InvalidClientVersion, match="whitespace"):
        r.supervisor.run()
    assert r.runtime.calls == []


def test_pull_failures_are_retried_with_backoff_then_succeed() -> None:
    r = rig([Script()], pull_failures={V1: 2}, policy=RestartPolicy(pull_attempts=3, pull_backoff=2.0))

    assert r.supervisor.run() == 0
    error = f"pulling {V1} failed: manifest unknown"
    assert r.of(ev.PullFailed) == [ev.PullFailed(V1, 1, error, 2.0), ev.PullFailed(V1, 2, error, 4.0)]
    assert [e.attempt for e in r.of(ev.PullStarted)] == [1, 2, 3]


def test_pull_failures_beyond_the_attempts_raise_naming_the_image() -> None:
    r = rig([Script()], pull_failures={V1: 5}, policy=RestartPolicy(pull_attempts=2))

    with pytest.raises(ImagePullFailed, match=re.escape(V1)):
        r.supervisor.run()
    assert r.of(ev.PullFailed)[-1].retry_in is None
    assert r.of(ev.ContainerStarted) == []


def test_local_mode_uses_the_local_image_without_pulling() -> None:
    launch = LaunchConfig(run_id="run-1", local=True, instance_id="inst0001")
    r = rig([Script()], launch=launch, images={"psyche-solana-client:v1"})

    assert r.supervisor.run() == 0
    assert ev.UsingLocalImage("psyche-solana-client:v1") in r.events
    assert [c for c in r.runtime.calls if c[0] == "pull"] == []


def test_local_mode_with_a_missing_image_says_so() -> None:
    r = rig([Script()], launch=LaunchConfig(run_id="run-1", local=True))

    with pytest.raises(ImagePullFailed, match=r"local image psyche-solana-client:v1 not found"):
        r.supervisor.run()
    assert r.of(ev.ContainerStarted) == []


def test_a_client_silent_past_the_stall_timeout_is_stopped_and_restarted() -> None:
    policy = RestartPolicy(stall_timeout=30.0, backoff_base=5.0)
    holder: list[Rig] = []

    def hook(event: ev.Event) -> None:
        if isinstance(event, ev.LogLines) and event.lines[-1].text == "hello":
            holder[0].clock.advance(31.0)  # then it says nothing more, as a SIGSTOPped client does

    r = rig([Script(stdout=("hello",), until_stopped=True), Script(exit_code=0)], policy=policy, hook=hook)
    holder.append(r)

    assert r.supervisor.run() == 0

    reason = "no log line for 31s (stall timeout), exit code 143"
    assert [
        e for e in r.manager_events() if not isinstance(e, ev.LogLines | ev.PullStarted | ev.PullDone)
    ] == [
        ev.ImageResolved("v1", V1, local=False),
        ev.ContainerStarted("c1", "psyche-client-run-1-inst0001-1", V1, "v1"),
        ev.Stalled("c1", 31.0, 30.0),
        ev.Stopping("c1", "no log line for 31s", 10.0),
        ev.ContainerExited("c1", SIGTERM_EXIT, 32.0),
        ev.ContainerRemoved("c1"),
        ev.Restarting(1, 5.0, reason),
        ev.ImageResolved("v1", V1, local=False),
        ev.ContainerStarted("c2", "psyche-client-run-1-inst0001-2", V1, "v1"),
        ev.ContainerExited("c2", 0, 1.0),
        ev.ContainerRemoved("c2"),
        ev.Finished(0),
    ]
    assert r.runtime.calls.count(("stop", "c1")) == 1
    assert r.runtime.live() == []


def test_stalls_count_as_quick_crashes_however_long_the_timeout() -> None:
    # A client that never wrote a line ran for 0 s as far as the healthy_after rule goes.
    policy = RestartPolicy(stall_timeout=300.0, max_restarts=1, healthy_after=120.0, backoff_base=1.0)
    clock = FakeClock()
    scripts = [
        Script(until_stopped=True, runs_for=0.0, on_running=lambda: clock.advance(301.0)) for _ in "ab"
    ]
    r = rig(scripts, policy=policy, clock=clock)

    with pytest.raises(ClientExited) as raised:
        r.supervisor.run()

    assert raised.value.code == SIGTERM_EXIT
    assert [e.silent_for for e in r.of(ev.Stalled)] == [301.0, 301.0]
    assert r.of(ev.Restarting) == [
        ev.Restarting(1, 1.0, "no log line for 301s (stall timeout), exit code 143")
    ]
    assert r.of(ev.GivingUp) == [
        ev.GivingUp("no log line for 301s (stall timeout), exit code 143, 2 quick failures in a row", 143, ())
    ]
    assert r.runtime.live() == []


def test_a_stall_is_a_quick_failure_even_when_the_client_has_last_words_for_our_sigterm() -> None:
    # Silent for 301 s right after its start, then it prints on our SIGTERM: it never ran "healthy" (120 s),
    # so two stalls with max_restarts=1 give up rather than restarting for ever.
    clock = FakeClock()
    policy = RestartPolicy(stall_timeout=300.0, max_restarts=1, healthy_after=120.0, backoff_base=1.0)

    def stalling() -> Script:
        return Script(until_stopped=True, last_words=("got TERM",), on_running=lambda: clock.advance(301.0))

    r = rig([stalling(), stalling(), Script(exit_code=0)], policy=policy, clock=clock)

    with pytest.raises(ClientExited):
        r.supervisor.run()
    assert "got TERM" in [line.text for line in r.log_lines()]
    assert len(r.runtime.specs) == 2


def test_a_stalled_client_that_exits_0_on_our_sigterm_has_not_finished() -> None:
    holder: list[Rig] = []

    def hook(event: ev.Event) -> None:
        if isinstance(event, ev.Stalled):
            holder[0].runtime.finish("c1", 0)  # its TERM trap says "exit 0"

    policy = RestartPolicy(stall_timeout=60.0, backoff_base=1.0)
    silent = Script(until_stopped=True, on_running=lambda: holder[0].clock.advance(61.0))
    r = rig([silent, Script(exit_code=0)], policy=policy, hook=hook)
    holder.append(r)

    assert r.supervisor.run() == 0
    assert r.of(ev.Restarting) == [ev.Restarting(1, 1.0, "no log line for 61s (stall timeout), exit code 0")]
    assert r.of(ev.Finished) == [ev.Finished(0)]  # the second container's own exit 0
    assert len(r.runtime.specs) == 2


def test_without_a_stall_timeout_a_quiet_client_keeps_running() -> None:
    holder: list[Rig] = []

    def hook(event: ev.Event) -> None:
        if isinstance(event, ev.ContainerStarted):
            holder[0].clock.advance(10_000.0)
        elif isinstance(event, ev.LogLines):
            holder[0].runtime.finish("c1", 0)

    r = rig([Script(stdout=("only line",), until_stopped=True)], hook=hook)
    holder.append(r)

    assert r.supervisor.run() == 0
    assert r.of(ev.Stalled) == [] and r.of(ev.Stopping) == []


KEY_LABEL = {"psyche.client.key-file": "1"}


def test_a_labelled_image_gets_the_wallet_key_as_a_file_and_an_unlabelled_one_in_the_env() -> None:
    # Version v1 is a reference image (the label), v2 an upstream one: the swap changes the delivery.
    r = rig(
        [Script(exit_code=10), Script(exit_code=0)],
        versions("v1", "v2"),
        image_labels={V1: KEY_LABEL},
    )

    assert r.supervisor.run() == 0

    first, second = r.runtime.specs
    assert dict(first.secret_files) == {"/run/psyche/wallet-key": SECRET.encode()}
    assert "RAW_WALLET_PRIVATE_KEY" not in first.env
    assert first.env["WALLET_PRIVATE_KEY_PATH"] == "/run/psyche/wallet-key"
    assert SECRET not in repr(first)
    assert dict(second.secret_files) == {} and second.env["RAW_WALLET_PRIVATE_KEY"] == SECRET
    assert r.of(ev.WalletKeyDelivery) == [
        ev.WalletKeyDelivery("file", V1, "auto"),
        ev.WalletKeyDelivery("env", V2, "auto"),
    ]
    kinds = [type(e) for e in r.manager_events()]
    assert kinds.index(ev.WalletKeyDelivery) == kinds.index(ev.ContainerStarted) - 1


@pytest.mark.parametrize(("via", "labels", "as_file"), [("env", KEY_LABEL, False), ("file", {}, True)])
def test_an_explicit_wallet_key_via_overrides_the_label(
    via: str, labels: dict[str, str], as_file: bool
) -> None:
    launch = LaunchConfig(
        run_id="run-1",
        env={"RAW_WALLET_PRIVATE_KEY": SECRET},
        repository=REPO,
        wallet_key_via=via,  # type: ignore[arg-type]  # parametrised over the Literal's values
    )
    r = rig([Script()], launch=launch, image_labels={V1: labels})
    r.supervisor.run()
    (spec,) = r.runtime.specs
    assert bool(spec.secret_files) is as_file and ("RAW_WALLET_PRIVATE_KEY" in spec.env) is not as_file
    assert r.of(ev.WalletKeyDelivery) == ([ev.WalletKeyDelivery("file", V1, "file")] if as_file else [])


def test_output_silent_after_the_exit_is_given_up_after_the_drain_timeout_on_the_injected_clock() -> None:
    clock = FakeClock()
    policy = RestartPolicy(log_drain_timeout=600.0)
    r = rig(
        [Script(exit_code=0, stdout=("last",), runs_for=3.0, output_hangs=True)], policy=policy, clock=clock
    )
    result: list[int] = []
    supervising = threading.Thread(target=lambda: result.append(r.supervisor.run()), daemon=True)
    try:
        supervising.start()
        # Only the fake clock passes the 600 s: real time would keep the supervisor draining for 10
        # minutes (the fake stream itself gives up after 10 s of real time).
        while supervising.is_alive() and clock.now < 1000.0 + 3600.0:
            clock.advance(10.0)
            supervising.join(0.002)
        supervising.join(5.0)
        assert not supervising.is_alive(), "the drain timeout did not follow the injected clock"
    finally:
        r.runtime.release_output.set()
    assert result == [0]
    assert [line.text for line in r.log_lines()] == ["last"]
    exited = [e for e in r.events if isinstance(e, ev.ContainerExited)]
    assert [(e.container_id, e.exit_code) for e in exited] == [("c1", 0)]
    assert clock.now - 1000.0 >= exited[0].seconds + 600.0  # it drained for the whole timeout, no less
    assert r.of(ev.Finished) == [ev.Finished(0)]
    assert r.runtime.live() == []
