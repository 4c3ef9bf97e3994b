"""The cross-machine path with whole clients: real client processes in separate network namespaces train
one run with DisTrO and share their results peer to peer, as clients on different machines do.

The local chain runs in the bridge namespace on its own address (``localnet --host 10.231.0.1 --demo DIR
--demo-clients N``), so the demo's ``.env`` names that address; the owner switches the demo run to the
demo's Dummy model and DisTrO config (as scripts/demo does) from the bridge namespace too. Each client is
``python -m psyche.client train`` in a namespace of its own (10.231.0.2, .3, ...), with the demo's RPC/WS
URLs and its own wallet key file. Client 1 listens on a fixed P2P port on the wildcard; the others know
only its address (P2P_BOOTSTRAP) and nobody sets P2P_ADVERTISE: each works out its address from the
route. Passing means each client applied every client's result in a round (its p2p-status.json) and the
epoch-end checkpoints in the scratch folders are byte-identical. Nothing in this process talks to the
chain or the clients over the network; every process started is stopped (by process group) and every
namespace deleted, whatever happens. Skips unless root with a working ``ip netns``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

pytest.importorskip("torch")

from psyche.client.sharing import STATUS_FILE
from psyche.localnet.demo import client_keyfile
from psyche.localnet.demo_run import demo_run_toml
from tests.support.netns import BRIDGE_ADDRESS, Hosts, hosts, skip_reason, stop_group

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
RUN_MANAGER = str(Path(sys.executable).with_name("run-manager"))
CLIENTS = 3
RUN_ID = "demo-open"
BOOT_PORT = 4100
RPC_PORT, WS_PORT = 8899, 8900  # free: nothing else lives in the bridge namespace


@pytest.fixture
def namespaces() -> Iterator[Hosts]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with hosts(CLIENTS) as made:
        yield made


class Processes:
    """Every process the test starts, each in a session of its own with its output in a log file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.directory / f"{name}.log"
        out = log.open("wb")
        proc = subprocess.Popen(
            argv, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.started.append((proc, log, out))
        return proc, log

    def stop_all(self) -> list[int]:
        """Stop every process (clients first, the chain last); their exit codes in start order."""
        codes = [stop_group(proc) for proc, _, _ in reversed(self.started)]
        for _, _, out in self.started:
            out.close()
        return codes[::-1]

    def tails(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log, _ in self.started
        )


def base_env() -> dict[str, str]:
    """This process's environment without anything the chain commands or the client would read."""
    drop = ("RPC", "WS_RPC", "P2P_", "RUN_", "WALLET", "RAW_", "CHECKPOINT_DIR", "SCRATCH_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(NO_COLOR="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # 2 shared cores: no thread fights
    return env


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"), flags=re.M)
        if match:
            return match.group(0)
        assert proc.poll() is None, f"{log.name}: exited with {proc.returncode} before /{pattern}/"
        time.sleep(0.1)
    raise AssertionError(f"{log.name}: no /{pattern}/ in {timeout} s")


def owner(hosts_: Hosts, env: dict[str, str], demo: Path, *args: str) -> None:
    """A run-manager chain command as the demo's run owner, run where the chain is reachable."""
    argv = [RUN_MANAGER, *args, "--env-file", str(demo / ".env")]
    argv += ["--wallet-private-key-path", str(demo / "owner.json")]
    done = subprocess.run(
        Hosts.run_in(hosts_.bridge, *argv), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"


def checkpoints(scratch: Path) -> dict[str, dict[str, bytes]]:
    """checkpoint dir name -> file name -> bytes (complete ones only: a partial one has a .tmp- name)."""
    root = scratch / RUN_ID
    if not root.is_dir():
        return {}
    return {
        d.name: {f.name: f.read_bytes() for f in sorted(d.iterdir())}
        for d in sorted(root.iterdir())
        if d.is_dir() and d.name.startswith("epoch-")
    }


def test_clients_in_separate_namespaces_train_one_run_and_share_through_one_bootstrap(
    namespaces: Hosts, tmp_path: Path
) -> None:
    began = time.monotonic()
    demo = tmp_path / "demo"
    env = base_env()
    processes = Processes(tmp_path)
    scratches = [tmp_path / f"client-{i + 1}" / "scratch" for i in range(CLIENTS)]
    statuses: list[list[dict[str, object]]] = [[] for _ in range(CLIENTS)]
    clients: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        chain, chain_log = processes.start(
            "localnet",
            Hosts.run_in(
                namespaces.bridge, sys.executable, "-m", "psyche.localnet", "--host", BRIDGE_ADDRESS,
                "--rpc-port", str(RPC_PORT), "--ws-port", str(WS_PORT),
                "--demo", str(demo), "--demo-clients", str(CLIENTS),
            ),
            env,
        )  # fmt: skip
        wait_for_line(chain, chain_log, r"^  env file", 60)
        said = chain_log.read_text()
        assert f"RPC URL: http://{BRIDGE_ADDRESS}:{RPC_PORT}\n" in said
        assert f"Listening on {BRIDGE_ADDRESS}: whoever reaches it can use this chain" in said
        # The demo's .env names the chain by its --host address: that is all a client gets to reach it.
        written = dict(re.findall(r"^(\w+)=(.*)$", (demo / ".env").read_text(), flags=re.M))
        assert written["RPC"] == f"http://{BRIDGE_ADDRESS}:{RPC_PORT}"
        assert written["WS_RPC"] == f"ws://{BRIDGE_ADDRESS}:{WS_PORT}"
        assert written["RUN_ID"] == RUN_ID

        # As scripts/demo does: the run trains the Dummy model with DisTrO, its first epoch waiting for all.
        config = demo / "demo-run.toml"
        config.write_text(demo_run_toml("distro", CLIENTS))
        owner(namespaces, env, demo, "set-paused")
        owner(namespaces, env, demo, "update-config", "--config-path", str(config))
        owner(namespaces, env, demo, "set-paused", "--resume")
        configured = time.monotonic()

        for i, ns in enumerate(namespaces.names):
            scratches[i].mkdir(parents=True)
            client_env = {
                **env,
                "RPC": written["RPC"],
                "WS_RPC": written["WS_RPC"],
                "RUN_ID": RUN_ID,
                "WALLET_PRIVATE_KEY_PATH": str(demo / client_keyfile(i + 1)),  # a path, never the key
                "CHECKPOINT_DIR": str(scratches[i]),
                "DEVICE": "cpu",
            }
            if i == 0:
                client_env["P2P_PORT"] = str(BOOT_PORT)  # wildcard bind; its address from the route
            else:
                client_env["P2P_BOOTSTRAP"] = f"{Hosts.address(0)}:{BOOT_PORT}"
            argv = Hosts.run_in(ns, sys.executable, "-m", "psyche.client", "train")
            clients.append(processes.start(f"client-{i + 1}", argv, client_env))

        # Until every client saved an epoch-end checkpoint, record every status each one writes.
        deadline = time.monotonic() + 420
        while not all(checkpoints(s) for s in scratches):
            for i, (proc, log) in enumerate(clients):
                assert proc.poll() is None, f"{log.name} exited with {proc.returncode}"
                try:
                    status = json.loads((scratches[i] / STATUS_FILE).read_text())
                except (OSError, ValueError):  # not written yet
                    continue
                if not statuses[i] or statuses[i][-1] != status:
                    statuses[i].append(status)
            assert time.monotonic() < deadline, "no epoch-end checkpoint in every scratch folder in time"
            time.sleep(0.2)
        trained = time.monotonic()
    except BaseException:
        processes.stop_all()
        print(processes.tails())
        raise
    codes = processes.stop_all()
    total = time.monotonic() - began
    print(
        f"{CLIENTS} clients in {CLIENTS} namespaces: chain+demo+owner {configured - began:.1f} s, "
        f"clients to epoch-end checkpoints {trained - configured:.1f} s, total {total:.1f} s"
    )
    logs = [log.read_text(errors="replace") for _, log in clients]
    assert codes == [0] * (CLIENTS + 1), (
        processes.tails()
    )  # SIGTERM: the chain and each client stop on request

    for i, seen in enumerate(statuses):
        # Its own address on its own veth (never 127.0.0.1), worked out from the route.
        addresses = {str(s["address"]) for s in seen}
        assert {a.rsplit(":", 1)[0] for a in addresses} == {Hosts.address(i)}, (i, addresses)
        if i == 0:
            assert addresses == {f"{Hosts.address(0)}:{BOOT_PORT}"}
        # A round in which it received the others' results and applied every client's.
        shared = [s for s in seen if s["results_received"] == CLIENTS and s["results_applied"] == CLIENTS]
        assert shared, f"client {i + 1} never applied all {CLIENTS} results: {seen}"
        assert max(int(str(s["peers_seen"])) for s in seen) >= CLIENTS - 1, seen
        assert f"applied {CLIENTS} agreed result" in logs[i], logs[i][-3000:]
        print(f"client {i + 1} at {sorted(addresses)}: {len(shared)} round(s) applying all {CLIENTS} results")

    # The same model everywhere: every epoch-end checkpoint byte-identical in every scratch folder.
    saved = [checkpoints(s) for s in scratches]
    common = set.intersection(*(set(s) for s in saved))
    assert common, [sorted(s) for s in saved]
    print(f"byte-identical in all {CLIENTS} scratch folders: {sorted(common)}")
    for name in sorted(common):
        files = saved[0][name]
        assert "model.safetensors" in files
        for other in saved[1:]:
            assert other[name] == files, f"checkpoint {name} differs between clients"
