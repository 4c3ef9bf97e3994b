"""One account watched over every WebSocket endpoint at once, deduplicated by a monotonic key."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from psyche.backoff import Backoff
from psyche.chain.endpoints import redacted_labels, scrub
from psyche.errors import ConfigError, RunManagerError

__all__ = [
    "AccountUpdate",
    "AccountWatcher",
    "SubscriptionDown",
    "SubscriptionUp",
    "UpdateRejected",
    "WatchEvent",
    "WatcherHandle",
]

# base64+zstd (what the Rust client asks for) needs a zstd decoder; Python 3.11 has none in the standard
# library and we add no dependency for it, so notifications come as plain base64.
SUPPORTED_ENCODINGS = ("base64",)


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """A new state of the watched account: key (the coordinator nonce), bytes, slot, source endpoint."""

    nonce: int
    data: bytes
    slot: int
    url: str


@dataclass(frozen=True, slots=True)
class SubscriptionUp:
    """The subscription on ``url`` (redacted) is confirmed by the node."""

    url: str


@dataclass(frozen=True, slots=True)
class SubscriptionDown:
    """The endpoint could not subscribe or dropped; the next try comes after ``retry_in`` seconds."""

    url: str
    reason: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class UpdateRejected:
    """A notification could not be read (bad data, account gone, key function refused it)."""

    url: str
    reason: str


WatchEvent = SubscriptionUp | SubscriptionDown | UpdateRejected


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class AccountWatcher:
    """Subscribe to one account on every WS endpoint and forward each update whose key is new.

    ``nonce_of(data)`` extracts a monotonic key (the coordinator nonce); an update is forwarded only when
    its key is greater than every key forwarded before, whichever endpoint it came from. Each endpoint
    reconnects forever, sleeping ``min(backoff_cap, backoff_base * retries)`` before a retry; ``retries``
    resets once a subscription is confirmed.
    """

    def __init__(
        self,
        ws_urls: Sequence[str],
        account: Pubkey,
        *,
        nonce_of: Callable[[bytes], int],
        on_event: Callable[[WatchEvent], None] | None = None,
        encoding: str = "base64",
        commitment: str = "confirmed",
        backoff_base: float = 2.0,
        backoff_cap: float = 30.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        max_message_bytes: int = 64 * 2**20,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        after_nonce: int = -1,
    ) -> None:
        if not ws_urls:
            raise ConfigError("no WebSocket endpoint configured", hint="set WS_RPC in your .env")
        if encoding not in SUPPORTED_ENCODINGS:
            raise ConfigError(
                f"account subscription encoding {encoding!r} is not supported; use 'base64'",
                hint="base64+zstd would need a zstd decoder, which Python 3.11 does not ship",
            )
        self._urls = list(ws_urls)
        self._labels = redacted_labels(self._urls)
        self._account = account
        self._nonce_of = nonce_of
        self._on_event = on_event
        self._subscribe_params = [str(account), {"encoding": encoding, "commitment": commitment}]
        self._backoff = Backoff(backoff_base, backoff_cap, growth="linear")
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._max_message_bytes = max_message_bytes
        self._sleep = sleep
        self._last_nonce = after_nonce
        self._connected: set[int] = set()
        self._ids = itertools.count(1)

    @property
    def any_connected(self) -> bool:
        """True while at least one endpoint holds a confirmed subscription (else: poll over HTTP)."""
        return bool(self._connected)

    @property
    def connected(self) -> list[str]:
        """The (redacted) endpoints holding a confirmed subscription right now."""
        return [self._labels[i] for i in sorted(self._connected)]

    @property
    def last_nonce(self) -> int:
        """The greatest key forwarded so far (``after_nonce`` until the first update)."""
        return self._last_nonce

    def _emit(self, event: WatchEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def run(self, on_update: Callable[[AccountUpdate], None]) -> None:
        """Watch until cancelled, calling ``on_update`` (in this event loop) for each new update."""
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(len(self._urls)):
                    group.create_task(self._endpoint_loop(index, on_update))
        except ExceptionGroup as group_error:
            # Only an exception from on_update ends an endpoint loop: hand back that one, not a group.
            raise group_error.exceptions[0] from None

    async def _endpoint_loop(self, index: int, on_update: Callable[[AccountUpdate], None]) -> None:
        # The first try is immediate; a retry waits min(cap, base * n), n = endings since the last
        # confirmed subscription (so a subscription that drops is retried after `base`).
        retries = 0
        try:
            while True:
                try:
                    reason = await self._session(index, on_update)
                except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
                    # Refused, reset, bad handshake, open/subscribe timeout, or a non-JSON subscribe answer.
                    # websockets quotes a bad URI whole (InvalidURI): keep its key out of the event.
                    reason = scrub(_describe(exc), [self._urls[index]])
                if index in self._connected:
                    self._connected.discard(index)
                    retries = 0
                retries += 1
                delay = self._backoff.delay(retries)
                self._emit(SubscriptionDown(self._labels[index], reason, delay))
                await self._sleep(delay)
        finally:
            self._connected.discard(index)

    async def _session(self, index: int, on_update: Callable[[AccountUpdate], None]) -> str:
        """One connection: subscribe, then forward notifications until it closes; return why it ended."""
        label = self._labels[index]
        async with connect(
            self._urls[index],
            open_timeout=self._open_timeout,
            ping_interval=self._ping_interval,
            max_size=self._max_message_bytes,
        ) as ws:
            subscription = await self._subscribe(ws)
            if isinstance(subscription, str):
                return subscription
            self._connected.add(index)
            self._emit(SubscriptionUp(label))
            async for message in ws:
                self._handle(message, subscription, label, on_update)
            code = ws.close_code
            return f"websocket closed (code {code})" if code is not None else "websocket closed"

    async def _subscribe(self, ws: ClientConnection) -> int | str:
        """Send accountSubscribe and wait for its answer: the subscription id, or the error as text."""
        request_id = next(self._ids)
        request = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "accountSubscribe",
            "params": self._subscribe_params,
        }
        await ws.send(json.dumps(request))
        async with asyncio.timeout(self._open_timeout):
            while True:
                answer = json.loads(await ws.recv())
                if not isinstance(answer, dict) or answer.get("id") != request_id:
                    continue
                if isinstance(answer.get("result"), int):
                    return int(answer["result"])
                return f"accountSubscribe refused: {answer.get('error')!r}"

    def _handle(
        self, message: str | bytes, subscription: int, label: str, on_update: Callable[[AccountUpdate], None]
    ) -> None:
        try:
            update = self._decode(message, subscription, label)
        except (KeyError, TypeError, ValueError, IndexError, RunManagerError) as exc:
            # binascii.Error is a ValueError; RunManagerError covers AccountDecodeError from nonce_of.
            self._emit(UpdateRejected(label, _describe(exc)))
            return
        if update is None or update.nonce <= self._last_nonce:
            return  # not ours, or already delivered through another endpoint
        self._last_nonce = update.nonce
        on_update(update)

    def _decode(self, message: str | bytes, subscription: int, label: str) -> AccountUpdate | None:
        note: Any = json.loads(message)
        if not isinstance(note, dict) or note.get("method") != "accountNotification":
            return None
        params = note["params"]
        if params.get("subscription") != subscription:
            return None
        result = params["result"]
        value = result["value"]
        if value is None:
            raise ValueError("the account no longer exists")
        encoded, encoding = value["data"]
        if encoding != "base64":
            raise ValueError(f"unexpected data encoding {encoding!r}")
        data = base64.b64decode(encoded, validate=True)
        return AccountUpdate(self._nonce_of(data), data, int(result["context"]["slot"]), label)

    def start_in_thread(
        self, callback: Callable[[AccountUpdate], None], *, name: str = "account-watcher"
    ) -> WatcherHandle:
        """Run the watcher on its own thread and event loop; ``callback`` is called on that thread."""
        handle = WatcherHandle(self, callback, name)
        handle.started.wait()
        return handle


class WatcherHandle:
    """A watcher running on a background thread; ``stop()`` ends it and re-raises what made it fail."""

    def __init__(self, watcher: AccountWatcher, callback: Callable[[AccountUpdate], None], name: str) -> None:
        self.watcher = watcher
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._callback = callback
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._runner())
        except BaseException as exc:  # a bug in the callback, say: surface it from stop()
            self.error = exc
        finally:
            self.started.set()

    async def _runner(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.watcher.run(self._callback)

    @property
    def running(self) -> bool:
        """Whether the watcher thread is still alive."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the watcher, wait for its thread, and re-raise any error that ended it early."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
