"""Localnet test helpers: an in-process server on free loopback ports, signed-transaction shortcuts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from solana.rpc.async_api import AsyncClient
from solana.rpc.models import TxOpts
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from psyche.localnet.chain import Chain
from psyche.localnet.server import LocalnetServer

T = TypeVar("T")


class FakeClock:
    """A wall clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


@contextlib.asynccontextmanager
async def localnet(
    ledger_dir: Path | None = None, *, slot_ms: int = 20, clock: Callable[[], float] | None = None, **kw: Any
) -> AsyncIterator[LocalnetServer]:
    chain = Chain.open(ledger_dir, clock=clock) if clock else Chain.open(ledger_dir)
    server = LocalnetServer(chain, rpc_port=0, ws_port=0, slot_ms=slot_ms, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def raw_rpc(url: str, payload: Any) -> Any:
    async with httpx.AsyncClient() as http:
        response = await http.post(url, json=payload)
        response.raise_for_status()
        return response.json()


async def fund(client: AsyncClient, key: Pubkey, lamports: int = 10**10) -> None:
    sig = (await client.request_airdrop(key, lamports)).value
    await client.confirm_transaction(sig, sleep_seconds=0.01)


def sign(
    ixs: Sequence[Instruction], payer: Keypair, blockhash: Any, extra: Sequence[Keypair] = ()
) -> VersionedTransaction:
    message = Message.new_with_blockhash(list(ixs), payer.pubkey(), blockhash)
    return VersionedTransaction(message, [payer, *extra])


async def send(
    client: AsyncClient,
    ixs: Sequence[Instruction],
    payer: Keypair,
    extra: Sequence[Keypair] = (),
    *,
    skip_preflight: bool = False,
) -> Signature:
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    tx = sign(ixs, payer, blockhash, extra)
    opts = TxOpts(skip_preflight=skip_preflight, skip_confirmation=True)
    return (await client.send_transaction(tx, opts=opts)).value
