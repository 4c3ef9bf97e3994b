"""The HTTP side of a P2PNode: one handler class routing requests to the node, and a threaded server.

Every refusal is counted by reason in the node's Stats and answered 4xx; no exception from a request
reaches the server loop (a bug is logged, counted as "internal-error" and closes that connection).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final

from psyche.errors import PeerRefused
from psyche.p2p.wire import (
    ENVELOPE_OVERHEAD,
    HASH_BYTES,
    MAX_RECORD_BYTES,
    encode_record_list,
    open_envelope,
)

if TYPE_CHECKING:
    from psyche.p2p.node import P2PNode

log = logging.getLogger("psyche.p2p.node")

_WRITE_CHUNK: Final = 4 * 1024 * 1024  # memoryview slices: no copy, few syscalls
HELLO_MAX: Final = MAX_RECORD_BYTES + ENVELOPE_OVERHEAD


class Stats:
    """Counters shared by server threads and callers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refused: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def refuse(self, reason: str) -> None:
        """Count a refused request under ``reason``."""
        with self.lock:
            self.refused[reason] += 1

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self.lock:
            self.counts[name] += n


class Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_active`` at once (more are closed unanswered, counted)."""

    daemon_threads = True
    request_queue_size = 128
    max_active = 512
    on_busy: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._active = threading.BoundedSemaphore(self.max_active)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on its own thread, or close it unanswered (and call ``on_busy``) when
        ``max_active`` are open."""
        if not self._active.acquire(blocking=False):  # a peer opening connections without end
            self.on_busy()
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._active.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An error outside the handler's routes (reading the request line): a peer that hung up or reset is
        a debug line, anything else one logged traceback; never socketserver's print to stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("p2p %s: connection lost: %s", client_address[0], error)
        else:
            log.exception("p2p: connection from %s failed", client_address[0])


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the node; never lets an exception out (a peer's garbage is a 4xx)."""

    node: P2PNode  # set on the per-node subclass
    protocol_version = "HTTP/1.1"  # keep-alive: httpx reuses one connection per peer
    timeout = 30  # a peer that stops mid-request frees its thread
    server_version = "psyche-p2p"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines go to the debug log, not stderr."""
        log.debug("p2p %s: " + format, self.client_address[0], *args)

    def do_POST(self) -> None:
        """Routes ``/msg`` and ``/hello``; anything else is 404."""
        self._guarded({"/msg": self._msg, "/hello": self._hello}.get(self.path))

    def do_GET(self) -> None:
        """Routes ``/blob/<hash>``, ``/peers`` and ``/model/manifest``; anything else is 404."""
        if self.path.startswith("/blob/"):
            self._guarded(self._blob)
        else:
            self._guarded({"/peers": self._peers, "/model/manifest": self._manifest}.get(self.path))

    def _guarded(self, route: Callable[[], None] | None) -> None:
        try:
            if route is None:
                self._reply(404, b"no such route")
            else:
                route()
        except (ConnectionError, TimeoutError) as exc:  # the peer hung up, reset or stalled: not our bug
            log.debug("p2p %s: connection lost during %s: %s", self.client_address[0], self.command, exc)
            self.close_connection = True
        except Exception:  # a bug of ours must not take the node down; counted and logged
            log.exception("p2p: request %s %s failed", self.command, self.path[:80])
            self.node.counters.refuse("internal-error")
            self.close_connection = True

    def _reply(self, code: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self._write(body)

    def _write(self, body: bytes) -> None:
        view = memoryview(body)
        for start in range(0, len(view), _WRITE_CHUNK):
            self.wfile.write(view[start : start + _WRITE_CHUNK])

    def _refuse(self, code: int, reason: str, close: bool = False) -> None:
        self.node.counters.refuse(reason)
        self.close_connection = self.close_connection or close
        self._reply(code, reason.encode())

    def _body(self, limit: int) -> bytes | None:
        """The request body, at most ``limit`` bytes; None (answered and counted) when refused."""
        text = self.headers.get("Content-Length")
        if text is None or not text.strip().isdigit():
            self._refuse(411, "malformed", close=True)
            return None
        size = int(text)
        if size > limit:
            self._refuse(413, "too-large", close=True)  # unread body: the connection cannot be reused
            return None
        body = self.rfile.read(size)
        if len(body) != size:
            self._refuse(400, "malformed", close=True)
            return None
        return body

    def _msg(self) -> None:
        node = self.node
        raw = self._body(node.max_message + ENVELOPE_OVERHEAD)
        if raw is None:
            return
        try:
            sender, data = open_envelope(raw, node.max_message)
        except PeerRefused as exc:
            self._refuse(400, exc.reason)
            return
        node.counters.add("bytes_in", len(raw))
        if not node.is_allowed(sender):
            self._refuse(403, "not-allowed")
            return
        try:
            node.on_message(sender, data)
        except Exception as exc:  # the handler refused it (or failed): a 422 to the sender, never a crash
            reason = getattr(exc, "reason", None)
            if not isinstance(reason, str):
                log.exception("p2p: on_message failed")
                reason = "handler-error"
            self._refuse(422, reason)
            return
        node.counters.add("messages_received")
        self._reply(204)

    def _hello(self) -> None:
        raw = self._body(HELLO_MAX)
        if raw is None:
            return
        try:
            self.node.merge_record(raw)
        except PeerRefused as exc:
            self._refuse(400, exc.reason)
            return
        self._reply(204)

    def _peers(self) -> None:
        self._reply(200, encode_record_list(self.node.served_records()), "application/octet-stream")

    def _manifest(self) -> None:
        manifest = self.node.manifest
        if manifest is None:
            self._reply(404, b"no model served")
        else:
            self._reply(200, manifest, "application/octet-stream")

    def _blob(self) -> None:
        text = self.path[len("/blob/") :]
        try:
            digest = bytes.fromhex(text)
        except ValueError:
            digest = b""
        if len(digest) != HASH_BYTES:
            self._refuse(400, "malformed")
            return
        blob = self.node.blobs.get(digest)
        if blob is None:
            self._reply(404, b"no such blob")
            return
        self._reply(200, blob, "application/octet-stream")
        self.node.counters.add("blobs_served")
        self.node.counters.add("bytes_out", len(blob))
