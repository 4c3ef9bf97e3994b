"""The localnet's --ledger persistence: clean restarts, SIGTERM, and kill -9 in the middle of writes."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from psyche.localnet.chain import Chain
from psyche.localnet.world import World
from tests.support.localnet import chain_rpc, localnet, run, sign
from tests.support.paths import PROJECT_ROOT


def _snapshot(chain: Chain) -> dict[Pubkey, tuple[int, bytes, Pubkey, bool]]:
    return {k: (a.lamports, bytes(a.data), a.owner, a.executable) for k, a in chain.ledger.accounts.items()}


def test_state_survives_a_clean_restart(tmp_path: Path) -> None:
    async def first() -> tuple[dict[Pubkey, tuple[int, bytes, Pubkey, bool]], int, int]:
        async with localnet(tmp_path) as srv, chain_rpc(srv.rpc_url) as rpc:
            owner = Keypair()
            world = World(rpc, owner)
            await world.airdrop(owner.pubkey(), 50 * 10**9)
            await world.create_run("persisted")
            mint = await world.create_mint(3)
            await world.mint_to(mint, owner.pubkey(), 12_345)
            return _snapshot(srv.chain), len(srv.chain.ledger.transactions), srv.chain.ledger.slot

    before, tx_count, slot = run(first)
    chain = Chain.open(tmp_path)
    try:
        assert _snapshot(chain) == before
        assert len(chain.ledger.transactions) == tx_count
        assert chain.ledger.slot > slot  # a restart opens a new slot
    finally:
        chain.close()
    fresh = Chain.open(tmp_path, reset=True)
    try:
        assert len(fresh.ledger.transactions) == 0
    finally:
        fresh.close()


class _Process:
    """``python -m psyche.localnet`` on free ports, reading its URLs from stdout."""

    def __init__(self, ledger: Path) -> None:
        args = [
            sys.executable,
            "-m",
            "psyche.localnet",
            "--ledger",
            str(ledger),
            "--rpc-port",
            "0",
            "--ws-port",
            "0",
        ]
        self.proc = subprocess.Popen(
            [*args, "--slot-ms", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=PROJECT_ROOT,
        )
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip())
            if line.startswith("localnet ready"):
                break
        text = "\n".join(self.lines)
        match = re.search(r"RPC URL: (http://127\.0\.0\.1:\d+)", text)
        assert match and "localnet ready" in text, text
        self.url = match.group(1)
        self.http = httpx.Client(timeout=10)  # one client: building one costs ~30 ms (TLS context)

    def rpc(self, method: str, params: list[object]) -> object:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        return self.http.post(self.url, json=body).json()["result"]

    def balance(self, key: Pubkey) -> int:
        result = self.rpc("getBalance", [str(key)])
        assert isinstance(result, dict)
        return int(result["value"])

    def stop(self, sig: int) -> int:
        self.http.close()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        assert self.proc.stdout is not None
        self.lines.extend(self.proc.stdout.read().splitlines())
        self.proc.stdout.close()
        return code


def test_sigterm_then_kill_9_mid_stream_leaves_a_loadable_consistent_ledger(tmp_path: Path) -> None:
    node = _Process(tmp_path)
    alice, bob = Keypair(), Keypair().pubkey()
    node.rpc("requestAirdrop", [str(alice.pubkey()), 10**12])
    assert node.stop(signal.SIGTERM) == 0
    assert "localnet stopping" in node.lines

    node = _Process(tmp_path)
    assert node.balance(alice.pubkey()) == 10**12
    sent = []
    amount = 1_000_000
    blockhash = node.rpc("getLatestBlockhash", [])
    assert isinstance(blockhash, dict)
    recent = Hash.from_string(blockhash["value"]["blockhash"])
    # The kill comes from another thread at an arbitrary moment, most likely inside a commit.
    killer = threading.Timer(0.3, os.kill, (node.proc.pid, signal.SIGKILL))
    killer.start()
    for i in range(3_000):
        ix = transfer(TransferParams(from_pubkey=alice.pubkey(), to_pubkey=bob, lamports=amount + i))
        wire = base64.b64encode(bytes(sign([ix], alice, recent))).decode()
        sent.append((str(sign([ix], alice, recent).signatures[0]), amount + i))
        try:
            node.rpc("sendTransaction", [wire, {"encoding": "base64", "skipPreflight": True}])
        except httpx.HTTPError:
            break
    killer.join()
    assert len(sent) < 3_000, "the server was never killed"
    node.proc.wait(timeout=20)
    node.http.close()
    assert node.proc.stdout is not None
    node.proc.stdout.close()

    node = _Process(tmp_path)
    try:
        # getSignatureStatuses takes at most 256 signatures per call, as on Solana.
        values: list[dict[str, object] | None] = []
        for start in range(0, len(sent), 256):
            page = node.rpc("getSignatureStatuses", [[s for s, _ in sent[start : start + 256]]])
            assert isinstance(page, dict)
            values.extend(page["value"])
        landed = [amt for (_, amt), st in zip(sent, values, strict=True) if st and st["err"] is None]
        assert landed, "nothing landed before the kill"
        # Every landed transfer is in bob's balance, and nothing that did not land is.
        assert node.balance(bob) == sum(landed)
        assert node.balance(alice.pubkey()) == 10**12 - sum(landed) - 5_000 * len(landed)
    finally:
        assert node.stop(signal.SIGINT) == 0
