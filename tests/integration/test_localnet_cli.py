"""`run-manager localnet` as a user runs it: a busy port is one clear line, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
