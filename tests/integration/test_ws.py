"""AccountWatcher against real loopback websockets servers: dedupe across endpoints, kill/restart, backoff."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from solders.pubkey import Pubkey
from websockets.asyncio.server import Server, ServerConnection, serve

from psyche.chain.ws import (
    AccountUpdate,
    AccountWatcher,
    SubscriptionDown,
    SubscriptionUp,
    UpdateRejected,
    WatchEvent,
)
from psyche.errors import AccountDecodeError, ConfigError
from tests.support.wait import wait_until_async

KEY = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
SUBSCRIPTION = 77


def nonce_of(data: bytes) -> int:
    if len(data) < 8:
        raise AccountDecodeError(f"coordinator: expected >= 8 bytes, got {len(data)}")
    return int.from_bytes(data[:8], "little")


class PubsubServer:
    """A minimal Solana pubsub server: answers accountSubscribe, then pushes what the test asks."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.clients: set[ServerConnection] = set()
        self.requests: list[Any] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> PubsubServer:
        self._server = await serve(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        request = json.loads(await ws.recv())
        self.requests.append(request)
        await ws.send(json.dumps({"jsonrpc": "2.0", "result": SUBSCRIPTION, "id": request["id"]}))
        self.clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self.clients.discard(ws)

    async def push_raw(self, value: Any, subscription: int = SUBSCRIPTION) -> None:
        note = {
            "jsonrpc": "2.0",
            "method": "accountNotification",
            "params": {"result": {"context": {"slot": 5}, "value": value}, "subscription": subscription},
        }
        for ws in list(self.clients):
            await ws.send(json.dumps(note))

    async def push(self, nonce: int) -> None:
        data = nonce.to_bytes(8, "little") + b"coordinator"
        await self.push_raw(
            {
                "data": [base64.b64encode(data).decode(), "base64"],
                "owner": str(KEY),
                "lamports": 1,
                "executable": False,
            }
        )


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(15):
            await scenario()

    asyncio.run(bounded())


class Watch:
    """A running watcher with its updates and events, cancelled on exit."""

    def __init__(self, urls: list[str], **kw: Any) -> None:
        self.events: list[WatchEvent] = []
        self.got: list[AccountUpdate] = []
        kw.setdefault("backoff_base", 0.02)
        kw.setdefault("backoff_cap", 0.1)
        kw.setdefault("open_timeout", 2.0)
        self.watcher = AccountWatcher(urls, KEY, nonce_of=nonce_of, on_event=self.events.append, **kw)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self.watcher.run(self.got.append))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def ups(self, url: str) -> int:
        return sum(1 for e in self.events if isinstance(e, SubscriptionUp) and e.url == url)

    def downs(self, url: str) -> list[SubscriptionDown]:
        return [e for e in self.events if isinstance(e, SubscriptionDown) and e.url == url]

    def nonces(self) -> list[int]:
        return [u.nonce for u in self.got]


def test_two_endpoints_each_nonce_once_and_in_order() -> None:
    async def scenario() -> None:
        a, b = await PubsubServer().start(), await PubsubServer().start()
        try:
            async with Watch([a.url, b.url]) as w:
                await wait_until_async(lambda: len(w.watcher.connected) == 2)
                assert w.watcher.connected == [a.url, b.url]
                assert a.requests[0]["method"] == "accountSubscribe"
                assert a.requests[0]["params"] == [
                    str(KEY),
                    {"encoding": "base64", "commitment": "confirmed"},
                ]
                for n in (1, 2, 3):
                    await a.push(n)
                    await b.push(n)
                await wait_until_async(lambda: w.nonces()[-1:] == [3])
                await b.push(5)
                await wait_until_async(lambda: w.nonces()[-1:] == [5])
                await a.push(4)  # older than what b already delivered: dropped
                await a.push(5)
                await a.push(6)
                await b.push(6)
                await wait_until_async(lambda: w.nonces()[-1:] == [6])
                # Both 6s are read before what each endpoint sends after them: an unreadable notification,
                # which each reports once. When both reports are in, the second 6 has been seen and dropped.
                await a.push_raw(None)
                await b.push_raw(None)
                await wait_until_async(
                    lambda: {e.url for e in w.events if isinstance(e, UpdateRejected)} == {a.url, b.url},
                    what="both endpoints' notifications after their 6",
                )
                assert w.nonces() == [1, 2, 3, 5, 6]
                assert w.got[-1].data == (6).to_bytes(8, "little") + b"coordinator"
                assert w.got[-1].slot == 5
                assert w.watcher.last_nonce == 6
                assert {u.url for u in w.got} <= {a.url, b.url}
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


def test_unreadable_notifications_are_reported_not_delivered() -> None:
    async def scenario() -> None:
        a = await PubsubServer().start()
        try:
            async with Watch([a.url]) as w:
                await wait_until_async(lambda: w.watcher.any_connected)
                await a.push_raw(None)  # account closed
                await a.push_raw({"data": [base64.b64encode(b"\x01").decode(), "base64"]})  # too short
                await a.push_raw({"data": ["%%%", "base64"]})
                await a.push_raw(
                    {"data": ["AA==", "base64"]}, subscription=SUBSCRIPTION + 1
                )  # not ours: ignored
                await a.push(9)
                await wait_until_async(lambda: w.nonces() == [9])
                rejected = [e.reason for e in w.events if isinstance(e, UpdateRejected)]
                assert rejected[0] == "ValueError: the account no longer exists"
                assert rejected[1] == "AccountDecodeError: coordinator: expected >= 8 bytes, got 1"
                assert rejected[2].startswith("Error")  # binascii.Error
                assert len(rejected) == 3
        finally:
            await a.stop()

    run(scenario)


