"""The cross-machine path for real: three nodes in three network namespaces, one bootstrap address.

Each namespace gets its own address (10.231.0.2-4/24) on a veth pair whose other end joins a bridge
inside a fourth namespace, so the host's own network is never touched. The first node binds its
address on a fixed port; the others bind the wildcard on an ephemeral port and know only the first
one's address: they must work out their advertised address from the route (P2P_ADVERTISE unset), find
each other through the first node's /peers, exchange signed broadcasts and fetch each other's blobs
across namespaces. Skips (with the reason) unless root with a working `ip netns`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support.paths import PROJECT_ROOT

COUNT = 3
SUBNET = "10.231.0"
BOOT_PORT = 4100


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"p2pprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"`ip netns add` does not work here: {getattr(exc, 'stderr', b'') or exc}"
    _ip("netns", "del", probe)
    return None


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    """COUNT namespaces wired to one bridge namespace; all deleted afterwards, whatever happened."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    bridge_ns = f"p2pbr{tag}"
    names = [f"p2pn{i}{tag}" for i in range(COUNT)]
    made: list[str] = []
    links: list[str] = []
    try:
        _ip("netns", "add", bridge_ns)
        made.append(bridge_ns)
        _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge_ns, "link", "set", "br0", "up")
        for i, ns in enumerate(names):
            _ip("netns", "add", ns)
            made.append(ns)
            inner, outer = f"p2pv{i}{tag}", f"p2pb{i}{tag}"  # <= 15 characters
            _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            links.append(inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "netns", bridge_ns)
            _ip("-n", bridge_ns, "link", "set", outer, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{SUBNET}.{i + 2}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in reversed(made):  # deleting a namespace deletes the veth ends inside it
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        for link in links:  # a link left in the root namespace by a failure half-way
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)


def test_three_namespaces_find_each_other_from_one_bootstrap_and_share(namespaces: list[str]) -> None:
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
