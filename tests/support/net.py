"""Loopback ports for tests: one nobody listens on, several distinct ones, and one that is taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unused_ports(count: int) -> list[int]:
    """``count`` distinct unused TCP ports on 127.0.0.1 (held together while chosen, so none repeats)."""
    held = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def dead_url(path: str = "") -> str:
    """An http URL on a loopback port that refuses connections, ending in ``path``."""
    return f"http://127.0.0.1:{unused_port()}{path}"


@contextmanager
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 with a TCP listener on it for the block (taken, and a connect succeeds)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield int(server.getsockname()[1])
