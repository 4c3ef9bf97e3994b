"""Benchmark the localnet: startup to ready, getAccountInfo requests/s, transfer transactions/s (one client).

Run: .venv/bin/python bench/bench_localnet.py [--requests 2000] [--transfers 500]
The server runs as a subprocess (`python -m psyche.localnet`) on free loopback ports; the client is one
keep-alive httpx connection sending requests back to back. Target: ready in under 1 s.
"""

from __future__ import annotations

import argparse
import base64
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

ROOT = Path(__file__).resolve().parent.parent
TARGET_READY_S = 1.0


class Node:
    """A localnet subprocess; ``ready_s`` is the wall time from spawn to its ready line."""

    def __init__(self, *extra: str) -> None:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "psyche.localnet", "--rpc-port", "0", "--ws-port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if line.startswith("localnet ready"):
                break
        self.ready_s = time.perf_counter() - started
        match = re.search(r"RPC URL: (\S+)", "".join(lines))
        if match is None:
            raise SystemExit("localnet did not start:\n" + "".join(lines))
        self.url = match.group(1)
        self.http = httpx.Client(timeout=10)

    def call(self, method: str, params: list[object]) -> object:
        answer = self.http.post(
            self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        )
        body = answer.json()
        if "error" in body:
            raise SystemExit(f"{method}: {body['error']}")
        return body["result"]

    def close(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def bench_startup(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        node = Node()
        times.append(node.ready_s)
        node.close()
    return times


def bench_reads(node: Node, n: int) -> float:
    key = str(Keypair().pubkey())
    node.call("requestAirdrop", [key, 10**9])
    started = time.perf_counter()
    for _ in range(n):
        node.call("getAccountInfo", [key, {"encoding": "base64"}])
    return n / (time.perf_counter() - started)


def bench_transfers(node: Node, n: int) -> float:
    payer, dest = Keypair(), Keypair().pubkey()
    node.call("requestAirdrop", [str(payer.pubkey()), 10**15])
    latest = node.call("getLatestBlockhash", [])
    assert isinstance(latest, dict)
    blockhash = Hash.from_string(latest["value"]["blockhash"])
    wires = []
    for i in range(n):  # distinct amounts: identical transactions would be duplicates
        ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=dest, lamports=1_000_000 + i))
        tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), blockhash), [payer])
        wires.append(base64.b64encode(bytes(tx)).decode())
    started = time.perf_counter()
    for wire in wires:  # with preflight, as clients send by default
        node.call("sendTransaction", [wire, {"encoding": "base64"}])
    return n / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--transfers", type=int, default=500)
    parser.add_argument("--startups", type=int, default=5)
    args = parser.parse_args()
    startup = bench_startup(args.startups)
    node = Node()
    try:
        reads = bench_reads(node, args.requests)
        writes = bench_transfers(node, args.transfers)
    finally:
        node.close()
    median = statistics.median(startup)
    print(f"startup to ready (spawn → ready line), median of {len(startup)}: {median * 1000:.0f} ms")
    print(f"getAccountInfo, 1 client, keep-alive: {reads:,.0f} requests/s ({args.requests} requests)")
    print(
        f"sendTransaction (transfer, preflight), 1 client: {writes:,.0f} tx/s ({args.transfers} transactions)"
    )
    ok = median < TARGET_READY_S
    print(f"startup target < {TARGET_READY_S:.0f} s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
