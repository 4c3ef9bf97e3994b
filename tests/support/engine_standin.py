"""A stand-in Docker engine on a unix socket in tmp: answers /_ping, /version, /info and /containers/json
the way an engine of a chosen API range does, and refuses an out-of-range versioned path like Docker 29."""

from __future__ import annotations

import contextlib
import json
import re
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


@dataclass
class EngineStandIn:
    """What the stand-in answers, and every request path it was sent (in order)."""

    version: str = "29.0.1"
    api_version: str = "1.52"
    min_api_version: str = "1.44"
    components: list[dict[str, object]] = field(default_factory=list)  # Podman lists "Podman Engine" here
    paths: list[str] = field(default_factory=list)

    def answer(self, path: str) -> tuple[int, object]:
        self.paths.append(path)
        match = _VERSIONED.match(path.split("?", 1)[0])
        if match:
            asked = (int(match[1]), int(match[2]))
            if asked < _tuple(self.min_api_version):
                return 400, {
                    "message": f"client version {match[1]}.{match[2]} is too old. Minimum supported API "
                    f"version is {self.min_api_version}, please upgrade your client to a newer version"
                }
            if asked > _tuple(self.api_version):
                return 400, {
                    "message": f"client version {match[1]}.{match[2]} is too new. Maximum supported API "
                    f"version is {self.api_version}"
                }
            route = match[3]
        else:
            route = path.split("?", 1)[0]
        if route == "/_ping":
            return 200, "OK"
        if route == "/version":
            return 200, {
                "Version": self.version,
                "ApiVersion": self.api_version,
                "MinAPIVersion": self.min_api_version,
                "Os": "linux",
                "Arch": "amd64",
                **({"Components": self.components} if self.components else {}),
            }
        if route == "/info":
            return 200, {"Runtimes": {"runc": {"path": "runc"}}, "DockerRootDir": "/var/lib/docker"}
        if route == "/containers/json":
            return 200, []
        return 404, {"message": f"page not found: {route}"}


def _tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    standin: EngineStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        status, body = self.server.standin.answer(self.path)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Api-Version", self.server.standin.api_version)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:  # a unix peer has no host
        return "standin"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        del format, args


@contextlib.contextmanager
def engine_standin(
    standin: EngineStandIn | None = None, socket_path: str = "engine.sock"
) -> Iterator[tuple[str, EngineStandIn]]:
    """``(DOCKER_HOST, standin)`` for a stand-in engine on a socket in a fresh short tmp directory (a unix
    socket path must stay under 108 bytes, which a pytest tmp_path may not); ``socket_path`` is relative to
    that directory (``podman/podman.sock`` makes the directory an XDG_RUNTIME_DIR for Podman's socket)."""
    standin = standin or EngineStandIn()
    directory = Path(tempfile.mkdtemp(prefix="engine-"))
    sock = directory / socket_path
    sock.parent.mkdir(parents=True, exist_ok=True)
    server = _Server(str(sock), _Handler)
    server.standin = standin
    thread = threading.Thread(target=server.serve_forever, name="engine-standin", daemon=True)
    thread.start()
    try:
        yield f"unix://{sock}", standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        sock.unlink(missing_ok=True)
        for parent in [*sock.relative_to(directory).parents][:-1]:
            (directory / parent).rmdir()
        directory.rmdir()
