"""scripts/demo (the README's main job) unattended: two real clients join one run and train, each under its
own run-manager and wallet; Ctrl+C leaves nothing running."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import docker
import pytest

from psyche.manager.launch import LABEL_MANAGED, LABEL_RUN_ID
from tests.support.client_image import ClientImage
from tests.support.paths import PROJECT_ROOT
from tests.support.processes import running

DEMO = PROJECT_ROOT / "scripts" / "demo"
DEMO_RUN = "demo-rewards"
CLIENTS = 2  # the demo's default


@pytest.mark.slow
@pytest.mark.docker
def test_demo_two_clients_join_train_and_ctrl_c_leaves_nothing_running(
    docker_client: docker.DockerClient, client_image: ClientImage, tmp_path: Path
) -> None:
    demo_dir = tmp_path / "demo"
    env = {**os.environ, "NO_COLOR": "1"}
    # Its own session, like a shell's foreground job: Ctrl+C is SIGINT to the whole process group.
    demo = subprocess.Popen(
        [str(DEMO), "--yes", "--no-build-if-present", "--dir", str(demo_dir)],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    trained: set[str] = set()
    both_trained = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            # Sharing: a client applied the agreed results of every client for a round.
            shared = re.match(rf"(client-\d+) \| .*applied {CLIENTS} agreed result", line)
            if shared:
                trained.add(shared.group(1))
                if len(trained) == CLIENTS:
                    both_trained.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert both_trained.wait(420), "".join(lines[-80:])
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl+C
        code = demo.wait(120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    reader.join(10)
    assert demo.stdout is not None
    demo.stdout.close()
    output = "".join(lines)
    assert code == 0, output[-6000:]

    assert "no NVIDIA runtime in this Docker engine: the client trains on the CPU (--no-gpus)" in output
    assert "demo: as the run owner: pause demo-rewards, set a Dummy model, the distro optimizer" in output
    ports: list[str] = []
    containers: list[str] = []
    for i in range(1, CLIENTS + 1):
        prefix = f"client-{i} | "
        mine = "".join(line[len(prefix) :] for line in lines if line.startswith(prefix))
        assert f"Using RUN_ID from environment: {DEMO_RUN}" in mine
        assert "joined the run for the next epoch" in mine  # the client's own line, streamed by the manager
        assert re.search(r"INFO step \d+ loss \d+\.\d+", mine), mine[-4000:]
        assert "[run-manager] stopped: stop requested" in mine
        assert f"demo: client {i}: run-manager exited with code 0" in output
        started = re.search(r"\[run-manager\] started (\S+) \(([0-9a-f]{12})\)", mine)
        assert started is not None, mine[-4000:]
        containers.append(started.group(2))
        # Each client: its own wallet, /scratch and P2P port; everyone bootstraps from client 1.
        client_env = (demo_dir / f"client-{i}" / ".env").read_text()
        key = "participant.json" if i == 1 else f"participant-{i}.json"
        assert f"WALLET_PRIVATE_KEY_PATH={demo_dir / key}\n" in client_env
        assert f"SCRATCH_DIR={demo_dir / f'client-{i}' / 'scratch'}\n" in client_env
        (port,) = re.findall(r"^P2P_PORT=(\d+)$", client_env, flags=re.M)
        ports.append(port)
        assert f"P2P_ADVERTISE=127.0.0.1:{port}\n" in client_env
        assert f"P2P_BOOTSTRAP=127.0.0.1:{ports[0]}\n" in client_env
        assert (demo_dir / f"client-{i}" / "scratch").is_dir()
        assert re.search(r"INFO step \d+ loss", (demo_dir / f"client-{i}" / "run-manager.log").read_text())
        # The client's P2P status, which `run-manager status` shows: both clients' results applied.
        status = json.loads((demo_dir / f"client-{i}" / "scratch" / "p2p-status.json").read_text())
        assert status["results_applied"] == CLIENTS and status["peers_seen"] >= CLIENTS - 1, status
    assert len(set(ports)) == CLIENTS and len(set(containers)) == CLIENTS
    assert "demo: stopped everything the demo started" in output

    # Nothing left: the containers are gone, and so is the local chain.
    for container in containers:
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container)
    left = docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_RUN_ID}={DEMO_RUN}"]}
    )
    assert left == []
    chain = re.search(r"stopping the local chain \(pid (\d+)\)", output)
    assert chain is not None, output[-4000:]
    assert not running(int(chain.group(1)))
    assert (demo_dir / ".env").is_file() and (demo_dir / "localnet.log").is_file()
    assert "localnet stopping" in (demo_dir / "localnet.log").read_text()


def test_demo_help_lists_its_flags() -> None:
    done = subprocess.run([str(DEMO), "--help"], capture_output=True, text=True, timeout=30, check=True)
    flags = ("--yes", "--dir", "--clients", "--optimizer", "--no-build-if-present", "--for", "--until")
    for flag in (*flags, "--metrics-port"):
        assert flag in done.stdout


def test_demo_refuses_an_unknown_flag_with_usage() -> None:
    done = subprocess.run([str(DEMO), "--bogus"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: scripts/demo")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clients", "0"], "demo: error: --clients wants a whole number from 1 to 16, got '0'"),
        (["--clients", "two"], "demo: error: --clients wants a whole number from 1 to 16, got 'two'"),
        (["--optimizer", "sgd"], "demo: error: --optimizer wants distro or adamw, got 'sgd'"),
    ],
)
def test_demo_refuses_a_bad_client_count_or_optimizer_before_starting_anything(
    args: list[str], message: str
) -> None:
    done = subprocess.run([str(DEMO), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == message


def test_without_docker_the_demo_says_what_to_install(tmp_path: Path) -> None:
    # A PATH without dockerd or docker-registry, and no engine at the services' socket.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id", "python3", "apt-get", "flock", "cat"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (bin_dir / tool).symlink_to(found)
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "PSYCHE_DOCKER_DIR": str(tmp_path / "docker"),
        "PSYCHE_DOCKER_CLI": str(tmp_path / "no-docker"),
        "PSYCHE_REGISTRY_ADDR": "127.0.0.1:1",
    }
    done = subprocess.run(
        ["/bin/bash", str(DEMO)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("demo: error: no Docker engine")
    assert "apt-get install -y docker.io docker-registry mmdebstrap" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
