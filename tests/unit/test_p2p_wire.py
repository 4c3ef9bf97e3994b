"""psyche.p2p.wire and blobs: fixed vectors, round trips, and refusal of every kind of garbage."""

from __future__ import annotations

import contextlib
import hashlib
import struct
import threading

import pytest

from psyche.client.identity import P2PIdentity
from psyche.errors import PeerRefused
from psyche.p2p.blobs import BlobStore
from psyche.p2p.wire import (
    DOMAIN_ADDRESS,
    ENVELOPE_OVERHEAD,
    AddressRecord,
    Broadcast,
    Finished,
    Proof,
    Ticket,
    TrainingResult,
    decode_broadcast,
    decode_record_list,
    encode_broadcast,
    encode_record_list,
    open_envelope,
    open_record,
    parse_address,
    sign,
    sign_record,
)

ALICE = P2PIdentity(bytes(range(32)))
BOB = P2PIdentity(bytes(32))

RESULT = Broadcast(
    step=7,
    proof=Proof(committee=1, position=3, index=9),
    data_hash=bytes(range(32)),
    commitment_sig=bytes(range(64)),
    nonce=2,
    body=TrainingResult((16, 23), Ticket(b"\xab" * 32, "10.231.0.2", 40123)),
)
FINISHED = Broadcast(7, Proof(0, 0, 0), b"\x01" * 32, b"\x02" * 64, 0, Finished(b"\x03" * 32, True))

# The golden bytes: tag 0x42, step, committee, position, index, hash, signature, nonce, body kind 0,
# batch (16, 23), ticket (blob, host length + host, port), all big-endian.
RESULT_BYTES = (
    b"\x42"
    + struct.pack(">I", 7)
    + b"\x01"
    + struct.pack(">QQ", 3, 9)
    + bytes(range(32))
    + bytes(range(64))
    + struct.pack(">I", 2)
    + b"\x00"
    + struct.pack(">QQ", 16, 23)
    + b"\xab" * 32
    + b"\x0a10.231.0.2"
    + struct.pack(">H", 40123)
)


def test_broadcast_golden_bytes_and_round_trip() -> None:
    assert encode_broadcast(RESULT) == RESULT_BYTES
    assert len(RESULT_BYTES) == 1 + 4 + 1 + 16 + 32 + 64 + 4 + 1 + 16 + 32 + 11 + 2
    assert decode_broadcast(RESULT_BYTES) == RESULT
    assert decode_broadcast(encode_broadcast(FINISHED)) == FINISHED
    assert encode_broadcast(FINISHED)[-33:] == b"\x03" * 32 + b"\x01"


def test_broadcast_encode_refuses_wrong_field_sizes() -> None:
    with pytest.raises(ValueError, match="data_hash is 32 bytes"):
        encode_broadcast(Broadcast(1, Proof(0, 0, 0), b"x", b"\x00" * 64, 0, FINISHED.body))
    with pytest.raises(struct.error):
        encode_broadcast(Broadcast(2**32, Proof(0, 0, 0), b"\x00" * 32, b"\x00" * 64, 0, FINISHED.body))


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", "truncated"),
        (RESULT_BYTES[:-1], "truncated"),
        (RESULT_BYTES + b"\x00", "1 trailing bytes"),
        (b"\x43" + RESULT_BYTES[1:], "unknown message tag 67"),
        (RESULT_BYTES[:122] + b"\x05" + RESULT_BYTES[123:], "unknown body kind 5"),
        (encode_broadcast(FINISHED)[:-1] + b"\x02", "flag byte 2"),
        (RESULT_BYTES[:123] + struct.pack(">QQ", 9, 8) + RESULT_BYTES[139:], "batch start 9 after end 8"),
        (RESULT_BYTES[:-13] + b"\x0a10.231.0 2" + RESULT_BYTES[-2:], "not a host"),
        (RESULT_BYTES[:-13] + b"\x0a10.231.0\xff2" + RESULT_BYTES[-2:], "not ASCII"),
        (RESULT_BYTES[:-13] + b"\x00" + RESULT_BYTES[-2:], "not a host"),
        (RESULT_BYTES[:-2] + b"\x00\x00", "port 0 out of range"),
        (RESULT_BYTES[:-13] + b"\xff10.231.0.2" + RESULT_BYTES[-2:], "truncated"),
    ],
)
def test_broadcast_garbage_is_refused(raw: bytes, detail: str) -> None:
    with pytest.raises(PeerRefused, match=detail) as info:
        decode_broadcast(raw)
    assert info.value.reason == "malformed"


