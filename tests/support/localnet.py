"""Localnet test helpers: an in-process server on free loopback ports, signed-transaction shortcuts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
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

from psyche.chain.rpc import RpcClient
from psyche.localnet.chain import Chain
from psyche.localnet.demo import DemoWorld, seed_demo
from psyche.localnet.server import LocalnetServer

T = TypeVar("T")


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


@contextlib.asynccontextmanager
async def chain_rpc(url: str) -> AsyncIterator[RpcClient]:
    """The project's own RPC client on ``url`` (what World sends through), closed afterwards."""
    with RpcClient([url]) as rpc:
        yield rpc


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


@dataclass(frozen=True)
class DemoLocalnet:
    """An in-process local chain seeded with the demo world, served from a background thread."""

    rpc_url: str
    ws_url: str
    demo_dir: Path  # .env (RPC, WS_RPC, RUN_ID=demo-open, the participant's wallet) and the key files
    demo: DemoWorld
    chain: Chain
    loop: asyncio.AbstractEventLoop

    def on_chain_thread(self, action: Callable[[], T]) -> T:
        """Run ``action`` on the server's event loop, the one thread that touches the ledger."""

        async def run() -> T:
            return action()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)


@contextlib.contextmanager
def demo_localnet(demo_dir: Path, *, slot_ms: int = 50) -> Iterator[DemoLocalnet]:
    """`run-manager localnet --demo` in a thread of this process (so a test may also edit the ledger)."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        chain = Chain.open(None)
        server = LocalnetServer(chain, rpc_port=0, ws_port=0, slot_ms=slot_ms)
        await server.start()
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            demo = await seed_demo(server.rpc_url, server.ws_url, demo_dir, echo=lambda _line: None)
            loop = asyncio.get_running_loop()
            box["net"] = DemoLocalnet(server.rpc_url, server.ws_url, demo_dir, demo, chain, loop)
            ready.set()
            await stop.wait()
        finally:
            await server.stop()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the caller below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=thread_main, name="localnet", daemon=True)
    thread.start()
    assert ready.wait(60), "the local chain did not start within 60 s"
    if "error" in box:
        raise AssertionError(f"local chain failed: {box['error']!r}")
    net = box["net"]
    assert isinstance(net, DemoLocalnet)
    try:
        yield net
    finally:
        stop = box["stop"]
        assert isinstance(stop, asyncio.Event)
        net.loop.call_soon_threadsafe(stop.set)
        thread.join(10)
