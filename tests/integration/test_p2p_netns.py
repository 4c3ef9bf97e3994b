"""The cross-machine path for real: three nodes in three network namespaces, one bootstrap address.

Each namespace gets its own address (10.231.0.2-4/24) on a veth pair whose other end joins a bridge
inside a fourth namespace (tests/support/netns.py), so the host's own network is never
touched. The first node binds its address on a fixed port; the others bind the wildcard on an ephemeral
port and know only the first one's address: they must work out their advertised address from the route
(P2P_ADVERTISE unset), find each other through the first node's /peers, exchange signed broadcasts and
fetch each other's blobs across namespaces. Skips (with the reason) unless root with a working `ip
netns`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.netns import SUBNET, hosts, skip_reason
from tests.support.paths import PROJECT_ROOT

COUNT = 3
BOOT_PORT = 4100


@pytest.fixture
def namespaces() -> Iterator[tuple[str, ...]]:
    """COUNT namespaces wired to one bridge namespace; all deleted afterwards, whatever happened."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with hosts(COUNT) as made:
        yield made.names


def test_three_namespaces_find_each_other_from_one_bootstrap_and_share(namespaces: tuple[str, ...]) -> None:
    boot = f"{SUBNET}.2:{BOOT_PORT}"
    procs = []
    try:
        for i, ns in enumerate(namespaces):
            env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
            if i == 0:
                env.update(P2P_BIND=f"{SUBNET}.2", P2P_PORT=str(BOOT_PORT))
            else:
                env.update(P2P_BOOTSTRAP=boot)  # wildcard bind, ephemeral port, advertise from the route
            cmd = [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "tests.support.p2p_netns_node",
                str(i),
                str(COUNT),
            ]
            procs.append(
                subprocess.Popen(
                    cmd, cwd=PROJECT_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
        reports = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line, f"a node exited early with {p.poll()}"
            reports.append(json.loads(line))
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
    for i, r in enumerate(reports):
        assert "error" not in r, r
        assert r["address"][0] == f"{SUBNET}.{i + 2}", r  # never 127.0.0.1: the route picked the veth
        others = {f"{SUBNET}.{j + 2}" for j in range(COUNT) if j != i}
        assert {a.split(":")[0] for a in r["peers"]} == others, r
        assert {a.split(":")[0] for a in r["tickets"]} == others, r
        assert r["fetched"] == {str(j): True for j in range(COUNT) if j != i}, r
        assert r["stats"]["refused"] == {}, r
        assert r["stats"]["messages_received"] == COUNT - 1, r