def test_broadcast_decode_never_raises_anything_else_on_random_bytes() -> None:
    import random

    rng = random.Random(5)
    for n in range(2000):
        raw = bytearray(RESULT_BYTES)
        for _ in range(1 + n % 4):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        raw = raw[: rng.randrange(len(raw) + 1)] if n % 3 == 0 else raw
        with contextlib.suppress(PeerRefused):
            decode_broadcast(bytes(raw))


def test_envelope_round_trip_and_refusals() -> None:
    env = sign(ALICE, b"hello")
    assert len(env) == ENVELOPE_OVERHEAD + 5
    assert env[:32] == ALICE.public
    assert open_envelope(env, 5) == (ALICE.public, b"hello")

    with pytest.raises(PeerRefused) as info:
        open_envelope(env, 4)
    assert info.value.reason == "too-large"
    for bad in (env[:-1] + b"X", BOB.public + env[32:], env[:40] + b"\x00" + env[41:]):
        with pytest.raises(PeerRefused) as info:
            open_envelope(bad, 100)
        assert info.value.reason == "bad-signature"
    with pytest.raises(PeerRefused) as info:
        open_envelope(env[:95], 100)
    assert info.value.reason == "malformed"
    # A public key that is not a curve point is a bad signature, not a crash.
    with pytest.raises(PeerRefused, match="bad-signature"):
        open_envelope(b"\xff" * 32 + env[32:], 100)


def test_envelope_domains_do_not_mix() -> None:
    record_env = sign(ALICE, b"hello", domain=DOMAIN_ADDRESS)
    with pytest.raises(PeerRefused, match="bad-signature"):
        open_envelope(record_env, 100)
    # The signature is over domain || data, never the bare data (a commitment signs a bare hash).
    assert ALICE.sign(b"hello") != sign(ALICE, b"hello")[32:96]


def test_address_record_round_trip_and_refusals() -> None:
    rec = AddressRecord(ALICE.public, "10.231.0.2", 4000, 1_700_000_000_000)
    raw = sign_record(ALICE, rec)
    assert open_record(raw) == rec
    with pytest.raises(ValueError, match="signed by the identity it names"):
        sign_record(BOB, rec)
    # Bob signing a record that names Alice is refused on the way in.
    forged = sign(BOB, rec.encode(), domain=DOMAIN_ADDRESS)
    with pytest.raises(PeerRefused, match="another identity"):
        open_record(forged)
    with pytest.raises(PeerRefused, match="trailing"):
        open_record(sign(ALICE, rec.encode() + b"\x00", domain=DOMAIN_ADDRESS))
    with pytest.raises(PeerRefused, match="bad-signature"):
        open_record(raw[:-1] + bytes([raw[-1] ^ 1]))


def test_record_list_round_trip_and_refusals() -> None:
    recs = [sign_record(ALICE, AddressRecord(ALICE.public, "h", 1, 2)), b"xyz"]
    assert decode_record_list(encode_record_list(recs)) == recs
    assert decode_record_list(encode_record_list([])) == []
    for bad in (b"", b"\x00", b"\x00\x01", b"\x00\x01\x00\x05abc", encode_record_list(recs) + b"\x00"):
        with pytest.raises(PeerRefused):
            decode_record_list(bad)
    with pytest.raises(PeerRefused, match="more than 4096"):
        decode_record_list(b"\xff\xff")


@pytest.mark.parametrize(
    ("text", "default", "want"),
    [
        ("10.0.0.1:80", None, ("10.0.0.1", 80)),
        ("example.org", 9, ("example.org", 9)),
        ("[::1]:7", None, ("::1", 7)),
        ("::1", 5, ("::1", 5)),
        (" host:65535 ", None, ("host", 65535)),
    ],
)
def test_parse_address(text: str, default: int | None, want: tuple[str, int]) -> None:
    assert parse_address(text, default) == want


