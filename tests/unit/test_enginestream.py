"""enginestream: the log follow's own HTTP/1.0 GET, against one-shot stand-in engines (unix socket, TCP)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from psyche.errors import ContainerRuntimeError
from psyche.manager.enginestream import READ_SIZE, EngineAddress, engine_address, stream_get

ACTION = "reading the logs of container c1"
HEAD_200 = b"HTTP/1.0 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"


@dataclass
class OneShot:
    """Accepts one connection, records the request head, then runs ``answer`` on the connection."""

    answer: Callable[[socket.socket], None]
    request: bytes = b""
    client_closed: threading.Event = field(default_factory=threading.Event)

    def serve(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                data = conn.recv(4096)
                if not data:
                    return
                self.request += data
            self.answer(conn)
            conn.settimeout(5.0)
            with contextlib.suppress(OSError):
                if conn.recv(1) == b"":  # the client hung up
                    self.client_closed.set()


@contextlib.contextmanager
def serving(
    listener: socket.socket, url: str, answer: Callable[[socket.socket], None]
) -> Iterator[tuple[EngineAddress, OneShot]]:
    """Serve one connection on the bound ``listener`` from a thread; yields the engine's address."""
    listener.listen(1)
    shot = OneShot(answer)
    thread = threading.Thread(target=shot.serve, args=(listener,), daemon=True)
    thread.start()
    yield engine_address(url), shot
    thread.join(10)


@contextlib.contextmanager
def unix_engine(answer: Callable[[socket.socket], None]) -> Iterator[tuple[EngineAddress, OneShot]]:
    with tempfile.TemporaryDirectory() as tmp, socket.socket(socket.AF_UNIX) as listener:
        path = str(Path(tmp) / "engine.sock")
        listener.bind(path)
        with serving(listener, f"unix://{path}", answer) as served:
            yield served


@contextlib.contextmanager
def tcp_engine(answer: Callable[[socket.socket], None]) -> Iterator[tuple[EngineAddress, OneShot]]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        with serving(listener, f"tcp://127.0.0.1:{listener.getsockname()[1]}", answer) as served:
            yield served


Engine = Callable[
    [Callable[[socket.socket], None]], contextlib.AbstractContextManager[tuple[EngineAddress, OneShot]]
]


def body_of(address: EngineAddress, **params: str | int) -> list[bytes]:
    with stream_get(address, "/v1.41/containers/c1/logs", params, timeout=5.0, action=ACTION) as body:
        return list(body)


@pytest.mark.parametrize("engine", [unix_engine, tcp_engine], ids=["unix", "tcp"])
def test_the_request_is_http_1_0_so_the_body_comes_unchunked_until_the_close(engine: Engine) -> None:
    payload = b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n" * 10_000

    def answer(conn: socket.socket) -> None:
        conn.sendall(HEAD_200 + payload)
        conn.shutdown(socket.SHUT_WR)

    with engine(answer) as (address, shot):
        blocks = body_of(address, stdout=1, follow=1, tail="all")

    assert b"".join(blocks) == payload
    assert all(len(block) <= READ_SIZE for block in blocks)
    head = shot.request.decode()
    assert head.startswith("GET /v1.41/containers/c1/logs?stdout=1&follow=1&tail=all HTTP/1.0\r\n")
    assert "Transfer-Encoding" not in head


def test_a_block_comes_as_soon_as_it_arrived_not_when_a_buffer_fills() -> None:
    seen_first = threading.Event()

    def answer(conn: socket.socket) -> None:
        conn.sendall(HEAD_200 + b"first line\n")
        assert seen_first.wait(5.0), "the reader held the first line back"
        conn.sendall(b"second line\n")
        conn.shutdown(socket.SHUT_WR)

    with unix_engine(answer) as (address, _shot):
        got = []
        with stream_get(address, "/logs", {}, timeout=5.0, action=ACTION) as body:
            for block in body:
                got.append(block)
                seen_first.set()
    assert b"".join(got) == b"first line\nsecond line\n"
    assert got[0] == b"first line\n"


def test_a_quiet_stream_is_not_timed_out() -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(HEAD_200)
        threading.Event().wait(0.5)  # quieter than the timeout below
        conn.sendall(b"late\n")
        conn.shutdown(socket.SHUT_WR)

    with (
        unix_engine(answer) as (address, _shot),
        stream_get(address, "/l", {}, timeout=0.1, action=ACTION) as body,
    ):
        assert b"".join(body) == b"late\n"


def test_an_error_status_is_one_line_with_the_engines_message() -> None:
    def answer(conn: socket.socket) -> None:
        message = b'{"message":"No such container: c1"}\n'
        head = b"HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n"
        conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(message) + message)

    with unix_engine(answer) as (address, _shot), pytest.raises(ContainerRuntimeError) as info:
        body_of(address)
    assert str(info.value) == f"{ACTION} failed: No such container: c1"


def test_an_error_without_json_keeps_the_text_or_names_the_status() -> None:
    def plain(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 500 Internal Server Error\r\n\r\npage  not\nfound")
        conn.shutdown(socket.SHUT_WR)

    def empty(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 502 Bad Gateway\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)

    with (
        unix_engine(plain) as (address, _),
        pytest.raises(ContainerRuntimeError, match=r"failed: page not found$"),
    ):
        body_of(address)
    with unix_engine(empty) as (address, _), pytest.raises(ContainerRuntimeError, match=r"failed: HTTP 502$"):
        body_of(address)


def test_an_answer_that_is_not_http_is_named() -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)

    with unix_engine(answer) as (address, _), pytest.raises(ContainerRuntimeError, match="not HTTP"):
        body_of(address)


def test_leaving_the_block_early_hangs_up_at_once() -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(HEAD_200 + b"one\n")  # and the stream stays open, as a follow does

    with unix_engine(answer) as (address, shot):
        with stream_get(address, "/l", {}, timeout=5.0, action=ACTION) as body:
            assert next(body) == b"one\n"
        assert shot.client_closed.wait(5.0)


def test_an_engine_that_is_not_there_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        body_of(engine_address(f"unix://{tmp_path / 'absent.sock'}"))


def test_addresses_from_docker_host_and_the_sdks_base_url() -> None:
    assert engine_address("unix:///var/run/docker.sock") == EngineAddress(unix_path="/var/run/docker.sock")
    assert engine_address("tcp://10.0.0.5:2375") == EngineAddress(host="10.0.0.5", port=2375)
    assert engine_address("http://10.0.0.5:2375") == EngineAddress(host="10.0.0.5", port=2375)
    assert engine_address("tcp://gpu-box").port == 2375
    secure = engine_address("https://gpu-box:2376", verify=False)
    assert (secure.host, secure.port) == ("gpu-box", 2376)
    assert isinstance(secure.tls, ssl.SSLContext) and secure.tls.verify_mode == ssl.CERT_NONE
    assert (
        engine_address("https://gpu-box").tls is not None and engine_address("https://gpu-box").port == 2376
    )
    assert engine_address("unix:///s").host_header == "docker"
    assert engine_address("tcp://h:1").host_header == "h:1"


def test_an_engine_reachable_only_over_ssh_is_refused_in_one_line() -> None:
    with pytest.raises(ContainerRuntimeError, match=r"only unix:// and tcp:// engines"):
        engine_address("ssh://gpu-box")
