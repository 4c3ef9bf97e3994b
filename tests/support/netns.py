"""Network namespaces for the cross-machine tests: N hosts on one bridge, each with its own address.

Each host namespace gets ``SUBNET.<i + 2>/24`` on a veth pair whose other end joins ``br0`` inside a bridge
namespace, where ``br0`` itself has ``BRIDGE_ADDRESS`` (``SUBNET.1``): a process run in the bridge namespace
(the local chain) is reachable from every host at that address. The host's own network is never touched,
and every namespace is deleted afterwards, whatever happened. Deleting a namespace does not kill the
processes inside it: whoever starts one there must stop it (``stop_group``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

SUBNET = "10.231.0"
BRIDGE_ADDRESS = f"{SUBNET}.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def skip_reason() -> str | None:
    """Why namespaces cannot be made here (not Linux, not root, no working ``ip netns``), or None."""
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


@dataclass(frozen=True, slots=True)
class Hosts:
    """The namespaces made by ``hosts``: ``names[i]`` has ``address(i)``; ``bridge`` has BRIDGE_ADDRESS."""

    bridge: str
    names: tuple[str, ...]

    @staticmethod
    def address(index: int) -> str:
        return f"{SUBNET}.{index + 2}"

    @staticmethod
    def run_in(namespace: str, *argv: str) -> list[str]:
        """``argv`` run inside ``namespace`` (``ip netns exec`` execs it: the pid is the command's own)."""
        return ["ip", "netns", "exec", namespace, *argv]


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Hosts]:
    """``count`` host namespaces wired to one bridge namespace; all deleted on exit."""
    tag = uuid.uuid4().hex[:6]
    bridge_ns = f"p2pbr{tag}"
    names = tuple(f"p2pn{i}{tag}" for i in range(count))
    made: list[str] = []
    links: list[str] = []
    try:
        _ip("netns", "add", bridge_ns)
        made.append(bridge_ns)
        _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge_ns, "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", "br0")
        _ip("-n", bridge_ns, "link", "set", "br0", "up")
        _ip("-n", bridge_ns, "link", "set", "lo", "up")
        for i, ns in enumerate(names):
            _ip("netns", "add", ns)
            made.append(ns)
            inner, outer = f"p2pv{i}{tag}", f"p2pb{i}{tag}"  # <= 15 characters
            _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            links.append(inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "netns", bridge_ns)
            _ip("-n", bridge_ns, "link", "set", outer, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{Hosts.address(i)}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield Hosts(bridge_ns, names)
    finally:
        for ns in reversed(made):  # deleting a namespace deletes the veth ends inside it
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        for link in links:  # a link left in the root namespace by a failure half-way
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)


def stop_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 20.0) -> int:
    """SIGTERM to the process group of ``proc`` (started with ``start_new_session``), SIGKILL after
    ``grace`` seconds; returns its exit code. Safe to call on a process that already ended."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        code = None
    # Also after a clean exit: a child left in the group (none expected) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait() if code is None else code
