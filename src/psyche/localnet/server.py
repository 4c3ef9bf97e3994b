"""The localnet's network side: JSON-RPC over HTTP/1.1 (asyncio streams), WebSocket pubsub, slot timer."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from psyche.errors import ConfigError
from psyche.hosts import url_host
from psyche.localnet.chain import Chain
from psyche.localnet.pubsub import PubSub
from psyche.localnet.rpc import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, RpcError, RpcMethods

log = logging.getLogger(__name__)

# Loopback unless the user names another address (--host): this chain has a public faucet and no access
# control, so whoever can reach the address it binds can use it.
DEFAULT_HOST = "127.0.0.1"
_WILDCARD_URL_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
MAX_BODY = 50 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
}


def _error(code: int, message: str, req_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": req_id}


def _answer(methods: RpcMethods, request: Any) -> dict[str, Any]:
    if (
        not isinstance(request, dict)
        or request.get("jsonrpc") != "2.0"
        or not isinstance(request.get("method"), str)
    ):
        return _error(
            INVALID_REQUEST, "Invalid request", request.get("id") if isinstance(request, dict) else None
        )
    req_id = request.get("id")
    try:
        result = methods.call(request["method"], request.get("params"))
    except RpcError as exc:
        return {"jsonrpc": "2.0", "error": exc.to_json(), "id": req_id}
    except Exception:  # a bug in a handler must not take the server down
        log.exception("internal error in %s", request["method"])
        return _error(INTERNAL_ERROR, "Internal error", req_id)
    return {"jsonrpc": "2.0", "result": result, "id": req_id}


def handle_body(methods: RpcMethods, body: bytes) -> Any:
    """One HTTP body: a request object or a batch array; returns the JSON-able answer."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack; Solana's parser refuses it as -32700 too.
        return _error(PARSE_ERROR, "Parse error")
    if isinstance(payload, list):
        if not payload:
            return _error(INVALID_REQUEST, "Invalid request")
        return [_answer(methods, item) for item in payload]
    return _answer(methods, payload)


def reachable_url_host(host: str) -> str:
    """The bound ``host`` as clients on this machine reach it in a URL: a wildcard through loopback."""
    return url_host(_WILDCARD_URL_HOSTS.get(host, host))


class LocalnetServer:
    """Binds the RPC and WS ports on ``host`` (0 = any free port) and runs the slot timer until stopped."""

    def __init__(
        self,
        chain: Chain,
        *,
        rpc_port: int = 8899,
        ws_port: int = 8900,
        slot_ms: int = 400,
        clock_control: bool = False,
        host: str = DEFAULT_HOST,
    ) -> None:
        self.chain = chain
        self.host = host
        self.methods = RpcMethods(chain.ledger, chain.executor, clock_control=clock_control)
        self.pubsub = PubSub(chain.ledger)
        self.slot_ms = slot_ms
        self._ports = (rpc_port, ws_port)
        self._http: asyncio.Server | None = None
        self._ws: Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.rpc_port = rpc_port
        self.ws_port = ws_port

    @property
    def rpc_url(self) -> str:
        return f"http://{reachable_url_host(self.host)}:{self.rpc_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{reachable_url_host(self.host)}:{self.ws_port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1 (port 0 picks a free one; ``rpc_port``/``ws_port`` then say which) and start
        the slot timer.

        Raises:
            ConfigError: a port cannot be bound (the message names it and the flag that picks another).
        """
        try:
            self._http = await asyncio.start_server(self._serve_http, self.host, self._ports[0])
        except OSError as exc:
            raise _listen_error("RPC", "--rpc-port", self.host, self._ports[0], exc) from exc
        self.rpc_port = self._http.sockets[0].getsockname()[1]
        try:
            self._ws = await serve(
                self._serve_ws, self.host, self._ports[1], max_size=MAX_BODY, compression=None
            )
        except OSError as exc:
            self._http.close()
            await self._http.wait_closed()
            raise _listen_error("WebSocket", "--ws-port", self.host, self._ports[1], exc) from exc
        self.ws_port = next(iter(self._ws.sockets)).getsockname()[1]
        self._timer = asyncio.create_task(self._tick_slots())

    async def stop(self) -> None:
        """Stop the slot timer and both listeners, close open connections, then close the chain (its
        store)."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        if self._http is not None:
            self._http.close()
            for writer in list(self._writers):
                writer.close()
            await self._http.wait_closed()
        self.chain.close()

    async def __aenter__(self) -> LocalnetServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _tick_slots(self) -> None:
        while True:
            await asyncio.sleep(self.slot_ms / 1000)
            self.pubsub.on_slot(self.chain.ledger.advance_slot())

    # -- HTTP ---------------------------------------------------------------------------------------------

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY:
            await self._respond(writer, 413, b"", close=True)
            return False
        body = await reader.readexactly(length) if length else b""
        keep = headers.get("connection", "").lower() != "close"
        if method == "GET" and path.split("?")[0] == "/health":
            await self._respond(writer, 200, b"ok", content_type="text/plain", close=not keep)
        elif method != "POST":
            await self._respond(
                writer, 405, b"Used HTTP Method is not allowed. POST or OPTIONS is required", close=True
            )
            return False
        else:
            answer = handle_body(self.methods, body)
            await self._respond(writer, 200, json.dumps(answer).encode(), close=not keep)
        return keep

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        close: bool,
    ) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    # -- WebSocket ----------------------------------------------------------------------------------------

    async def _serve_ws(self, connection: ServerConnection) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        sender = asyncio.create_task(self._drain(connection, queue))
        send = queue.put_nowait
        try:
            async for message in connection:
                answer = self._ws_answer(message, send)
                queue.put_nowait(json.dumps(answer))
                self.pubsub.flush()
        except ConnectionClosed:
            pass
        finally:
            self.pubsub.drop(send)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    @staticmethod
    async def _drain(connection: ServerConnection, queue: asyncio.Queue[str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await connection.send(await queue.get())

    def _ws_answer(self, message: str | bytes, send: Any) -> Any:
        try:
            request = json.loads(message)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(PARSE_ERROR, "Parse error")
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(INVALID_REQUEST, "Invalid request")
        req_id = request.get("id")
        try:
            result = self.pubsub.handle(request["method"], request.get("params"), send)
        except RpcError as exc:
            return {"jsonrpc": "2.0", "error": exc.to_json(), "id": req_id}
        return {"jsonrpc": "2.0", "result": result, "id": req_id}


def _listen_error(what: str, flag: str, host: str, port: int, exc: OSError) -> ConfigError:
    if isinstance(exc, socket.gaierror):  # --host names nothing the resolver knows
        return ConfigError(
            f"cannot listen on {host} for {what}: {exc.strerror or exc}",
            hint="pass an address of this machine with --host (the default is 127.0.0.1)",
        )
    # asyncio rewrites strerror into a long sentence; the errno says it in a few words.
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.errno == errno.EADDRNOTAVAIL:
        hint = "pass an address of this machine with --host (the default is 127.0.0.1)"
    else:
        hint = f"stop what uses the port, or pick another with {flag} (0 picks a free one)"
    return ConfigError(f"cannot listen on {reachable_url_host(host)}:{port} for {what}: {reason}", hint=hint)
