"""DockerRuntime and the Supervisor against the real engine and the loopback registry (busybox images)."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable

import docker
import pytest

from psyche.errors import ContainerRuntimeError, GpuRuntimeMissing, ImagePullFailed
from psyche.manager import events as ev
from psyche.manager.images import image_for_version
from psyche.manager.launch import LABEL_INSTANCE, LABEL_MANAGED, LABEL_RUN_ID, LaunchConfig, RestartPolicy
from psyche.manager.logs import frames, split_lines
from psyche.manager.runtime import ContainerHandle, ContainerSpec, DockerRuntime
from psyche.manager.supervisor import Supervisor
from tests.support.engine import BuildImage, PushedImage

pytestmark = pytest.mark.docker

# busybox PID 1 ignores SIGTERM unless it traps it (ci-docker.md pitfall 11).
FOREVER = 'trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done'


@pytest.fixture
def runtime(docker_client: docker.DockerClient) -> DockerRuntime:
    return DockerRuntime(docker_client)


def labelled(docker_client: docker.DockerClient, labels: dict[str, str]) -> list[str]:
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    return [c.id for c in docker_client.containers.list(all=True, filters=filters)]


def texts(events: list[ev.Event]) -> list[str]:
    """The client's lines, in order, from the supervisor's LogLines batches."""
    return [line.text for e in events if isinstance(e, ev.LogLines) for line in e.lines]


def of_stream(pieces: Iterable[tuple[str, bytes]], stream: str) -> list[str]:
    return list(split_lines(piece for s, piece in pieces if s == stream))


def versions(*values: str) -> Callable[[], str]:
    remaining = list(values)
    return lambda: remaining.pop(0) if len(remaining) > 1 else remaining[0]


def test_from_env_reaches_the_engine_and_negotiates_its_api_version(
    docker_client: docker.DockerClient,
) -> None:
    engine = docker_client.version()
    with DockerRuntime(environ=dict(os.environ)) as runtime:
        assert runtime.version() == engine["Version"]
        # The newest both speak: the dev engine (Debian's 20.10) tops out at 1.41, docker-py 7 at 1.45.
        sdk_max = docker.constants.DEFAULT_DOCKER_API_VERSION
        expected = min(engine["ApiVersion"], sdk_max, key=lambda v: tuple(map(int, v.split("."))))
        assert runtime.api_version() == expected
        assert runtime.list_by_label({"io.psyche.test.none": "x"}) == []  # spoken in that version


def test_pull_reports_layer_progress_from_the_loopback_registry(
    docker_client: docker.DockerClient, runtime: DockerRuntime, busybox_image: BuildImage
) -> None:
    pushed = busybox_image("rt-pull", unique=True)  # a layer no other image in the engine holds
    docker_client.images.remove(pushed.ref, force=True)
    image = image_for_version(pushed.tag, local=False, repository=pushed.repository)
    assert not runtime.image_exists(image.reference)
    progress: list[ev.PullProgress] = []

    runtime.pull(image, progress.append)

    assert runtime.image_exists(image.reference)
    statuses = [p.status for p in progress]
    assert "Pulling fs layer" in statuses and "Pull complete" in statuses
    assert any(p.layer and p.status == "Pull complete" for p in progress)
    assert statuses[-1] == f"Status: Downloaded newer image for {image.reference}"


def test_a_missing_tag_fails_naming_the_image_and_the_registry_answer(
    runtime: DockerRuntime, registry: str
) -> None:
    image = image_for_version("no-such-tag", local=False, repository=f"{registry}/psyche-test-bb")

    with pytest.raises(ImagePullFailed) as raised:
        runtime.pull(image, lambda _p: None)

    assert f"{registry}/psyche-test-bb:no-such-tag" in str(raised.value)
    assert "manifest unknown" in str(raised.value)


def test_run_streams_every_line_and_reports_the_exit_code(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    image = busybox_image("rt-run").ref
    script = 'i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done; echo "to $TARGET" >&2; exit 7'
    spec = ContainerSpec(
        image=image,
        env={"TARGET": "stderr"},
        labels=container_labels,
        gpus=False,
        command=("sh", "-c", script),
    )

    handle = runtime.run(spec)
    stdout = of_stream(runtime.logs(handle), "stdout")
    stderr = of_stream(runtime.logs(handle, timestamps=True), "stderr")

    assert runtime.wait(handle) == 7
    assert stdout == [f"line {i}" for i in range(20000)]
    assert len(stderr) == 1 and stderr[0].endswith("Z to stderr")
    inspected = docker_client.api.inspect_container(handle.id)
    assert "TARGET=stderr" in inspected["Config"]["Env"]  # through the API, not the command line
    assert inspected["HostConfig"]["NetworkMode"] == "host"
    assert inspected["HostConfig"]["ShmSize"] == 1024**3
    runtime.remove(handle)
    assert labelled(docker_client, container_labels) == []


def test_logs_follow_a_flood_on_both_streams_with_no_line_lost_or_reordered(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    # Both streams written at once, read while they are written (follow), over one request.
    script = "seq 1 150000 >&2 & seq 1 150000; wait"
    spec = ContainerSpec(
        image=busybox_image("rt-run").ref, labels=container_labels, gpus=False, command=("sh", "-c", script)
    )
    handle = runtime.run(spec)
    pieces = list(runtime.logs(handle))

    assert runtime.wait(handle) == 0
    numbers = [str(i) for i in range(1, 150001)]
    assert of_stream(pieces, "stdout") == numbers
    assert of_stream(pieces, "stderr") == numbers
    assert len(pieces) < 150000  # frames of one stream come merged, not one item per line
    runtime.remove(handle)


def test_a_cut_follow_is_caught_up_from_the_logs_tail(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    # The 20.10 engine may end a follow early at the container's exit; logs() then reads the tail again
    # and delivers what follows the last frame it got. Here the cut is made by hand, 3,000 lines back,
    # so the catch-up must grow its tail past the first 1,024 lines.
    script = "seq 1 5000 & seq 1 5000 >&2; wait"
    spec = ContainerSpec(
        image=busybox_image("rt-run").ref, labels=container_labels, gpus=False, command=("sh", "-c", script)
    )
    handle = runtime.run(spec)
    assert runtime.wait(handle) == 0
    with runtime._log_body(handle, follow=False, timestamps=True) as body:
        log = list(frames(body))
    assert len(log) == 10000 and len(set(log)) == 10000  # timestamps make every frame unique

    assert runtime._missed(handle, log[6999]) == log[7000:]
    assert runtime._missed(handle, log[-1]) == []
    assert runtime._missed(handle, None) == log
    with pytest.raises(ContainerRuntimeError, match="no longer holds the last line read"):
        runtime._missed(handle, (1, b"2000-01-01T00:00:00Z never written"))
    runtime.remove(handle)


def test_logs_of_a_tty_container_are_its_raw_output_on_stdout(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    # A TTY merges stderr into stdout and sends no frame headers; lines end in \r\n (onlcr).
    script = 'seq 1 30000; echo "to stderr" >&2; printf "no newline"'
    container = docker_client.containers.create(
        busybox_image("rt-run").ref, ["sh", "-c", script], tty=True, labels=container_labels
    )
    container.start()
    handle = ContainerHandle(container.id, container.name)
    # Read after the exit: this test is about decoding raw TTY output. A live follow of a TTY container
    # has no tail re-read (the supervisor never starts one), so the 20.10 engine's early end of a follow
    # at exit could cut the last bytes here (docs/supervisor.md, Logs).
    assert runtime.wait(handle) == 0
    pieces = list(runtime.logs(handle))

    assert {stream for stream, _ in pieces} == {"stdout"}
    assert of_stream(pieces, "stdout") == [*(str(i) for i in range(1, 30001)), "to stderr", "no newline"]
    runtime.remove(handle)


def test_stop_with_a_trap_is_quick_and_remove_leaves_nothing(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    spec = ContainerSpec(
        image=busybox_image("rt-run").ref, labels=container_labels, gpus=False, command=("sh", "-c", FOREVER)
    )
    handle = runtime.run(spec)
    assert next(split_lines(piece for _, piece in runtime.logs(handle))) == "ready"

    began = time.monotonic()
    runtime.stop(handle, grace=5)
    assert runtime.wait(handle) == 0
    assert time.monotonic() - began < 3
    runtime.remove(handle)
    runtime.remove(handle)  # already gone: not an error
    runtime.stop(handle, grace=1)
    assert labelled(docker_client, container_labels) == []


def test_gpu_request_without_nvidia_runtime_is_one_clear_line_and_leaves_no_container(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    if runtime.has_nvidia_runtime():
        pytest.skip("this engine has an NVIDIA runtime; the refusal cannot be provoked here")
    spec = ContainerSpec(
        image=busybox_image("rt-run").ref, labels=container_labels, gpus=True, command=("true",)
    )

    with pytest.raises(GpuRuntimeMissing) as raised:
        runtime.run(spec)

    message = str(raised.value)
    assert "install the NVIDIA Container Toolkit" in message and "\n" not in message
    assert "could not select device driver" in message
    assert labelled(docker_client, container_labels) == []  # docker-py leaves it `created`; we remove it


def test_a_refused_container_is_docker_run_failed_with_the_engines_reason_and_leaves_nothing(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    spec = ContainerSpec(
        image=busybox_image("rt-run").ref,
        labels=container_labels,
        gpus=False,
        command=("true",),
        runtime="no-such-runtime",
    )

    with pytest.raises(ContainerRuntimeError) as raised:
        runtime.run(spec)

    assert type(raised.value) is ContainerRuntimeError  # not the GPU refusal
    message = str(raised.value)
    assert message.startswith("Docker run failed: ") and "no-such-runtime" in message and "\n" not in message
    assert labelled(docker_client, container_labels) == []


def launch_for(pushed: PushedImage, labels: dict[str, str], script: str, run_id: str) -> LaunchConfig:
    return LaunchConfig(
        run_id=run_id,
        env={"RPC": "http://127.0.0.1:8899"},
        repository=pushed.repository,
        gpus=False,
        command=("sh", "-c", script),
        extra_labels=labels,
    )


def test_supervisor_removes_an_orphan_of_its_run_then_runs_to_exit_zero(
    docker_client: docker.DockerClient,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    pushed = busybox_image("rt-run")
    run_id = f"orphan-{uuid.uuid4().hex[:8]}"
    orphan = docker_client.containers.run(
        pushed.ref,
        ["sh", "-c", FOREVER],
        detach=True,
        network_mode="host",
        labels={**container_labels, LABEL_MANAGED: "true", LABEL_RUN_ID: run_id, LABEL_INSTANCE: "killed"},
    )
    events: list[ev.Event] = []
    launch = launch_for(pushed, container_labels, "echo done", run_id)

    code = Supervisor(
        DockerRuntime(docker_client), launch, versions(pushed.tag), on_event=events.append
    ).run()

    assert code == 0
    found = events[0]
    assert isinstance(found, ev.OrphanFound)
    assert events[:2] == [
        ev.OrphanFound(orphan.id, orphan.name, found.status),
        ev.OrphanRemoved(orphan.id, orphan.name),
    ]
    assert texts(events) == ["done"]
    assert labelled(docker_client, container_labels) == []


def test_supervisor_exit_10_with_a_changed_version_pulls_and_runs_the_new_tag(
    docker_client: docker.DockerClient,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    old, new = busybox_image("rt-va"), busybox_image("rt-vb")
    for pushed in (old, new):
        docker_client.images.remove(pushed.ref, force=True)
    script = f'echo "client $CLIENT_VERSION"; [ "$CLIENT_VERSION" = "{old.tag}" ] && exit 10; exit 0'
    events: list[ev.Event] = []
    launch = launch_for(old, container_labels, script, f"swap-{uuid.uuid4().hex[:8]}")

    code = Supervisor(
        DockerRuntime(docker_client), launch, versions(old.tag, new.tag), on_event=events.append
    ).run()

    assert code == 0
    assert texts(events) == [f"client {old.tag}", f"client {new.tag}"]
    assert [e.exit_code for e in events if isinstance(e, ev.ContainerExited)] == [10, 0]
    assert ev.VersionChanged(old.tag, new.tag, live=False) in events
    assert [e.image for e in events if isinstance(e, ev.PullDone)] == [old.ref, new.ref]
    assert not any(isinstance(e, ev.Restarting) for e in events)
    assert events[-1] == ev.Finished(0)
    assert labelled(docker_client, container_labels) == []


def test_supervisor_live_version_change_pre_pulls_then_swaps(
    docker_client: docker.DockerClient,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    old, new = busybox_image("rt-va"), busybox_image("rt-vb")
    docker_client.images.remove(new.ref, force=True)
    script = f'[ "$CLIENT_VERSION" = "{new.tag}" ] && {{ echo swapped; exit 0; }}; {FOREVER}'
    events: list[ev.Event] = []
    holder: list[Supervisor] = []

    def on_event(event: ev.Event) -> None:
        events.append(event)
        if event == ev.LogLines((ev.LogLine("ready"),)):
            holder[0].notify_version_changed(new.tag)

    launch = launch_for(old, container_labels, script, f"live-{uuid.uuid4().hex[:8]}")
    holder.append(Supervisor(DockerRuntime(docker_client), launch, versions(old.tag), on_event=on_event))

    assert holder[0].run() == 0

    kinds = [type(e).__name__ for e in events if not isinstance(e, ev.PullProgress)]
    first_exit = kinds.index("ContainerExited")
    assert kinds.index("PullDone", kinds.index("VersionChanged")) < kinds.index("Stopping") < first_exit
    assert [e.exit_code for e in events if isinstance(e, ev.ContainerExited)] == [0, 0]  # trap: clean exit
    assert texts(events) == ["ready", "swapped"]
    assert labelled(docker_client, container_labels) == []


def test_supervisor_stop_request_stops_and_removes_within_the_grace(
    docker_client: docker.DockerClient,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    pushed = busybox_image("rt-run")
    events: list[ev.Event] = []
    holder: list[Supervisor] = []

    def on_event(event: ev.Event) -> None:
        events.append(event)
        if event == ev.LogLines((ev.LogLine("ready"),)):
            holder[0].request_stop()

    launch = launch_for(pushed, container_labels, FOREVER, f"stop-{uuid.uuid4().hex[:8]}")
    holder.append(
        Supervisor(
            DockerRuntime(docker_client),
            launch,
            versions(pushed.tag),
            on_event=on_event,
            policy=RestartPolicy(stop_grace=5),
        )
    )

    began = time.monotonic()
    assert holder[0].run() == 0

    assert time.monotonic() - began < 10
    assert [type(e) for e in events[-4:]] == [
        ev.Stopping,
        ev.ContainerExited,
        ev.ContainerRemoved,
        ev.Stopped,
    ]
    assert labelled(docker_client, container_labels) == []


def test_a_secret_file_is_a_read_only_tmpfs_file_in_the_container_and_nowhere_else(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    secret = f"[{uuid.uuid4().int % 251},7,7,7]-{uuid.uuid4().hex}"
    target = "/run/psyche/wallet-key"
    script = (
        f"sha256sum {target} | cut -d' ' -f1; "
        f"(echo x > {target}) 2>/dev/null && echo writable || echo read-only; "
        f"grep ' {target} ' /proc/mounts | cut -d' ' -f3,4 | cut -d, -f1"
    )
    spec = ContainerSpec(
        image=busybox_image("rt-secret").ref,
        env={"WALLET_PRIVATE_KEY_PATH": target},
        secret_files={target: secret.encode()},
        labels=container_labels,
        gpus=False,
        command=("sh", "-c", script),
    )

    handle = runtime.run(spec)

    assert runtime.wait(handle) == 0
    assert of_stream(runtime.logs(handle), "stdout") == [
        hashlib.sha256(secret.encode()).hexdigest(),
        "read-only",
        "tmpfs ro",
    ]
    inspected = docker_client.api.inspect_container(handle.id)
    [mount] = [m for m in inspected["Mounts"] if m["Destination"] == target]
    assert (mount["Type"], mount["RW"]) == ("bind", False)
    assert mount["Source"].startswith("/dev/shm/psyche-run-manager-")
    assert not os.path.exists(mount["Source"])  # unlinked on the host once the container started
    assert not os.path.exists(os.path.dirname(mount["Source"]))
    assert secret not in json.dumps(inspected)
    runtime.remove(handle)
