"""A streamed GET to the engine's API over a socket of our own: how the log follow reads the engine.

Why not docker-py or httpx: the engine writes one HTTP chunk per log line. docker-py's public reader makes
two reads per frame, httpx (h11) yields one piece per chunk; both cost a Python round per line, about a
quarter to a half of what the engine serves (docs/decisions.md, "The log follow"). So the request says
HTTP/1.0: an HTTP/1.1 server must not answer a 1.0 request with chunked transfer coding (RFC 9112 6.1),
so the engine sends the body as it is, ending it by closing the connection, and one ``read1`` returns all
that has arrived, up to a block. The status line and headers are parsed by the standard library
(``http.client.HTTPResponse``); nothing here touches docker-py's internals or undoes HTTP chunking.

Where the engine listens comes from the same place docker-py's client was built from: a ``unix://``
DOCKER_HOST (or the discovered Docker or Podman socket), or the client's ``http://`` / ``https://`` base
URL for a ``tcp://`` DOCKER_HOST, with the client's TLS settings.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from psyche.errors import ContainerRuntimeError

# One read of the body: large, so a flood costs one Python round per 64 KiB, not per line; read1 returns
# whatever has arrived, so a quiet client's line is not held back.
READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class EngineAddress:
    """Where the engine's API listens: a unix socket, or a TCP host and port (with TLS when ``tls``)."""

    unix_path: str | None = None
    host: str = ""
    port: int = 0
    tls: ssl.SSLContext | None = None

    @property
    def host_header(self) -> str:
        """The Host header: the engine ignores it on a unix socket, but HTTP wants one."""
        return "docker" if self.unix_path is not None else f"{self.host}:{self.port}"


def engine_address(
    url: str, *, verify: bool | str = True, cert: tuple[str, str] | str | None = None
) -> EngineAddress:
    """The address in ``url``: ``unix:///path``, ``tcp://host:port``, ``http://`` or ``https://host:port``.

    ``verify`` (False, True or a CA bundle path) and ``cert`` (client certificate and key) apply to https,
    as requests takes them (docker-py's client holds them so).

    Raises:
        ContainerRuntimeError: another scheme (ssh://, npipe://), which this reader cannot reach.
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return EngineAddress(unix_path=parts.path)
    if parts.scheme in ("tcp", "http", "https") and parts.hostname:
        tls = _tls_context(verify, cert) if parts.scheme == "https" else None
        return EngineAddress(host=parts.hostname, port=parts.port or (2376 if tls else 2375), tls=tls)
    raise ContainerRuntimeError(
        f"cannot read the engine's logs at {url}: only unix:// and tcp:// engines are supported",
        hint="run on the engine's host (a unix socket), or give DOCKER_HOST as tcp://host:port",
    )


def _tls_context(verify: bool | str, cert: tuple[str, str] | str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if isinstance(cert, tuple):
        context.load_cert_chain(cert[0], cert[1])
    elif cert:
        context.load_cert_chain(cert)
    return context


@contextlib.contextmanager
def stream_get(
    address: EngineAddress,
    path: str,
    params: Mapping[str, str | int],
    *,
    timeout: float | None,
    action: str,
) -> Iterator[Iterator[bytes]]:
    """The body of ``GET path?params``, in blocks of up to READ_SIZE bytes, each as soon as any arrived.

    ``timeout`` bounds the connect and the wait for the status line (None: no bound); the body itself may
    stay quiet for ever (a quiet client). The connection is closed on leaving the block, also when the
    reader stops early. ``action`` starts the error messages ("reading the logs of container x").

    Raises:
        ContainerRuntimeError: the engine answered an error status (with its message, e.g. "No such
            container: ...") or something that is not HTTP.
        OSError: the engine cannot be reached, or the connection broke (ssl.SSLError for TLS).
    """
    sock = _connect(address, timeout)
    try:
        target = f"{path}?{urlencode(params)}" if params else path
        request = f"GET {target} HTTP/1.0\r\nHost: {address.host_header}\r\nAccept: */*\r\n\r\n"
        sock.sendall(request.encode("ascii"))
        response = http.client.HTTPResponse(sock, method="GET")
        try:
            try:
                response.begin()
            except http.client.HTTPException as exc:
                raise ContainerRuntimeError(
                    f"{action} failed: the engine's answer is not HTTP ({exc!r})"
                ) from exc
            if response.status >= 400:
                raise ContainerRuntimeError(
                    f"{action} failed: {_engine_message(response.status, response.read())}"
                )
            sock.settimeout(None)  # a quiet client must not time the follow out
            yield _blocks(response)
        finally:
            response.close()
    finally:
        sock.close()


def _connect(address: EngineAddress, timeout: float | None) -> socket.socket:
    if address.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address.unix_path)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    if address.tls is None:
        return sock
    try:
        return address.tls.wrap_socket(sock, server_hostname=address.host)
    except BaseException:
        sock.close()
        raise


def _blocks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while block := response.read1(READ_SIZE):
        yield block


def _engine_message(status: int, body: bytes) -> str:
    """The engine's error message (its JSON ``message``), else the body's text, else the status."""
    text = body.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError):
        answer = json.loads(text)
        if isinstance(answer, dict) and answer.get("message"):
            text = str(answer["message"])
    return " ".join(text.split()) or f"HTTP {status}"
