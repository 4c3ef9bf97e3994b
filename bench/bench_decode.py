"""Time CoordinatorAccount.decode/encode and the peeks on the real dump and on a project-made full account.

Run: .venv/bin/python bench/bench_decode.py [N]   (plain script, not a test; target < 1000 µs per decode)
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import (
    Bloom,
    ClientsState,
    CoordinatorAccount,
    EpochClient,
    EpochState,
    LedgerClient,
    Round,
    Witness,
    WitnessProof,
    peek_client_version,
    peek_nonce,
    peek_run_state,
)

REAL_DUMP = Path(__file__).resolve().parent.parent / "tests/fixtures/psyche/coordinator-account-v1.bin"
TARGET_US = 1000.0


def full_account() -> bytes:
    """Every array at capacity, the worst case for decode: 4×32 witnesses, 2×256 epoch clients, 256 ledger."""
    keys = [Pubkey.from_bytes(bytes([k % 256]) * 32) for k in range(256)]
    wit = Witness(WitnessProof(1, 2, True), Bloom(tuple(range(8)), tuple(range(16))), Bloom(), b"\x01" * 32)
    rnd = Round((wit,) * 32, 1, 2, 3, 256, 0)
    clients = tuple(EpochClient(k, k) for k in keys)
    epoch = EpochState((rnd,) * 4, clients, clients)
    ledger = ClientsState(tuple(LedgerClient(k, k, 1, 0, 1) for k in keys), 1)
    account = dataclasses.replace(
        CoordinatorAccount.initial("bench", "v1"), epoch_state=epoch, clients_state=ledger
    )
    return account.encode()


def per_op_us(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def report(label: str, data: bytes, n: int) -> None:
    account = CoordinatorAccount.decode(data)
    decode = per_op_us(lambda: CoordinatorAccount.decode(data), n)
    print(f"decode coordinator account ({label}): {decode:.1f} µs/op (target < {TARGET_US:.0f} µs)")
    print(f"encode coordinator account ({label}): {per_op_us(account.encode, max(n // 10, 1)):.1f} µs/op")
    for name, peek in (("peek_nonce", peek_nonce), ("peek_run_state", peek_run_state)):
        print(f"{name} ({label}): {per_op_us(functools.partial(peek, data), n * 10):.2f} µs/op")
    print(f"peek_client_version ({label}): {per_op_us(lambda: peek_client_version(data), n * 10):.2f} µs/op")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    report("real v1 dump", REAL_DUMP.read_bytes(), n)
    report("fresh initial", CoordinatorAccount.initial("bench", "v1").encode(), n)
    report("full arrays", full_account(), max(n // 10, 10))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