def refused(reason: str) -> bool:
    """A SubscriptionDown's reason says the connect was refused."""
    return "Errno" in reason or "refused" in reason.lower()


def test_kill_and_restart_an_endpoint_resubscribes() -> None:
    async def scenario() -> None:
        a, b = await PubsubServer().start(), await PubsubServer().start()
        port, url_a = a.port, a.url
        restarted: PubsubServer | None = None
        try:
            async with Watch([a.url, b.url]) as w:
                await wait_until_async(lambda: len(w.watcher.connected) == 2)
                await a.stop()
                await wait_until_async(lambda: len(w.downs(url_a)) >= 1)
                assert w.downs(url_a)[0].reason == "websocket closed (code 1001)"
                assert w.watcher.connected == [b.url] and w.watcher.any_connected
                await b.push(1)
                await wait_until_async(lambda: w.nonces() == [1])
                await wait_until_async(
                    lambda: any(
                        "Errno" in d.reason or "refused" in d.reason.lower() for d in w.downs(url_a)[1:]
                    ),
                    what="a refused reconnect to the stopped endpoint",
                )
                restarted = await PubsubServer(port).start()
                await wait_until_async(lambda: w.ups(url_a) == 2)
                assert len(w.watcher.connected) == 2
                await restarted.push(2)
                await wait_until_async(lambda: w.nonces() == [1, 2])
                assert w.got[-1].url == url_a
        finally:
            await a.stop()
            await b.stop()
            if restarted is not None:
                await restarted.stop()

    run(scenario)


def test_all_down_means_not_connected() -> None:
    async def scenario() -> None:
        a, b = await PubsubServer().start(), await PubsubServer().start()
        try:
            async with Watch([a.url, b.url]) as w:
                await wait_until_async(lambda: len(w.watcher.connected) == 2)
                await a.stop()
                await b.stop()
                await wait_until_async(lambda: not w.watcher.any_connected)
                await wait_until_async(lambda: bool(w.downs(a.url)) and bool(w.downs(b.url)))
                assert w.watcher.connected == []
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


def test_backoff_grows_to_the_cap_and_resets_after_a_subscription() -> None:
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0.005)

    async def scenario() -> None:
        a = await PubsubServer().start()
        port = a.port
        again: PubsubServer | None = None
        try:
            async with Watch([a.url], sleep=fake_sleep, backoff_base=1.0, backoff_cap=2.5) as w:
                await wait_until_async(lambda: w.ups(a.url) == 1)
                await a.stop()
                await wait_until_async(lambda: len(delays) >= 4)
                again = await PubsubServer(port).start()
                await wait_until_async(lambda: w.ups(a.url) == 2)
                seen = len(delays)
                await again.stop()
                await wait_until_async(lambda: len(delays) > seen)
                # dropped after a good subscription: base; then refused: 2*base, capped at 2.5 ...
                assert delays[:4] == [1.0, 2.0, 2.5, 2.5]
                assert delays[seen] == 1.0
                assert [d.retry_in for d in w.downs(a.url)][:4] == [1.0, 2.0, 2.5, 2.5]
        finally:
            await a.stop()
            if again is not None:
                await again.stop()

    run(scenario)


def test_thread_wrapper_delivers_on_its_own_thread_and_stops() -> None:
    got: list[tuple[int, str]] = []

    def callback(update: AccountUpdate) -> None:
        got.append((update.nonce, threading.current_thread().name))

    async def scenario() -> None:
        a = await PubsubServer().start()
        watcher = AccountWatcher([a.url], KEY, nonce_of=nonce_of, backoff_base=0.02, open_timeout=2.0)
        handle = watcher.start_in_thread(callback, name="watcher-test")
        try:
            await wait_until_async(lambda: watcher.any_connected)
            await a.push(3)
            await wait_until_async(lambda: got == [(3, "watcher-test")])
            assert handle.running
        finally:
            await asyncio.to_thread(handle.stop)
            await a.stop()
        assert not handle.running

    run(scenario)


def test_thread_wrapper_reraises_a_callback_error_from_stop() -> None:
    def callback(update: AccountUpdate) -> None:
        raise RuntimeError(f"bug at nonce {update.nonce}")

    async def scenario() -> None:
        a = await PubsubServer().start()
        watcher = AccountWatcher([a.url], KEY, nonce_of=nonce_of, backoff_base=0.02, open_timeout=2.0)
        handle = watcher.start_in_thread(callback)
        try:
            await wait_until_async(lambda: watcher.any_connected)
            await a.push(4)
            await wait_until_async(lambda: not handle.running)
        finally:
            await a.stop()
        with pytest.raises(RuntimeError, match="bug at nonce 4"):
            handle.stop()

    run(scenario)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="no WebSocket endpoint"):
        AccountWatcher([], KEY, nonce_of=nonce_of)
    with pytest.raises(ConfigError, match="'base64\\+zstd' is not supported"):
        AccountWatcher(["ws://127.0.0.1:1/"], KEY, nonce_of=nonce_of, encoding="base64+zstd")
