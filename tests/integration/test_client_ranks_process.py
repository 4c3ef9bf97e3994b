"""``python -m psyche.client train`` with DATA_PARALLELISM=2 as a real process tree on the local chain:
a killed rank 1 ends it with exit 1 and one line; SIGTERM to rank 0 stops every rank with exit 0."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from solders.keypair import Keypair

pytest.importorskip("torch")

from tests.support.client_run import CONFIG, permissionless_run
from tests.support.localnet import chain_rpc, localnet, run
from tests.support.paths import PROJECT_ROOT
from tests.support.processes import running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

# Real time here (the client is another process): rank 1 has the warmup to start and import torch.
REAL_CONFIG = dataclasses.replace(CONFIG, warmup_time=8, max_round_train_time=10, total_steps=50)


def _children(pid: int) -> list[int]:
    # Per thread: rank 1 is started by the training thread, not the main one.
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(c) for task in tasks for c in (task / "children").read_text().split()]


async def _client_until_first_step(
    srv_rpc: str, srv_ws: str, wallet: Keypair, run_id: str
) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH")},
        "RPC": srv_rpc,
        "WS_RPC": srv_ws,
        "RUN_ID": run_id,
        "RAW_WALLET_PRIVATE_KEY": json.dumps(list(bytes(wallet))),
        "DATA_PARALLELISM": "2",
        "DEVICE": "cpu",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "psyche.client", "train",
        env=env, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(90):
        while not any(" step 1 loss " in line for line in lines):
            raw = await proc.stdout.readline()
            assert raw, "the client ended before its first step:\n" + "".join(lines)
            lines.append(raw.decode())
    return proc, lines


def _scenario(run_id: str, act: str) -> tuple[int | None, list[str], list[int], float]:
    wallet = Keypair()

    async def scenario() -> tuple[int | None, list[str], list[int], float]:
        async with localnet() as srv, chain_rpc(srv.rpc_url) as client:
            await permissionless_run(client, run_id, [wallet.pubkey()], REAL_CONFIG)
            proc, lines = await _client_until_first_step(srv.rpc_url, srv.ws_url, wallet, run_id)
            workers = [
                pid for pid in _children(proc.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
            ]
            assert len(workers) == 1  # rank 1
            started = time.monotonic()
            try:
                if act == "kill":
                    os.kill(workers[0], signal.SIGKILL)
                else:
                    proc.send_signal(signal.SIGTERM)
                assert proc.stdout is not None
                rest = await asyncio.wait_for(proc.stdout.read(), timeout=30)
                code = await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            return code, lines + rest.decode().splitlines(keepends=True), workers, time.monotonic() - started

    return run(scenario)


def test_a_killed_rank_ends_the_client_process_with_exit_1_and_one_line() -> None:
    code, lines, workers, seconds = _scenario("ranks-proc-kill", "kill")
    print(f"rank 1 killed -> client process exited 1: {seconds:.2f} s")
    assert code == 1
    assert lines[-1] == "[!] training rank 1 was killed by SIGKILL\n"
    assert seconds < 5
    assert workers and not any(running(pid) for pid in workers)


def test_sigterm_to_rank_0_stops_every_rank_with_exit_0() -> None:
    code, lines, workers, seconds = _scenario("ranks-proc-term", "term")
    assert code == 0, "".join(lines[-20:])
    assert any("stopping on request" in line for line in lines)
    assert seconds < 15
    assert workers
    # Every worker rank must end with rank 0; a bounded wait, as the kernel may show one for a moment longer.
    wait_until(lambda: not any(running(pid) for pid in workers), timeout=10.0, what="every worker rank gone")
