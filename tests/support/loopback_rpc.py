"""Real misbehaving and healthy JSON-RPC HTTP servers on 127.0.0.1 for fallback tests and the bench."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCOUNT_DATA = b"psyche-coordinator-bytes" * 4
ACCOUNT_OWNER = "BPFLoaderUpgradeab1e11111111111111111111111"
GARBAGE = b"\x00\xffthis is not http\r\n\r\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so sticky calls reuse the connection like a real client
    disable_nagle_algorithm = True  # headers and body go in two writes; Nagle would add 40 ms per answer
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        owner = self.server.owner
        with owner.lock:
            owner.requests += 1
        mode = owner.mode
        if mode in ("429", "500", "503"):
            self._send(int(mode), b'{"error":"busy"}', "application/json")
        elif mode == "garbage-200":
            self._send(200, b"<html>gateway timeout</html>", "text/html")
        else:
            self._send(200, json.dumps(owner.answer(json.loads(body))).encode(), "application/json")

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive handler threads must not block shutdown
    owner: JsonRpcServer


class JsonRpcServer:
    """A threaded HTTP server: ``mode`` is healthy, jsonrpc-error, node-behind, 429, 500, 503 or garbage-200.

    Healthy answers getAccountInfo (ACCOUNT_DATA), getSlot and getHealth; ``requests`` counts POSTs.
    """

    def __init__(self, mode: str = "healthy", slot: int = 1234) -> None:
        self.mode = mode
        self.slot = slot
        self.requests = 0
        self.lock = threading.Lock()
        self._server = _HttpServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def answer(self, request: Any) -> Any:
        if isinstance(request, list):
            return [self.answer(item) for item in request]
        rid, method = request.get("id"), request.get("method")
        if self.mode == "jsonrpc-error":
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "Invalid params"}}
        if self.mode == "node-behind":  # what a lagging Solana node answers to every request
            behind = {"code": -32005, "message": "Node is behind by 42 slots", "data": {"numSlotsBehind": 42}}
            return {"jsonrpc": "2.0", "id": rid, "error": behind}
        results: dict[str, Any] = {
            "getSlot": self.slot,
            "getHealth": "ok",
            "getAccountInfo": {
                "context": {"slot": self.slot},
                "value": {
                    "data": [base64.b64encode(ACCOUNT_DATA).decode(), "base64"],
                    "owner": ACCOUNT_OWNER,
                    "lamports": 1_000,
                    "executable": False,
                    "rentEpoch": 0,
                    "space": len(ACCOUNT_DATA),
                },
            },
        }
        if method not in results:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}}
        return {"jsonrpc": "2.0", "id": rid, "result": results[method]}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class RawSocketServer:
    """A TCP server that either never answers (``hang``) or answers non-HTTP bytes (``garbage``).

    ``connections`` counts accepted connections.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.mode == "garbage":
                with contextlib.suppress(OSError):
                    conn.settimeout(1)
                    conn.recv(65536)
                    conn.sendall(GARBAGE)
                conn.close()
            else:
                self._held.append(conn)  # accepted, read never, answered never

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for conn in self._held:
            conn.close()


@contextlib.contextmanager
def servers(*modes: str) -> Iterator[list[JsonRpcServer | RawSocketServer]]:
    """Start one server per mode (``hang``/``garbage``: raw sockets, others HTTP); close them all after."""
    started: list[JsonRpcServer | RawSocketServer] = []
    try:
        for mode in modes:
            started.append(RawSocketServer(mode) if mode in ("hang", "garbage") else JsonRpcServer(mode))
        yield started
    finally:
        for server in started:
            server.close()