@pytest.mark.parametrize(
    "text", ["host", "host:", "host:x", "host:0", "host:70000", "[::1", "[::1]x", ":80", "a b:1"]
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_blob_store_put_get_and_tags() -> None:
    store = BlobStore()
    h1 = store.put(b"one", 1)
    h2 = store.put(b"two", 2)
    hm = store.put(b"model", "model")
    assert h1 == hashlib.sha256(b"one").digest()
    assert store.get(h1) == b"one" and h1 in store and len(store) == 3
    assert store.put(b"two", 3) == h2  # same content, second tag
    assert store.drop_before(3) == 1  # "one" leaves; "two" is still held by tag 3; "model" is named
    assert store.get(h1) is None and store.get(h2) == b"two" and store.get(hm) == b"model"
    assert store.drop_tag(3) == 1 and store.get(h2) is None
    assert store.drop_before(10**9) == 0 and store.drop_tag("model") == 1 and len(store) == 0
    assert store.get(b"\x00" * 32) is None


def test_blob_store_is_thread_safe() -> None:
    store = BlobStore()

    def work(k: int) -> None:
        for i in range(300):
            store.put(f"{k}-{i}".encode(), i)
            if i % 50 == 0:
                store.drop_before(i - 10)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.drop_before(290)
    assert len(store) == 4 * 10
    assert store.total_bytes() == sum(len(f"{k}-{i}") for k in range(4) for i in range(290, 300))


def _manifest_doc() -> dict[str, object]:
    return {"epoch": 1, "step": 2, "config": {"a": 1}, "params": [["w", "bfloat16", [2, 3], "ab" * 32, 12]]}


def test_manifest_round_trip_signature_and_canonical_bytes() -> None:
    import json

    from psyche.p2p.model_share import ModelManifest, build_manifest, open_manifest, sign_manifest

    m = build_manifest(1, 2, {"b": [1, 2], "a": "x"}, [("w", "float32", (2,), b"\x00" * 8)])
    assert m.encode() == (
        b'{"config":{"a":"x","b":[1,2]},"epoch":1,"params":[["w","float32",[2],"'
        + hashlib.sha256(b"\x00" * 8).hexdigest().encode()
        + b'",8]],"step":2}'
    )
    assert ModelManifest.decode(m.encode()) == m
    assert open_manifest(sign_manifest(ALICE, m)) == (ALICE.public, m)
    with pytest.raises(PeerRefused, match="bad-signature"):
        open_manifest(sign(ALICE, m.encode()))  # a message signature is not a manifest signature
    assert ModelManifest.decode(json.dumps(_manifest_doc()).encode()).params[0].shape == (2, 3)
    with pytest.raises(PeerRefused, match="size does not match"):
        build_manifest(1, 2, {}, [("w", "float32", (3,), b"\x00" * 8)])


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"epoch": -1}, "wrong type"),
        ({"step": True}, "wrong type"),
        ({"config": []}, "wrong type"),
        ({"extra": 1}, "exactly epoch"),
        ({"params": [["w", "bfloat16", [2, 3], "ab" * 32]]}, "not \\[name"),
        ({"params": [["", "bfloat16", [2, 3], "ab" * 32, 12]]}, "name"),
        ({"params": [["w", "complex", [2, 3], "ab" * 32, 12]]}, "unknown dtype"),
        ({"params": [["w", "bfloat16", [2, -3], "ab" * 32, 12]]}, "bad shape"),
        ({"params": [["w", "bfloat16", [2, 3], "AB" * 32, 12]]}, "64 hex"),
        ({"params": [["w", "bfloat16", [2, 3], "ab" * 32, 13]]}, "size does not match"),
        ({"params": [["w", "bfloat16", [1], "ab" * 32, 2]] * 2}, "twice"),
    ],
)
def test_manifest_garbage_is_refused(change: dict[str, object], detail: str) -> None:
    import json

    from psyche.p2p.model_share import ModelManifest

    doc = {**_manifest_doc(), **change}
    with pytest.raises(PeerRefused, match=detail):
        ModelManifest.decode(json.dumps(doc).encode())


@pytest.mark.parametrize("raw", [b"", b"[", b"[]", b"null", b"[" * 100_000, b'{"epoch":NaN}'])
def test_manifest_non_json_is_refused(raw: bytes) -> None:
    from psyche.p2p.model_share import ModelManifest

    with pytest.raises(PeerRefused):
        ModelManifest.decode(raw)
