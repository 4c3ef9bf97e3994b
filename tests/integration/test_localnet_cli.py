"""`run-manager localnet` as a user runs it: a busy port or a foreign --host is one clear line, not a
traceback; the URLs it prints name --host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from psyche.localnet.server import reachable_url_host
from tests.support.net import listening_port

RUN_MANAGER = Path(sys.executable).with_name("run-manager")


def test_a_busy_rpc_port_is_one_line_naming_the_port_and_the_flag() -> None:
    with listening_port() as port:
        done = subprocess.run(
            [str(RUN_MANAGER), "localnet", "--rpc-port", str(port), "--ws-port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port} for RPC: address already in use",
        "hint: stop what uses the port, or pick another with --rpc-port (0 picks a free one)",
    ]


def test_a_host_address_this_machine_lacks_is_one_line_naming_it_and_the_flag() -> None:
    nonlocal_bind = Path("/proc/sys/net/ipv4/ip_nonlocal_bind")
    if nonlocal_bind.is_file() and nonlocal_bind.read_text().strip() == "1":
        pytest.skip("net.ipv4.ip_nonlocal_bind=1: binding any address succeeds here")
    done = subprocess.run(  # 192.0.2.1: TEST-NET-1, documentation only, never a machine's address
        [str(RUN_MANAGER), "localnet", "--host", "192.0.2.1", "--rpc-port", "0", "--ws-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "Error: cannot listen on 192.0.2.1:0 for RPC: cannot assign requested address",
        "hint: pass an address of this machine with --host (the default is 127.0.0.1)",
    ]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8899"),
        ("10.231.0.1", "http://10.231.0.1:8899"),
        ("0.0.0.0", "http://127.0.0.1:8899"),  # a wildcard is reached through loopback
        ("::", "http://[::1]:8899"),
        ("fd00::1", "http://[fd00::1]:8899"),
        ("localhost", "http://localhost:8899"),
    ],
)
def test_the_urls_name_the_host_the_chain_listens_on(host: str, url: str) -> None:
    assert f"http://{reachable_url_host(host)}:8899" == url
    assert f"ws://{reachable_url_host(host)}:8900" == url.replace("http", "ws").replace("8899", "8900")
