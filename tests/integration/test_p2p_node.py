"""P2PNode on 127.0.0.1: discovery, messages, blobs, and every kind of refusal (counted, never a crash)."""

from __future__ import annotations

import hashlib
import math
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from psyche.client.identity import P2PIdentity
from psyche.errors import FetchFailed, PeerRefused
from psyche.p2p.node import P2PNode
from psyche.p2p.wire import Ticket, sign
from tests.support.net import unused_port
from tests.support.wait import wait_until

IDS = [P2PIdentity(bytes([i + 1]) * 32) for i in range(10)]
STRANGER = P2PIdentity(b"\x99" * 32)


class Inbox:
    """What a node's on_message saw; raises for data starting with b"refuse" (a handler refusal)."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, bytes]] = []
        self.event = threading.Event()

    def __call__(self, sender: bytes, data: bytes) -> None:
        if data.startswith(b"refuse"):
            err = ValueError("no")
            err.reason = "wrong-batch"  # type: ignore[attr-defined]  # what a refusing handler tags
            raise err
        if data.startswith(b"boom"):
            raise RuntimeError("handler bug")
        self.got.append((sender, data))
        self.event.set()


@pytest.fixture
def make_node() -> Iterator[Callable[..., tuple[P2PNode, Inbox]]]:
    nodes: list[P2PNode] = []

    def make(i: int, bootstrap: list[tuple[str, int]] | None = None, **kw: object) -> tuple[P2PNode, Inbox]:
        inbox = Inbox()
        kw.setdefault("discovery_interval", 0.2)
        kw.setdefault("send_timeout", 1.0)
        node = P2PNode(IDS[i], "127.0.0.1", 0, None, bootstrap or [], inbox, **kw)  # type: ignore[arg-type]
        nodes.append(node.start())
        return node, inbox

    yield make
    for n in nodes:
        n.close()


@pytest.fixture
def trio(make_node: Callable[..., tuple[P2PNode, Inbox]]) -> list[tuple[P2PNode, Inbox]]:
    """Three nodes that know one bootstrap address (the first node's) and allow each other."""
    a = make_node(0)
    b = make_node(1, [a[0].address])
    c = make_node(2, [a[0].address])
    everyone = {IDS[0].public, IDS[1].public, IDS[2].public}
    for node, _ in (a, b, c):
        node.set_allowed(everyone)
    wait_until(lambda: all(len(n.peers()) == 2 for n, _ in (a, b, c)))
    return [a, b, c]


def url(node: P2PNode, path: str) -> str:
    host, port = node.address
    return f"http://{host}:{port}{path}"


def test_discovery_from_one_bootstrap_and_broadcast(trio: list[tuple[P2PNode, Inbox]]) -> None:
    (a, ai), (b, bi), (c, ci) = trio
    assert b.peers()[IDS[2].public] == c.address  # b learnt c's address from a's /peers
    assert a.address[0] == "127.0.0.1"
    assert c.send_all(b"result of round 3") == 2
    wait_until(lambda: len(ai.got) == 1 and len(bi.got) == 1)
    assert ai.got == bi.got == [(IDS[2].public, b"result of round 3")]
    assert ci.got == []
    assert c.stats()["sent"] == 2 and a.stats()["messages_received"] == 1


def test_only_allowed_identities_are_dialled(make_node: Callable[..., tuple[P2PNode, Inbox]]) -> None:
    a, _ = make_node(0)
    make_node(1, [a.address])
    wait_until(lambda: IDS[1].public in a.peers())
    a.set_allowed({IDS[2].public})  # b is no longer one of the run's clients
    assert a.peers() == {}
    assert a.send_all(b"x") == 0
    assert IDS[1].public not in _peer_ids(a)


def _peer_ids(node: P2PNode) -> list[bytes]:
    from psyche.p2p.wire import decode_record_list, open_record

    raw = httpx.get(url(node, "/peers"), trust_env=False).content
    return [open_record(r).identity for r in decode_record_list(raw)][1:]


def test_blob_publish_and_fetch_with_fallback(trio: list[tuple[P2PNode, Inbox]]) -> None:
    (a, _), (b, _), (c, _) = trio
    data = os.urandom(3 * 1024 * 1024 + 17)
    ticket = a.publish(data, 5)
    assert ticket == Ticket(hashlib.sha256(data).digest(), *a.address)
    assert b.fetch(ticket, IDS[0].public, [], len(data), 5.0, keep=5) == data
    assert b.blobs.get(ticket.blob) == data  # kept: b now serves it too
    # The announcer is gone from the ticket's address: c falls back to b.
    dead = Ticket(ticket.blob, "127.0.0.1", unused_port())
    assert c.fetch(dead, IDS[0].public, [IDS[1].public], len(data), 5.0) == data
    # Nobody has it: one line naming every attempt.
    a.blobs.drop_before(6)
    b.blobs.drop_before(6)
    c.blobs.drop_before(6)
    with pytest.raises(FetchFailed) as info:
        c.fetch(dead, IDS[0].public, [IDS[1].public], len(data), 2.0)
    msg = str(info.value)
    assert "no peer delivered it" in msg and "\n" not in msg and msg.count("127.0.0.1:") == 3
    assert "HTTP 404" in msg and "ConnectError" in msg
    assert c.stats()["fetch_failed"] == 1


class _Liar(BaseHTTPRequestHandler):
    """Serves the wrong bytes for every blob; /big sends an endless chunked body; /long lies in its length."""

    protocol_version = "HTTP/1.1"
    body = b"not the payload you asked for"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path.startswith("/blob/00"):  # endless chunked answer
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(10_000):
                    self.wfile.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
            except OSError:
                pass
            return
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def liar() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "127.0.0.1", int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_tampered_blob_is_refused_and_counted(
    trio: list[tuple[P2PNode, Inbox]], liar: tuple[str, int]
) -> None:
    (a, _), (b, _), _ = trio
    data = b"the real payload" * 1000
    ticket = Ticket(hashlib.sha256(data).digest(), *liar)
    with pytest.raises(FetchFailed, match="hash-mismatch"):
        b.fetch(ticket, IDS[0].public, [], 1 << 20, 5.0)
    assert b.stats()["refused"] == {"hash-mismatch": 1}
    # With an honest fallback the liar's bytes are dropped and the real ones kept.
    a.publish(data, 1)
    assert b.fetch(ticket, IDS[0].public, [], 1 << 20, 5.0) == data
    assert b.stats()["refused"] == {"hash-mismatch": 2}


def test_oversized_blob_is_refused_as_soon_as_it_exceeds_the_cap(
    trio: list[tuple[P2PNode, Inbox]], liar: tuple[str, int]
) -> None:
    (a, _), (b, _), _ = trio
    data = os.urandom(100_000)
    ticket = a.publish(data, 1)
    with pytest.raises(FetchFailed, match="too-large"):  # announced length over the cap
        b.fetch(ticket, IDS[0].public, [], 99_999, 5.0)
    endless = Ticket(b"\x00" * 32, *liar)  # no length, an endless body: stopped at the cap
    start = time.monotonic()
    with pytest.raises(FetchFailed, match="too-large"):
        b.fetch(endless, IDS[0].public, [], 1 << 20, 5.0)
    assert time.monotonic() - start < 2.0
    assert b.stats()["refused"] == {"too-large": 2}


def test_messages_from_strangers_tampered_or_oversized_are_refused_and_counted(
    trio: list[tuple[P2PNode, Inbox]],
) -> None:
    (a, inbox), _, _ = trio
    post = httpx.Client(trust_env=False)
    m = url(a, "/msg")
    assert post.post(m, content=sign(STRANGER, b"hello")).status_code == 403
    good = sign(IDS[1], b"hello")
    assert post.post(m, content=good[:-1] + b"X").status_code == 400  # data changed after signing
    assert post.post(m, content=sign(IDS[1], b"x" * (a.max_message + 1))).status_code == 413
    assert post.post(m, content=b"short").status_code == 400
    assert post.post(m, content=sign(IDS[1], b"refuse this")).status_code == 422
    assert post.post(m, content=sign(IDS[1], b"boom")).status_code == 422
    assert post.post(m, content=good).status_code == 204
    assert inbox.got == [(IDS[1].public, b"hello")]
    assert a.stats()["refused"] == {
        "not-allowed": 1,
        "bad-signature": 1,
        "too-large": 1,
        "malformed": 1,
        "wrong-batch": 1,
        "handler-error": 1,
    }
    with pytest.raises(ValueError, match="max_message"):
        a.send_all(b"x" * (a.max_message + 1))
    post.close()


def test_garbage_requests_never_crash_the_node(trio: list[tuple[P2PNode, Inbox]]) -> None:
    (a, inbox), (b, _), _ = trio
    host, port = a.address
    junk = [
        b"\x00\xff garbage\r\n\r\n",
        b"GET /blob/zz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /blob/" + b"ab" * 32 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /msg HTTP/1.1\r\nHost: x\r\n\r\n",  # no length
        b"POST /msg HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
        b"POST /msg HTTP/1.1\r\nContent-Length: 500\r\n\r\nshort",  # then hang up
        b"POST /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"GET /model/manifest HTTP/1.1\r\n\r\n",
        b"DELETE / HTTP/1.1\r\n\r\n",
    ]
    answers = []
    for raw in junk:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            answers.append(s.recv(200).split(b"\r\n")[0])
    assert answers[1] == b"HTTP/1.1 400 Bad Request"
    assert answers[2] == b"HTTP/1.1 404 Not Found"
    assert answers[3] == b"HTTP/1.1 411 Length Required"
    assert answers[4] == b"HTTP/1.1 413 Request Entity Too Large"
    assert answers[8] == b"HTTP/1.1 404 Not Found"
    assert answers[9].startswith(b"HTTP/1.") and b" 501 " in answers[9]
    # Still serving and still talking.
    assert b.send_all(b"after the junk") == 2
    wait_until(lambda: inbox.got == [(IDS[1].public, b"after the junk")])
    assert a.stats()["refused"].get("internal-error", 0) == 0


def test_discovery_ignores_bad_records_and_keeps_the_newest(
    make_node: Callable[..., tuple[P2PNode, Inbox]],
) -> None:
    from psyche.p2p.wire import AddressRecord, sign_record

    a, _ = make_node(0, discovery_interval=60)
    hello = url(a, "/hello")
    old = sign_record(IDS[1], AddressRecord(IDS[1].public, "127.0.0.2", 1000, 10))
    new = sign_record(IDS[1], AddressRecord(IDS[1].public, "127.0.0.3", 2000, 20))
    assert httpx.post(hello, content=new, trust_env=False).status_code == 204
    assert httpx.post(hello, content=old, trust_env=False).status_code == 204
    assert a.peers() == {IDS[1].public: ("127.0.0.3", 2000)}
    assert httpx.post(hello, content=new[:-1] + b"\x00", trust_env=False).status_code == 400
    assert a.stats()["refused"] == {"bad-signature": 1}
    with pytest.raises(PeerRefused):
        a.merge_record(b"junk")


def test_close_is_quick_and_frees_the_port(make_node: Callable[..., tuple[P2PNode, Inbox]]) -> None:
    node = P2PNode(IDS[3], "127.0.0.1", 0, None, [("127.0.0.1", unused_port())], Inbox()).start()
    port = node.bound[1]
    start = time.monotonic()
    node.close()
    assert time.monotonic() - start < 3
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# --- model sharing ---------------------------------------------------------------------------------

CONFIG = {"architecture": "llama", "hidden_size": 8, "vocab_size": 16}


def _tensors(seed: int) -> list[tuple[str, str, tuple[int, ...], bytes]]:
    rng = random.Random(seed)
    shapes = {"embed": (16, 8), "layer.0.w": (8, 8), "layer.0.b": (8,), "norm": (8,), "head": (16, 8)}
    return [(n, "bfloat16", s, rng.randbytes(2 * math.prod(s))) for n, s in shapes.items()]


def test_model_fetch_from_two_peers_cross_checked_and_spread(
    trio: list[tuple[P2PNode, Inbox]],
) -> None:
    from psyche.p2p.model_share import fetch_model, serve_model

    (a, _), (b, _), (joiner, _) = trio
    tensors = _tensors(1)
    served = serve_model(a, 2, 40, CONFIG, tensors)
    assert serve_model(b, 2, 40, CONFIG, tensors) == served
    manifest, blobs = fetch_model(joiner, [IDS[0].public, IDS[1].public], concurrency=2)
    assert manifest == served and manifest.config == CONFIG and (manifest.epoch, manifest.step) == (2, 40)
    assert blobs == {n: data for n, _, _, data in tensors}
    # Requests were spread over both peers.
    assert a.stats()["blobs_served"] >= 1 and b.stats()["blobs_served"] >= 1
    assert a.stats()["blobs_served"] + b.stats()["blobs_served"] == len(tensors)


def test_model_fetch_refuses_peers_that_disagree(trio: list[tuple[P2PNode, Inbox]]) -> None:
    from psyche.p2p.model_share import fetch_model, serve_model

    (a, _), (b, _), (joiner, _) = trio
    serve_model(a, 2, 40, CONFIG, _tensors(1))
    lie = _tensors(1)
    lie[2] = (lie[2][0], lie[2][1], lie[2][2], b"\x00" * len(lie[2][3]))
    serve_model(b, 2, 40, CONFIG, lie)
    with pytest.raises(FetchFailed) as info:
        fetch_model(joiner, [IDS[0].public, IDS[1].public])
    assert str(info.value) == (
        f"model: peers {IDS[0].public.hex()[:12]} and {IDS[1].public.hex()[:12]} serve different models "
        "(parameter 'layer.0.b' differs); refusing both"
    )
    assert joiner.stats()["refused"] == {"manifest-mismatch": 1}


def test_model_fetch_survives_a_peer_serving_wrong_bytes(trio: list[tuple[P2PNode, Inbox]]) -> None:
    from psyche.p2p.model_share import fetch_model, serve_model

    (a, _), (b, _), (joiner, _) = trio
    tensors = _tensors(3)
    serve_model(a, 1, 9, CONFIG, tensors)
    manifest = serve_model(b, 1, 9, CONFIG, tensors)
    # b's store now answers every hash with garbage of the right length (a tampered disk, a liar).
    for p in manifest.params:
        b.blobs._blobs[p.sha256] = b"\x01" * p.size
    _, blobs = fetch_model(joiner, [IDS[1].public, IDS[0].public], max_errors_per_peer=2)
    assert blobs == {n: data for n, _, _, data in tensors}
    assert joiner.stats()["refused"]["hash-mismatch"] >= 1


def test_model_fetch_refusals(trio: list[tuple[P2PNode, Inbox]]) -> None:
    from psyche.p2p.model_share import fetch_model, serve_model, sign_manifest

    (a, _), (b, _), (joiner, _) = trio
    with pytest.raises(FetchFailed, match=r"no peer served a valid manifest .*HTTP 404"):
        fetch_model(joiner, [IDS[0].public])
    with pytest.raises(FetchFailed, match="none of the 1 peers has a known address"):
        fetch_model(joiner, [STRANGER.public])
    # b serves a manifest a signed: not b's word, refused.
    manifest = serve_model(a, 1, 1, CONFIG, _tensors(1))
    b.set_manifest(sign_manifest(IDS[0], manifest))
    with pytest.raises(FetchFailed, match="manifest signed by"):
        fetch_model(joiner, [IDS[1].public])
    assert joiner.stats()["refused"]["wrong-signer"] == 1
    # Only a's blobs exist and the single peer works without a cross-check; a cap on the total is kept.
    assert fetch_model(joiner, [IDS[0].public])[0] == manifest
    with pytest.raises(FetchFailed, match="more than the cap"):
        fetch_model(joiner, [IDS[0].public], max_total_bytes=10)
    # A peer that loses its blobs mid-way: every peer spends its error budget, one clear line.
    a.blobs.drop_tag("model")
    with pytest.raises(FetchFailed, match=r"5 of 5 parameters could not be had .*gave up after 2 errors"):
        fetch_model(joiner, [IDS[0].public], max_errors_per_peer=2)


def test_connection_flood_is_capped_and_counted(
    make_node: Callable[..., tuple[P2PNode, Inbox]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from psyche.p2p.server import Server

    monkeypatch.setattr(Server, "max_active", 4)
    a, _ = make_node(0, discovery_interval=60)
    idle = [socket.create_connection(a.address, timeout=2) for _ in range(4)]
    try:
        wait_until(lambda: a._server is not None and a._server._active._value == 0)
        with socket.create_connection(a.address, timeout=2) as extra:
            extra.sendall(b"GET /peers HTTP/1.1\r\n\r\n")
            assert extra.recv(100) == b""  # closed unanswered
        assert a.stats()["refused"] == {"busy": 1}
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: httpx.get(url(a, "/peers"), trust_env=False).status_code == 200)


def test_discovery_converges_with_a_small_fanout(make_node: Callable[..., tuple[P2PNode, Inbox]]) -> None:
    """Ten nodes, each dialling the bootstrap and two random known peers per round, all learn all nine."""
    first, _ = make_node(0, discovery_interval=0.1, discovery_fanout=2)
    nodes = [first] + [
        make_node(i, [first.address], discovery_interval=0.1, discovery_fanout=2)[0] for i in range(1, 10)
    ]
    for n in nodes:
        n.set_allowed({i.public for i in IDS})
    wait_until(lambda: all(len(n.peers()) == 9 for n in nodes), timeout=10)


def test_a_port_in_use_is_a_config_error(make_node: Callable[..., tuple[P2PNode, Inbox]]) -> None:
    from psyche.errors import ConfigError

    a, _ = make_node(0, discovery_interval=60)
    node = P2PNode(IDS[1], "127.0.0.1", a.bound[1], None, [], Inbox())
    with pytest.raises(ConfigError, match=rf"^P2P_BIND/P2P_PORT: cannot listen on 127.0.0.1:{a.bound[1]}: "):
        node.start()
    node.close()


def test_a_peer_that_resets_its_connection_leaves_no_traceback_and_no_internal_error(
    trio: list[tuple[P2PNode, Inbox]], capfd: pytest.CaptureFixture[str]
) -> None:
    # A killed peer resets its connections: before a request, in the request line, in a body.
    (a, inbox), (b, _), _ = trio
    host, port = a.address
    for raw in [b"", b"GET /pe", b"POST /msg HTTP/1.1\r\nContent-Length: 500\r\n\r\nshort"]:
        s = socket.create_connection((host, port), timeout=2)
        if raw:
            s.sendall(raw)
        time.sleep(0.1)  # the server thread is reading when the reset arrives
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        s.close()
    assert b.send_all(b"after the resets") == 2
    wait_until(lambda: inbox.got == [(IDS[1].public, b"after the resets")])
    assert a.stats()["refused"].get("internal-error", 0) == 0
    assert "Traceback" not in capfd.readouterr().err
