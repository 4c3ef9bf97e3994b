"""Watch the run's client_version: WebSocket subscriptions on every endpoint, RPC polling as the fallback."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Sequence

from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import peek_client_version, peek_nonce
from psyche.chain.ws import (
    AccountUpdate,
    AccountWatcher,
    SubscriptionDown,
    SubscriptionUp,
    WatcherHandle,
    WatchEvent,
)
from psyche.errors import RunManagerError


class WatchState:
    """Turns per-endpoint subscription events into the watch's own state changes, each reported once.

    Up: some WS endpoint holds a subscription; down: none does (the RPC poll carries the watch). ``feed``
    returns the event to report or None: the ``SubscriptionUp`` that ends a down (or starting) state, the
    ``SubscriptionDown`` of the last subscribed endpoint, or, before any subscription, the one that
    completes a failed try of every endpoint. A dead backup beside a subscribed endpoint reports nothing.
    ``UpdateRejected`` passes through.
    """

    def __init__(self, endpoints: int) -> None:
        self._endpoints = endpoints
        self._subscribed: set[str] = set()
        self._failed: set[str] = set()  # endpoints that ended a session since the watch was last up
        self._up: bool | None = None  # None: starting, nothing reported yet

    def feed(self, event: WatchEvent) -> WatchEvent | None:
        """The event to report for ``event``, or None when the watch's state did not change."""
        if isinstance(event, SubscriptionUp):
            self._subscribed.add(event.url)
            self._failed.clear()
            if self._up is True:
                return None
            self._up = True
            return event
        if isinstance(event, SubscriptionDown):
            self._subscribed.discard(event.url)
            self._failed.add(event.url)
            if self._subscribed or self._up is False:
                return None
            if self._up is None and len(self._failed) < self._endpoints:
                return None  # starting: another endpoint may still subscribe
            self._up = False
            return event
        return event


class VersionWatch:
    """Calls ``on_change(version)`` once per client_version change seen on chain.

    Every WS endpoint is subscribed at once (updates deduplicated by the coordinator's nonce). While no
    subscription is up, and every ``poll_interval`` seconds regardless, ``read_version`` (an RPC read
    with endpoint fallback) is polled, so losing every WebSocket endpoint only slows detection down.
    ``on_event`` gets the watch's state changes only (``WatchState``), not every endpoint's retries.
    """

    def __init__(
        self,
        coordinator: Pubkey,
        initial_version: str,
        read_version: Callable[[], str],
        on_change: Callable[[str], None],
        *,
        ws_urls: Sequence[str],
        on_event: Callable[[WatchEvent], None] | None = None,
        poll_interval: float = 15.0,
        fallback_poll_interval: float = 2.0,
    ) -> None:
        self._coordinator = coordinator
        self._version = initial_version
        self._read_version = read_version
        self._on_change = on_change
        self._ws_urls = [url for url in ws_urls if url]
        self._on_event = on_event
        self._poll_interval = poll_interval
        self._fallback_poll_interval = fallback_poll_interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._handle: WatcherHandle | None = None
        self._poller: threading.Thread | None = None
        self.watcher: AccountWatcher | None = None
        self.poll_errors = 0
        self._keys = itertools.count()
        self._state = WatchState(len(self._ws_urls))

    def _report(self, event: WatchEvent) -> None:
        change = self._state.feed(event)
        if change is not None and self._on_event is not None:
            self._on_event(change)

    def _seen(self, version: str) -> None:
        with self._lock:
            if version == self._version:
                return
            self._version = version
        self._on_change(version)

    def _key(self, data: bytes) -> int:
        # update_client_version does not bump the coordinator's nonce (onchain.md), so deduplicating by
        # nonce would drop exactly the updates this watch exists for: forward every notification (still
        # checking it is a coordinator account); _on_update compares versions instead.
        peek_nonce(data)
        return next(self._keys)

    def _on_update(self, update: AccountUpdate) -> None:
        try:
            version = peek_client_version(update.data)
        except RunManagerError:
            return  # not a coordinator account we can read: ignore this update, polling still runs
        with self._lock:
            if version == self._version:
                return  # the same state again (another endpoint, or a write that left the version alone)
        # Without nonce ordering a late notification from a lagging endpoint could carry an old version:
        # confirm with a read, and trust the notification only when no endpoint answers.
        try:
            version = self._read_version()
        except RunManagerError:
            self.poll_errors += 1
        self._seen(version)

    def _poll(self) -> None:
        while not self._stop.is_set():
            connected = self.watcher is not None and self.watcher.any_connected
            wait = self._poll_interval if connected else self._fallback_poll_interval
            if self._stop.wait(wait):
                return
            try:
                self._seen(self._read_version())
            except RunManagerError:
                self.poll_errors += 1

    def start(self) -> None:
        """Start polling the coordinator account, and watching it over websockets when there are URLs."""
        if self._ws_urls:
            self.watcher = AccountWatcher(
                self._ws_urls, self._coordinator, nonce_of=self._key, on_event=self._report
            )
            self._handle = self.watcher.start_in_thread(self._on_update, name="version-watch")
        self._poller = threading.Thread(target=self._poll, name="version-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop the watcher and the poller (waits up to 5 s for each); errors on the way out are ignored."""
        self._stop.set()
        if self._handle is not None:
            # Shutting down: an error that ended the watcher must not mask the exit path.
            with contextlib.suppress(Exception):
                self._handle.stop(timeout=5.0)
            self._handle = None
        if self._poller is not None:
            self._poller.join(timeout=5.0)
            self._poller = None

    def __enter__(self) -> VersionWatch:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
