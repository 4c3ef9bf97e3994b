"""Benchmark: `run-manager can-join` wall time (process start to exit, median) and its RPC round trips.

Starts `run-manager localnet` on free loopback ports, creates a configured permissionless run through the
real CLI, then times `run-manager can-join --json` as a user would run it. The round-trip count is what the
command reports (RpcClient.round_trips: every HTTP POST, so a batch counts once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from solders.keypair import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.commands import localnet_process, run_toml, write_keypair


def _script() -> str:
    beside = Path(sys.executable).with_name("run-manager")
    return str(beside) if beside.exists() else "run-manager"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="timed can-join runs (after one warm-up)")
    args = parser.parse_args()
    script = _script()
    with localnet_process() as net, tempfile.TemporaryDirectory() as tmp:
        owner = Keypair()
        net.airdrop(owner)
        wallet = write_keypair(Path(tmp), "owner", owner)
        env = {**os.environ, "RPC": net.rpc_url, "WS_RPC": net.ws_url, "NO_COLOR": "1"}

        def cli(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([script, *argv], env=env, capture_output=True, text=True, check=True)

        w = ["-w", str(wallet)]
        cli("create-run", "-r", "bench", "-c", "v1", *w)
        cli("update-config", "-r", "bench", "--config-path", str(run_toml(Path(tmp))), *w)
        cli("set-paused", "-r", "bench", "--resume", *w)
        cli("join-authorization-create", "--authorizer", "11111111111111111111111111111111", *w)
        user = str(Keypair().pubkey())
        argv = ["can-join", "-r", "bench", "--address", user, "--json"]
        cli(*argv)  # warm-up: bytecode caches
        times, trips = [], set()
        for _ in range(args.runs):
            start = time.perf_counter()
            done = cli(*argv)
            times.append(time.perf_counter() - start)
            trips.add(json.loads(done.stdout)["rpc_round_trips"])
    print(f"can-join wall time: median {statistics.median(times) * 1000:.0f} ms over {len(times)} runs")
    print(f"  min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    print(f"can-join RPC round trips: {', '.join(str(t) for t in sorted(trips))}")


if __name__ == "__main__":
    main()
