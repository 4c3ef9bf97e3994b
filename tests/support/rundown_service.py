"""A loopback run-down service: checks signatures and nonces, signs URLs on itself, stores and serves files.

It plays both parts of the real thing: the API (``POST /v1/upload/{run}``, ``POST /v1/download/{run}``, the
signature checked against the keys its "indexer" knows for the run) and the storage behind the signed URLs
(``PUT``/``GET /blob/{token}?X-Goog-Signature=...``, with Range support). The message is rebuilt here from
the request, independently of psyche.manager.rundown, so a drift in either shows up as a 401.
Switches make it misbehave on purpose: a status for every API call or PUT, expired URLs, and GETs that
drop the connection after some bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from solders.pubkey import Pubkey
from solders.signature import Signature

MAX_EXPIRES = 7 * 24 * 3600
URL_SECRET_PARAM = "X-Goog-Signature"


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the service saw it."""

    method: str
    path: str
    range: str | None = None
    status: int = 0


@dataclass(slots=True)
class _Token:
    method: str
    run_id: str
    name: str
    expires_at: float


@dataclass
class RunDownService:
    """State and switches of one loopback service; ``url`` is its API base (``http://127.0.0.1:PORT/v1``)."""

    root: Path
    keys: dict[str, set[Pubkey]] = field(default_factory=dict)
    api_status: int | None = None
    put_status: int | None = None
    expired_urls: bool = False
    drop_after: int = 0
    drops_left: int = 0  # GETs that still drop after drop_after bytes; -1: every one
    seen: list[Seen] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    accepted_signatures: int = 0
    port: int = 0
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def add_run(self, run_id: str, *keys: Pubkey) -> Path:
        self.keys[run_id] = set(keys)
        directory = self.run_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def stored(self, run_id: str) -> dict[str, bytes]:
        directory = self.run_dir(run_id)
        return {
            p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()
        }

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    # -- the API --------------------------------------------------------------------------------------

    def answer_api(self, action: str, run_id: str, signature: str | None, body: Any) -> tuple[int, Any]:
        if self.api_status is not None:
            return self.api_status, {"error": f"switched to answer {self.api_status}"}
        if run_id not in self.keys:
            return 404, {"error": f"unknown run {run_id}"}
        if not isinstance(body, dict):
            return 400, {"error": "body must be a JSON object"}
        nonce, expires = body.get("nonce"), body.get("expiresInSeconds")
        if not isinstance(nonce, str) or not re.fullmatch(r"[0-9]{1,20}", nonce) or int(nonce) >= 2**64:
            return 400, {"error": "nonce must be a u64 as a decimal string"}
        if type(expires) is not int or not 0 < expires <= MAX_EXPIRES:
            return 400, {"error": f"expiresInSeconds must be an integer in 1..{MAX_EXPIRES}"}
        message = f"nous-run-down-service:{run_id}:{expires}:{nonce}".encode()
        try:
            parsed = Signature.from_string(signature or "")
        except ValueError:
            return 401, {"error": "missing or malformed X-Solana-Signature"}
        if not any(parsed.verify(key, message) for key in self.keys[run_id]):
            return 401, {"error": "invalid signature"}
        with self._lock:
            if nonce in self.nonces:
                return 401, {"error": "nonce already used"}
            self.nonces.add(nonce)
            self.accepted_signatures += 1
        expires_at = datetime.now(UTC) + timedelta(seconds=expires)
        if action == "upload":
            name = body.get("filename")
            if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
                return 400, {"error": "bad filename"}
            return 200, {"url": self._sign("PUT", run_id, name, expires), "expiresAt": expires_at.isoformat()}
        directory = self.run_dir(run_id)
        names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
        urls = [{"path": name, "url": self._sign("GET", run_id, name, expires)} for name in names]
        return 200, {"urls": urls, "expiresAt": expires_at.isoformat()}

    def _sign(self, method: str, run_id: str, name: str, expires: int) -> str:
        token = secrets.token_urlsafe(12)
        expires_at = time.time() - 1 if self.expired_urls else time.time() + expires
        with self._lock:
            self._tokens[token] = _Token(method, run_id, name, expires_at)
        return f"http://127.0.0.1:{self.port}/blob/{token}?{URL_SECRET_PARAM}={secrets.token_hex(16)}"

    def token(self, method: str, path: str) -> tuple[int, _Token | None]:
        match = re.fullmatch(r"/blob/([A-Za-z0-9_-]+)", path)
        found = self._tokens.get(match.group(1)) if match else None
        if found is None or found.method != method:
            return 403, None
        if time.time() > found.expires_at:
            return 403, None
        return 200, found


def _handler(service: RunDownService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            del format, args

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length)

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            match = re.fullmatch(r"/v1/(upload|download)/([^/]+)", path)
            raw = self._body()
            if match is None:
                status, payload = 404, {"error": "no such endpoint"}
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                status, payload = service.answer_api(
                    match.group(1), unquote(match.group(2)), self.headers.get("X-Solana-Signature"), body
                )
            service.record(Seen("POST", path, status=status))
            self._json(status, payload)

        def do_PUT(self) -> None:
            path = urlsplit(self.path).path
            status, token = service.token("PUT", path)
            length = self.headers.get("Content-Length")
            if token is None or length is None:
                status = 403 if token is None else 411
                self.close_connection = True
                service.record(Seen("PUT", path, status=status))
                self._send(status, b"<Error><Code>AccessDenied</Code></Error>")
                return
            target = service.run_dir(token.run_id) / token.name
            target.parent.mkdir(parents=True, exist_ok=True)
            remaining = int(length)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".upload-", delete=False) as tmp:
                try:
                    while remaining:
                        chunk = self.rfile.read(min(1 << 20, remaining))
                        if not chunk:
                            break
                        tmp.write(chunk)
                        remaining -= len(chunk)
                except OSError:
                    pass
            if remaining or service.put_status is not None:
                os.unlink(tmp.name)  # incomplete or refused: the object is not created
                status = service.put_status or 400
                service.record(Seen("PUT", path, status=status))
                self._send(status, b"<Error><Code>Refused</Code></Error>")
                return
            os.replace(tmp.name, target)
            service.record(Seen("PUT", path, status=200))
            self._send(200, b"")

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            requested = self.headers.get("Range")
            status, token = service.token("GET", path)
            if token is None:
                service.record(Seen("GET", path, requested, status))
                self._send(403, b"<Error><Code>ExpiredToken</Code></Error>")
                return
            data = (service.run_dir(token.run_id) / token.name).read_bytes()
            start = 0
            headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if requested:
                match = re.fullmatch(r"bytes=(\d+)-", requested)
                assert match, requested
                start = int(match.group(1))
                if start >= len(data):
                    service.record(Seen("GET", path, requested, 416))
                    self._send(416, b"range not satisfiable", {"Content-Range": f"bytes */{len(data)}"})
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            service.record(Seen("GET", path, requested, status))
            with service._lock:
                drop = service.drops_left != 0 and len(body) > service.drop_after
                if drop and service.drops_left > 0:
                    service.drops_left -= 1
            if not drop:
                self._send(status, body, headers)
                return
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: service.drop_after])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


@contextlib.contextmanager
def rundown_service(root: Path) -> Iterator[RunDownService]:
    """A RunDownService serving on a free 127.0.0.1 port, in threads, for the ``with`` block."""
    service = RunDownService(root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    server.daemon_threads = True
    service.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="rundown-service", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
