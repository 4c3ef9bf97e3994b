"""The main job end to end: start, logs, signals, orphans, refusals, RPC fallback and the wallet secret.

run-manager runs as a real subprocess against `run-manager localnet`; clients are busybox containers on the
real engine, pulled from the loopback registry. The tests marked ``both_engines`` run against Docker and
against Podman's Docker-compatible service (scripts/services start --engine podman).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import time

import docker
import pytest
from solders.keypair import Keypair

from psyche.manager.engines import cdi_spec_present
from tests.support.engine import Engine, PushedImage, delete_from_registry
from tests.support.loopback_rpc import JsonRpcServer, servers
from tests.support.mainjob import (
    Job,
    both_engines,
    build_version,
    job,
    versions,
    world,
)
from tests.support.net import dead_url

__all__ = ["job", "versions", "world"]  # fixtures used by name

pytestmark = pytest.mark.docker


@both_engines
def test_happy_path_logs_reach_the_terminal_and_nothing_is_left(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    a, _ = versions
    job.world.create_run(job.run_id, a.tag)
    manager = job.start('echo "hello from $CLIENT_VERSION on $RUN_ID"; echo second line; exit 0')
    assert manager.wait(60) == 0, manager.err.text
    assert manager.out.text.splitlines()[-2:] == [f"hello from {a.tag} on {job.run_id}", "second line"]
    err = manager.err.text
    assert f"Authorized to join run '{job.run_id}' through grantee 1111111111111111111111111111111" in err
    assert f"[run-manager] run's client_version '{a.tag}' -> image {a.ref}" in err
    assert f"[run-manager] pulling {a.ref}" in err
    assert "[run-manager] client finished with exit code 0" in err
    assert "hello from" not in err  # client lines on stdout only, manager lines on stderr only
    assert not any(line.startswith("[run-manager]") for line in manager.out.text.splitlines())
    assert job.containers() == []
    job.wallet.assert_absent(manager.out.text, err)


@both_engines
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_client_and_leaves_no_container(
    job: Job, versions: tuple[PushedImage, PushedImage], sig: signal.Signals
) -> None:
    job.world.create_run(job.run_id, versions[0].tag)
    manager = job.start()
    manager.out.wait_for("tick 3")
    [running] = job.containers()
    assert running.status == "running"
    began = time.monotonic()
    manager.signal(sig)
    assert manager.wait(30) == 0, manager.err.text
    assert time.monotonic() - began < 10  # graceful: the client's TERM trap, not the 10 s grace period
    assert "got TERM" in manager.out.text  # the client's last words still reached the terminal
    assert "[run-manager] stopped: stop requested" in manager.err.text
    assert job.containers() == []


@both_engines
def test_after_a_sigkill_the_next_start_removes_the_orphan(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    job.world.create_run(job.run_id, versions[0].tag)
    first = job.start()
    first.out.wait_for("tick 2")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    [orphan] = job.containers()
    assert orphan.status == "running"  # nobody cleaned up: that is what the next start must do

    second = job.start()
    found = second.err.lines[second.err.wait_for("left by an earlier run-manager; removing it")][1]
    assert f"found container {orphan.name} ({orphan.id[:12]}, Up " in found
    second.err.wait_for(f"removed leftover container {orphan.name}")
    second.out.wait_for("tick 2")
    [current] = job.containers()
    assert current.id != orphan.id
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert job.containers() == []


@both_engines
def test_a_sigstopped_client_is_restarted_after_the_stall_timeout_and_status_shows_its_silence(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    job.world.create_run(job.run_id, versions[0].tag)
    manager = job.start(extra_args=("--stall-timeout", "5"))  # the ticking client
    first = manager.out.wait_for("tick 3")
    [frozen] = job.containers()
    frozen.kill(signal="SIGSTOP")  # the engine still says "running", and so does `status`

    # `status` (a separate process in real life; the real command in-process here) reads the engine's log.
    env = {"DOCKER_HOST": job.docker_host or os.environ["DOCKER_HOST"], "RUN_ID": job.run_id}
    deadline = time.monotonic() + 30
    while True:
        [view] = job.world.cli.json("status", env=env)["containers"]
        if (view["last_log_age_s"] or 0.0) >= 1.5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # polling for the condition, which the assertion below decides
    assert view["status"].startswith("Up") and view["id"] == frozen.id and 1.5 <= view["last_log_age_s"] < 30
    screen = job.world.cli.ok("status", env=env).stdout
    assert re.search(r"^  last log line:  \d+s ago$", screen, re.M), screen

    stalled = manager.err.wait_for("wrote no log line for", timeout=30)
    assert "(--stall-timeout 5): restarting it" in manager.err.lines[stalled][1]
    # A stopped process cannot take the SIGTERM: the SIGKILL after the grace period ends it (137).
    manager.err.wait_for(
        "(attempt 1): no log line for 5s (stall timeout), exit code 137", start=stalled, timeout=30
    )
    manager.out.wait_for("client", start=first + 1)  # the second container says hello
    [current] = job.containers()
    assert current.id != frozen.id and current.name.endswith("-2")
    manager.signal(signal.SIGTERM)
    assert manager.wait(30) == 0
    assert job.containers() == []


def test_the_wallet_secret_is_in_no_argv_log_line_or_error(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    job.world.create_run(job.run_id, versions[0].tag)
    manager = job.start()
    manager.out.wait_for("tick 2")
    # Every process on the machine, full argv (the client's key travels in the container's environment).
    argv = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=True).stdout
    assert manager.argv[0] in argv  # ps does see the run-manager
    job.wallet.assert_absent(argv)
    with open(f"/proc/{manager.pid}/cmdline", "rb") as cmdline:
        job.wallet.assert_absent(cmdline.read().decode().replace("\0", " "))
    [container] = job.containers()
    assert container.attrs["Args"] == ["-c", manager.argv[-1]]  # the client's argv: the script alone
    job.wallet.assert_absent(" ".join(container.attrs["Args"]))
    manager.signal(signal.SIGTERM)
    assert manager.wait(30) == 0
    job.wallet.assert_absent(manager.out.text, manager.err.text)

    # An error path: a run that does not exist.
    refused = job.start(env_file=job.env_file(extra={"RUN_ID": "no-such-run"}, name="missing.env"))
    assert refused.wait(30) == 1
    assert "Error: " in refused.err.text
    job.wallet.assert_absent(refused.out.text, refused.err.text)


@both_engines
def test_an_image_labelled_key_file_gets_the_wallet_key_as_a_tmpfs_file_that_inspect_never_shows(
    job: Job, versions: tuple[PushedImage, PushedImage], docker_client: docker.DockerClient, registry: str
) -> None:
    assert job.docker is not None
    keyed = build_version(docker_client, versions[0], "mj-keyfile", labels={"psyche.client.key-file": "1"})
    try:
        job.world.create_run(job.run_id, keyed.tag)
        script = (
            "trap 'exit 0' TERM; "
            'echo "key $(sha256sum < "$WALLET_PRIVATE_KEY_PATH" | cut -d" " -f1) at $WALLET_PRIVATE_KEY_PATH '
            'raw=${RAW_WALLET_PRIVATE_KEY:+set}"; '
            "while :; do sleep 0.1; done"
        )
        manager = job.start(script)
        line = manager.out.lines[manager.out.wait_for("key ")][1]
        sent = json.dumps(list(bytes(job.wallet.keypair)), separators=(",", ":"))  # what the client reads
        assert line == f"key {hashlib.sha256(sent.encode()).hexdigest()} at /run/psyche/wallet-key raw="
        assert "wallet key for " in manager.err.text
        assert "a read-only file on a tmpfs mount, not in the container's environment" in manager.err.text
        [container] = job.containers()
        inspected = job.docker.api.inspect_container(container.id)
        job.wallet.assert_absent(json.dumps(inspected))
        assert not [v for v in inspected["Config"]["Env"] if v.startswith("RAW_WALLET_PRIVATE_KEY=")]
        assert "WALLET_PRIVATE_KEY_PATH=/run/psyche/wallet-key" in inspected["Config"]["Env"]
        manager.signal(signal.SIGTERM)
        assert manager.wait(30) == 0
        job.wallet.assert_absent(manager.out.text, manager.err.text)
    finally:
        job.close()
        for client in {id(c): c for c in (docker_client, job.docker)}.values():  # Podman pulled it too
            with contextlib.suppress(docker.errors.NotFound):
                client.images.remove(keyed.ref, force=True)
        delete_from_registry(registry, keyed)


def test_unauthorized_wallet_starts_no_container(job: Job, versions: tuple[PushedImage, PushedImage]) -> None:
    # The run's join authority never authorized anyone.
    job.world.create_run(job.run_id, versions[0].tag, join_authority=str(Keypair().pubkey()))
    manager = job.start()
    assert manager.wait(30) == 1
    err = manager.err.text
    assert "Error: " in err and "not authorized" in err.lower(), err
    assert "[run-manager] pulling" not in err and "started psyche-client" not in err
    assert job.containers() == []
    job.wallet.assert_absent(manager.out.text, err)


def test_bad_client_version_on_chain_is_refused_before_any_pull(
    job: Job, versions: tuple[PushedImage, PushedImage], docker_client: docker.DockerClient
) -> None:
    a, _ = versions
    job.world.create_run_with_unchecked_version(job.run_id, f"{a.tag} ")  # trimming it would pull A
    began_ns = time.time_ns()
    manager = job.start()
    assert manager.wait(30) == 1
    err = manager.err.text
    assert f"Error: the run's client_version '{a.tag} ' is not a Docker tag or sha256 digest: " in err
    assert "it contains whitespace" in err
    assert "hint: the run owner must set a valid client_version" in err
    assert "pulling" not in err
    pulls = docker_client.events(
        since=began_ns // 10**9,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "image", "event": "pull"},
    )
    # `since` has whole seconds: earlier tests' pulls in that second are not ours.
    # The tag carries this session's id: other sessions' pulls of the same repository are not ours.
    assert [e for e in pulls if a.tag in e.get("id", "") and e["timeNano"] >= began_ns] == []
    assert job.containers() == []


@both_engines
def test_gpu_request_on_an_engine_without_nvidia_fails_clearly_and_leaves_nothing(
    job: Job, versions: tuple[PushedImage, PushedImage], engine: Engine
) -> None:
    if engine.name == "podman":
        if cdi_spec_present(os.listdir) is not None:
            pytest.skip("this host has a CDI spec: Podman could give GPUs; the error path cannot be shown")
        wanted = (
            "Error: the Podman engine cannot give the container GPUs: install the NVIDIA Container Toolkit "
            "and generate its CDI spec with 'nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml' (engine "
            "said: setting up CDI devices: unresolvable CDI devices nvidia.com/gpu=all)"
        )
    else:
        if "nvidia" in engine.client.info().get("Runtimes", {}):
            pytest.skip("this engine has the NVIDIA runtime: the error path cannot be shown here")
        wanted = (
            "Error: the Docker engine cannot give the container GPUs: install the NVIDIA Container Toolkit, "
            "run 'nvidia-ctk runtime configure --runtime=docker' and restart Docker"
        )
    job.world.create_run(job.run_id, versions[0].tag)
    manager = job.start(gpus=True)
    assert manager.wait(60) == 1
    err = manager.err.text
    assert wanted in err
    assert "Traceback" not in err
    assert job.containers() == []
    job.wallet.assert_absent(manager.out.text, err)


def test_dead_primary_rpc_and_ws_the_job_runs_through_rpc_2(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    a, b = versions
    job.world.create_run(job.run_id, a.tag)
    net = job.world.net
    env_file = job.env_file(
        rpc=dead_url(),
        ws=dead_url().replace("http://", "ws://"),
        extra={"RPC_2": net.rpc_url, "WS_RPC_2": net.ws_url},
    )
    manager = job.start(env_file=env_file)
    manager.out.wait_for(f"client {a.tag} up")
    manager.err.wait_for(f"version watch: subscribed on {net.ws_url}")
    # The version watch works through the second endpoint too.
    job.world.set_version(job.run_id, b.tag)
    manager.out.wait_for(f"client {b.tag} up")
    manager.signal(signal.SIGTERM)
    assert manager.wait(30) == 0
    assert job.containers() == []
    # The dead WS_RPC's retries beside a subscribed WS_RPC_2 are no news: no "down" line at all.
    assert "polling meanwhile" not in manager.err.text


def test_a_primary_rpc_node_behind_the_job_runs_through_rpc_2(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    a, _ = versions
    job.world.create_run(job.run_id, a.tag)
    net = job.world.net
    with servers("node-behind") as [behind]:
        assert isinstance(behind, JsonRpcServer)
        manager = job.start(
            env_file=job.env_file(rpc=behind.url, extra={"RPC_2": net.rpc_url, "WS_RPC_2": net.ws_url})
        )
        manager.out.wait_for("tick 3")
        assert behind.requests > 0  # asked first, answered -32005, and the lookup moved on to RPC_2
        [running] = job.containers()
        assert running.status == "running"
        manager.signal(signal.SIGTERM)
        assert manager.wait(30) == 0
    assert "Error:" not in manager.err.text and "chain unreachable" not in manager.err.text
    assert job.containers() == []
