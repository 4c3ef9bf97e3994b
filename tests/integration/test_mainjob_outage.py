"""The main job outlasts the chain: `run-manager localnet` killed while the client restarts, back 30 s later.

Its own chain (a ledger on disk, ports it keeps), since the test kills it; clients are busybox containers
that, like the real client, exit 1 when the chain stops answering.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from tests.support.commands import localnet_process
from tests.support.engine import PushedImage
from tests.support.mainjob import Job, chain, new_run_id, participant, versions

__all__ = ["versions"]  # fixture used by name

pytestmark = pytest.mark.docker

OUTAGE = 30.0  # seconds the chain stays away

# getSlot on $RPC every 0.2 s; the first failed call ends the client with exit code 1.
CHAIN_CLIENT = (
    "trap 'exit 0' TERM; "
    'echo "client $CLIENT_VERSION up"; '
    "while wget -q -O /dev/null --header 'content-type: application/json' "
    '--post-data \'{"jsonrpc":"2.0","id":1,"method":"getSlot"}\' "$RPC"; do echo tick; sleep 0.2; done; '
    "echo 'client: lost the chain'; exit 1"
)


def port(url: str) -> int:
    found = urlsplit(url).port
    assert found is not None, url
    return found


def test_the_chain_killed_while_the_client_restarts_and_back_30s_later_the_job_carries_on(
    tmp_path: Path, docker_client: docker.DockerClient, versions: tuple[PushedImage, PushedImage]
) -> None:
    a, _ = versions
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    job: Job | None = None
    try:
        with chain(tmp_path, ledger=ledger, stop_signal=signal.SIGKILL) as world:
            net = world.net
            job = Job(
                world, docker_client, a.repository, new_run_id(), participant(tmp_path / "keys"), tmp_path
            )
            world.create_run(job.run_id, a.tag)
            manager = job.start(CHAIN_CLIENT)
            manager.out.wait_for("tick")
        killed = time.monotonic()  # SIGKILL, as a crash or a lost network would leave it

        first = manager.err.wait_for("chain unreachable, retrying until it answers", 30)
        out_before = len(manager.out.lines)
        assert "client: lost the chain" in manager.out.text
        assert "restarting the client in 0.2s (attempt 1): exit code 1" in manager.err.text
        time.sleep(
            max(0.0, killed + OUTAGE - time.monotonic())
        )  # the outage itself, not a wait for an outcome

        with localnet_process(ledger=ledger, rpc_port=port(net.rpc_url), ws_port=port(net.ws_url)):
            back = manager.err.wait_for("chain reachable again after", 30, start=first)
            manager.out.wait_for(f"client {a.tag} up", 30, start=out_before)
            manager.out.wait_for("tick", 30, start=out_before)
            manager.signal(signal.SIGTERM)
            assert manager.wait(30) == 0, manager.err.text

        err = manager.err.text
        assert err.count("chain unreachable") == 1 and err.count("chain reachable again") == 1
        assert err.count("started psyche-client-") == 2  # the first start and one restart, after the outage
        assert not [line for line in err.splitlines() if line.startswith("Error:")], err
        seconds = float(manager.err.lines[back][1].rsplit(" ", 1)[1].rstrip("s"))
        assert OUTAGE - 5 <= seconds <= OUTAGE + 15  # first retry 1 s after the failed read, capped at 10 s
        assert job.containers() == []
    finally:
        if job is not None:
            job.close()
