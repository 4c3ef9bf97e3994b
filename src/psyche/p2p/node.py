"""P2PNode: one HTTP/1.1 server and one httpx client per training client.

Server routes (ThreadingHTTPServer, daemon threads; refusals are counted by reason and answered 4xx,
never raised):
    POST /msg              one signed envelope from an allowed identity -> on_message(sender, data)
    POST /hello            the caller's signed AddressRecord, merged into the address book
    GET  /peers            our record and the records of the identities we would dial
    GET  /blob/<sha256>    a blob from the store (404 when absent)
    GET  /model/manifest   the signed model manifest, when one is set (psyche.p2p.model_share)

Discovery: every ``discovery_interval`` seconds (and at start, and when the allowed set changes) the
node POSTs its record to the bootstrap addresses and to ``discovery_fanout`` random peers of its book,
and merges their /peers answers (records spread epidemically); for each identity the record with the
newest issued_at wins. Once ``set_allowed`` was called only allowed identities are dialled or served
in /peers; /msg accepts allowed identities only, so no message is taken before the first
``set_allowed``. Blobs and the manifest are served to anyone who can reach the port (they are
content-addressed and signed; a run's results are not secret).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from socket import AF_INET6
from typing import Any, Final

import httpx

from psyche.errors import ConfigError, FetchFailed, PeerRefused
from psyche.hosts import url_host
from psyche.p2p.blobs import BlobStore, Tag
from psyche.p2p.server import HELLO_MAX, Handler, Server, Stats
from psyche.p2p.settings import P2PSettings, resolve_advertise
from psyche.p2p.wire import (
    MAX_RECORDS,
    AddressRecord,
    Signer,
    Ticket,
    decode_record_list,
    open_record,
    sign,
    sign_record,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]
OnMessage = Callable[[bytes, bytes], None]

DEFAULT_MAX_MESSAGE: Final = 4096  # upstream's gossip limit; a broadcast is ~200 bytes
DEFAULT_MAX_BLOB: Final = 64 * 1024 * 1024
MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024
_PEERS_MAX: Final = 2 + MAX_RECORDS * (2 + HELLO_MAX)


class P2PNode:
    """A peer of the run: serves messages and blobs, sends and fetches them, keeps an address book.

    ``identity`` signs everything we send (anything with ``public`` and ``sign``); ``on_message`` is
    called on a server thread with (sender public key, data) for each valid envelope from an allowed
    identity; raising an exception with a ``reason`` attribute refuses it under that reason.
    """

    def __init__(
        self,
        identity: Signer,
        bind_host: str,
        port: int,
        advertise: str | None,
        bootstrap: Sequence[Address],
        on_message: OnMessage,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_blob: int = DEFAULT_MAX_BLOB,
        rpc_host: str | None = None,
        discovery_interval: float = 2.0,
        discovery_fanout: int = 8,
        send_timeout: float = 2.0,
        workers: int = 16,
    ) -> None:
        self.identity = identity
        self.public = identity.public
        self.bind_host = bind_host
        self.port = port
        self.advertise = advertise
        self.bootstrap = tuple(bootstrap)
        self.on_message = on_message
        self.max_message = max_message
        self.max_blob = max_blob
        self.rpc_host = rpc_host
        self.discovery_interval = discovery_interval
        self.discovery_fanout = discovery_fanout
        self._random = random.Random()
        self.send_timeout = send_timeout
        self.blobs = BlobStore()
        self.counters = Stats()
        self._lock = threading.Lock()
        self._book: dict[bytes, tuple[AddressRecord, bytes]] = {}
        self._allowed: frozenset[bytes] | None = None
        self.manifest: bytes | None = None
        self._record: bytes = b""
        self._address: Address | None = None
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="p2p-send")
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        # trust_env=False: a proxy from the environment must never sit between peers
        self.http = httpx.Client(limits=limits, timeout=send_timeout, trust_env=False)

    @classmethod
    def from_settings(
        cls, identity: Signer, settings: P2PSettings, on_message: OnMessage, **options: Any
    ) -> P2PNode:
        """A node bound and advertised as P2P_* say (``load_p2p_settings``); ``options`` as for __init__."""
        s = settings
        return cls(identity, s.bind, s.port, s.advertise, s.bootstrap, on_message, **options)

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> P2PNode:
        """Bind, serve, work out the advertised address, and start discovery.

        Raises:
            ConfigError: P2P_BIND/P2P_PORT cannot be bound (the hint says what to choose).
        """
        handler = type("Handler", (Handler,), {"node": self})
        server_class = (
            type("Server6", (Server,), {"address_family": AF_INET6}) if ":" in self.bind_host else Server
        )
        try:
            self._server = server_class((self.bind_host, self.port), handler)
        except OSError as exc:  # port taken, address not on this host, no permission
            where = f"{url_host(self.bind_host)}:{self.port}"
            raise ConfigError(
                f"P2P_BIND/P2P_PORT: cannot listen on {where}: {exc.strerror or exc}",
                hint="choose a free port (P2P_PORT) or an address of this host (P2P_BIND)",
            ) from exc
        self._server.on_busy = lambda: self.counters.refuse("busy")
        bound_port = int(self._server.server_address[1])
        towards = [h for h, _ in self.bootstrap] + ([self.rpc_host] if self.rpc_host else [])
        self._address = resolve_advertise(self.advertise, self.bind_host, bound_port, towards)
        record = AddressRecord(self.public, self._address[0], self._address[1], int(time.time() * 1000))
        self._record = sign_record(self.identity, record)
        # a short poll: close() waits for serve_forever to notice the shutdown request
        serve = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="p2p-serve", daemon=True
        )
        discover = threading.Thread(target=self._discovery_loop, name="p2p-discovery", daemon=True)
        self._threads = [serve, discover]
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        """Stop serving and discovery; idempotent."""
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def __enter__(self) -> P2PNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> Address:
        """The (host, port) peers dial (the advertised address)."""
        if self._address is None:
            raise RuntimeError("the node is not started")
        return self._address

    @property
    def bound(self) -> Address:
        """The (host, port) the server listens on."""
        if self._server is None:
            raise RuntimeError("the node is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    # --- who we talk to --------------------------------------------------------------------------

    def set_allowed(self, pubkeys: set[bytes] | frozenset[bytes]) -> None:
        """Accept messages from, and dial, only these identities (the run's epoch clients)."""
        with self._lock:
            self._allowed = frozenset(pubkeys)
        self._wake.set()

    def is_allowed(self, identity: bytes) -> bool:
        """True when ``identity`` is among the allowed identities (none is before the first
        ``set_allowed``)."""
        allowed = self._allowed
        return allowed is not None and identity in allowed

    def _dialable(self, identity: bytes) -> bool:
        allowed = self._allowed
        return identity != self.public and (allowed is None or identity in allowed)

    def peers(self) -> dict[bytes, Address]:
        """Identity -> (host, port) of every peer we would dial."""
        with self._lock:
            return {i: (r.host, r.port) for i, (r, _) in self._book.items() if self._dialable(i)}

    def served_records(self) -> list[bytes]:
        """The address records we pass on: ours first, then the dialable peers', at most MAX_RECORDS."""
        with self._lock:
            mine = [self._record] if self._record else []
            return mine + [raw for i, (_, raw) in self._book.items() if self._dialable(i)][: MAX_RECORDS - 1]

    def merge_record(self, raw: bytes) -> bool:
        """Take a signed record into the book when it is newer; PeerRefused when it is not valid."""
        with self._lock:
            held = self._book.get(bytes(raw[:32]))
        if held is not None and held[1] == raw:
            return False  # the very record we hold: no second signature check (discovery repeats them)
        record = open_record(raw)
        if record.identity == self.public:
            return False
        with self._lock:
            held = self._book.get(record.identity)
            if held is not None and held[0].issued_at >= record.issued_at:
                return False
            if held is None and len(self._book) >= MAX_RECORDS:
                return False
            self._book[record.identity] = (record, raw)
        return True

    # --- discovery -------------------------------------------------------------------------------

    def _discovery_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.discover_once()
            except Exception:  # discovery is best effort; a bug here must not stop the node
                log.exception("p2p: discovery round failed")
            self._wake.wait(self.discovery_interval)
            self._wake.clear()

    def discover_once(self) -> int:
        """One round: hello to and /peers from every known address; the number of new records."""
        own = {self.address, self.bound}
        targets = {a for a in self.bootstrap if a not in own}
        known = sorted(a for a in self.peers().values() if a not in own)
        # A random few each round, not all: records spread epidemically through /peers answers, so
        # the book converges in a few rounds while the traffic stays O(fanout) per node, not O(n).
        targets |= set(self._random.sample(known, min(self.discovery_fanout, len(known))))
        futures = [self._pool.submit(self._exchange, a) for a in targets]
        done, _ = wait(futures, timeout=self.send_timeout * 3)
        return sum(f.result() for f in done if f.exception() is None)

    def _exchange(self, address: Address) -> int:
        base = f"http://{url_host(address[0])}:{address[1]}"
        try:
            self.http.post(base + "/hello", content=self._record)
            resp = self.http.get(base + "/peers")
        except httpx.HTTPError:
            self.counters.add("discovery_failed")
            return 0
        if resp.status_code != 200 or len(resp.content) > _PEERS_MAX:
            return 0
        new = 0
        try:
            records = decode_record_list(resp.content)
        except PeerRefused as exc:
            self.counters.refuse(exc.reason)
            return 0
        for raw in records:
            try:
                new += self.merge_record(raw)
            except PeerRefused as exc:
                self.counters.refuse(exc.reason)
        return new

    # --- sending ---------------------------------------------------------------------------------

    def send_all(self, data: bytes) -> int:
        """Sign ``data`` once and POST it to every allowed known peer; the number that took it.

        Best effort: failures are counted in stats (send_failed), never raised.
        """
        if len(data) > self.max_message:
            raise ValueError(f"message of {len(data)} bytes, more than max_message {self.max_message}")
        envelope = sign(self.identity, data)
        targets = [a for i, a in self.peers().items() if self.is_allowed(i)]
        futures = [self._pool.submit(self._post_msg, a, envelope) for a in targets]
        done, _ = wait(futures, timeout=self.send_timeout * 2)
        sent = sum(1 for f in done if f.exception() is None and f.result())
        self.counters.add("sent", sent)
        self.counters.add("send_failed", len(targets) - sent)
        return sent

    def _post_msg(self, address: Address, envelope: bytes) -> bool:
        try:
            resp = self.http.post(f"http://{url_host(address[0])}:{address[1]}/msg", content=envelope)
        except httpx.HTTPError:
            return False
        if resp.status_code == 204:
            self.counters.add("bytes_out", len(envelope))
        return resp.status_code == 204

    # --- blobs -----------------------------------------------------------------------------------

    def publish(self, data: bytes, tag: Tag) -> Ticket:
        """Store ``data`` under ``tag``; the ticket peers fetch it with."""
        digest = self.blobs.put(data, tag)
        return Ticket(digest, *self.address)

    def fetch(
        self,
        ticket: Ticket,
        sender: bytes,
        fallbacks: Sequence[bytes] = (),
        max_bytes: int | None = None,
        timeout: float = 10.0,
        *,
        keep: Tag | None = None,
    ) -> bytes:
        """The blob of ``ticket``, sha256-checked: from the ticket's address, then the sender's and the
        fallbacks' addresses in the book. FetchFailed (one line, every attempt) when nobody delivers.

        ``keep``: store the verified blob under this tag, so that this node serves it too and peers
        whose download from the announcer fails can fall back to us.
        """
        held = self.blobs.get(ticket.blob)
        if held is not None:
            return held
        cap = self.max_blob if max_bytes is None else max_bytes
        book = self.peers()
        candidates: list[Address] = [(ticket.host, ticket.port)]
        for identity in (sender, *fallbacks):
            address = book.get(identity)
            if address is not None and address not in candidates:
                candidates.append(address)
        failures = []
        for address in candidates:
            try:
                data = self.fetch_from(address, ticket.blob, cap, timeout)
            except (PeerRefused, FetchFailed) as exc:
                failures.append(f"{url_host(address[0])}:{address[1]}: {exc}")
                continue
            if keep is not None:
                self.blobs.put(data, keep)
            return data
        self.counters.add("fetch_failed")
        raise FetchFailed(f"blob {ticket.blob.hex()[:16]}: no peer delivered it ({'; '.join(failures)})")

    def fetch_from(self, address: Address, digest: bytes, max_bytes: int, timeout: float) -> bytes:
        """One attempt: GET /blob/<digest> from ``address``, capped and hash-checked.

        PeerRefused ("too-large" | "hash-mismatch", counted) when the peer sent something wrong,
        FetchFailed when it could not be reached or did not have it.
        """
        data = self._get(address, f"/blob/{digest.hex()}", max_bytes, timeout)
        if hashlib.sha256(data).digest() != digest:
            self.counters.refuse("hash-mismatch")
            raise PeerRefused("hash-mismatch", f"{len(data)} bytes whose sha256 is not the ticket's")
        self.counters.add("blobs_fetched")
        return data

    def fetch_manifest(self, address: Address, timeout: float = 10.0) -> bytes:
        """The signed model manifest ``address`` serves (unverified; see model_share).

        Raises:
            FetchFailed: the peer did not answer with it.
            PeerRefused: ("too-large") the manifest is over MAX_MANIFEST_BYTES.
        """
        return self._get(address, "/model/manifest", MAX_MANIFEST_BYTES, timeout)

    def set_manifest(self, signed: bytes | None) -> None:
        """Serve ``signed`` at GET /model/manifest (None: serve none)."""
        self.manifest = signed

    def _get(self, address: Address, path: str, max_bytes: int, timeout: float) -> bytes:
        url = f"http://{url_host(address[0])}:{address[1]}{path}"
        deadline = time.monotonic() + timeout
        try:
            with self.http.stream("GET", url, timeout=timeout) as resp:
                if resp.status_code != 200:
                    raise FetchFailed(f"HTTP {resp.status_code}")
                length = resp.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > max_bytes:
                    self.counters.refuse("too-large")
                    raise PeerRefused("too-large", f"{length} bytes offered, cap {max_bytes}")
                # iter_raw() without a chunk size hands over httpcore's reads as they come (no re-chunking
                # copy); one join at the end is the only copy of the payload.
                chunks: list[bytes] = []
                got = 0
                for chunk in resp.iter_raw():
                    got += len(chunk)
                    if got > max_bytes:
                        self.counters.refuse("too-large")
                        raise PeerRefused("too-large", f"more than the cap of {max_bytes} bytes")
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise FetchFailed(f"timed out after {timeout:g} s")
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{type(exc).__name__}: {str(exc)[:120]}") from exc
        if length.isdigit() and got != int(length):
            raise FetchFailed(f"{got} bytes arrived of {length} announced")
        self.counters.add("bytes_in", got)
        return b"".join(chunks)

    # --- numbers -------------------------------------------------------------------------------

    def count_refusal(self, reason: str) -> None:
        """Count a refusal made outside the node (model_share, the client's broadcast checks)."""
        self.counters.refuse(reason)

    def stats(self) -> dict[str, Any]:
        """{"refused": {reason: n}, "peers": n, "bytes_in", "bytes_out", "sent", "send_failed", ...}."""
        with self.counters.lock:
            out: dict[str, Any] = dict(self.counters.counts)
            out["refused"] = dict(self.counters.refused)
        out["peers"] = len(self.peers())
        return out
