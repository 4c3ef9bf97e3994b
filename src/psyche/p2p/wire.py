"""The transport's messages and their strict binary encoding (big-endian, every length checked).

A signed envelope is ``from (32-byte ed25519 public key) || signature (64) || data``; the signature
covers ``domain || data`` where the domain keeps a message, an address record and a model manifest
from ever being taken for one another (and none of them for a commitment signature, which signs a
bare 32-byte hash). Decoders raise ``PeerRefused(reason)`` on any garbage: short input, trailing
bytes, an unknown tag, a bad flag byte, a host that is not a plain host name or address.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

from solders.pubkey import Pubkey
from solders.signature import Signature

from psyche.errors import PeerRefused

PUBKEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
HASH_BYTES: Final = 32
ENVELOPE_OVERHEAD: Final = PUBKEY_BYTES + SIGNATURE_BYTES

DOMAIN_MESSAGE: Final = b"psyche-p2p message v1\x00"
DOMAIN_ADDRESS: Final = b"psyche-p2p address v1\x00"
DOMAIN_MANIFEST: Final = b"psyche-p2p manifest v1\x00"

MAX_HOST_BYTES: Final = 253  # a DNS name's limit; addresses are shorter
_HOST_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_%")

_BROADCAST_TAG: Final = 0x42  # "B": a version byte of sorts, so other message kinds can follow
_BODY_RESULT: Final = 0
_BODY_FINISHED: Final = 1
_HEAD = struct.Struct(">BIBQQ32s64sIB")  # tag, step, committee, position, index, data_hash, sig, nonce, body
_RESULT = struct.Struct(">QQ")
_PORT = struct.Struct(">H")
_ISSUED = struct.Struct(">Q")


class Signer(Protocol):
    """Anything holding an ed25519 key: ``public`` (32 bytes) and ``sign(message) -> 64 bytes``.

    psyche.client.identity.P2PIdentity is one; the transport never imports the client.
    """

    @property
    def public(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with the identity's key (ed25519)."""


def sign(identity: Signer, data: bytes, *, domain: bytes = DOMAIN_MESSAGE) -> bytes:
    """The signed envelope of ``data``: from || signature(domain || data) || data."""
    return identity.public + identity.sign(domain + data) + data


def verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``public``'s ed25519 signature of ``message`` (False on malformed keys)."""
    if len(public) != PUBKEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        return Signature(signature).verify(Pubkey(public), message)
    except (ValueError, TypeError):
        return False


def open_envelope(raw: bytes, max_bytes: int, *, domain: bytes = DOMAIN_MESSAGE) -> tuple[bytes, bytes]:
    """(sender public key, data) of a signed envelope; ``max_bytes`` caps the data.

    Raises PeerRefused("too-large" | "malformed" | "bad-signature").
    """
    if len(raw) > max_bytes + ENVELOPE_OVERHEAD:
        raise PeerRefused("too-large", f"{len(raw)} bytes, more than {max_bytes} + {ENVELOPE_OVERHEAD}")
    if len(raw) < ENVELOPE_OVERHEAD:
        raise PeerRefused("malformed", f"envelope of {len(raw)} bytes, shorter than {ENVELOPE_OVERHEAD}")
    sender = bytes(raw[:PUBKEY_BYTES])
    signature = bytes(raw[PUBKEY_BYTES:ENVELOPE_OVERHEAD])
    data = bytes(raw[ENVELOPE_OVERHEAD:])
    if not verify(sender, signature, domain + data):
        raise PeerRefused("bad-signature", f"from {sender.hex()[:16]}...")
    return sender, data


# --- small pieces -------------------------------------------------------------------------------


def check_host(host: str) -> str:
    """``host`` when it is a plain host name or IP address (no scheme, path, space or control byte).

    Raises:
        PeerRefused: ("malformed") anything else.
    """
    raw = host.encode("utf-8", "replace")
    if not raw or len(raw) > MAX_HOST_BYTES or not set(raw) <= _HOST_CHARS:
        raise PeerRefused("malformed", f"not a host name or address: {host[:64]!r}")
    return host


def check_port(port: int) -> int:
    """The port, checked.

    Raises:
        PeerRefused: ("malformed") the port is not in 1..65535.
    """
    if not 0 < port < 65536:
        raise PeerRefused("malformed", f"port {port} out of range")
    return port


class _Reader:
    """A cursor over bytes that refuses to read past the end."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise PeerRefused("malformed", f"{self._what}: truncated at byte {self._pos} (needs {n} more)")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def unpack(self, fmt: struct.Struct) -> tuple[object, ...]:
        return fmt.unpack(self.take(fmt.size))

    def host(self) -> str:
        (n,) = self.take(1)
        try:
            text = self.take(n).decode("ascii")
        except UnicodeDecodeError as exc:
            raise PeerRefused("malformed", f"{self._what}: host is not ASCII") from exc
        return check_host(text)

    def port(self) -> int:
        (port,) = _PORT.unpack(self.take(_PORT.size))
        return check_port(int(port))

    def flag(self) -> bool:
        (b,) = self.take(1)
        if b not in (0, 1):
            raise PeerRefused("malformed", f"{self._what}: flag byte {b} is neither 0 nor 1")
        return b == 1

    def end(self) -> None:
        if self._pos != len(self._data):
            raise PeerRefused("malformed", f"{self._what}: {len(self._data) - self._pos} trailing bytes")


def _host_bytes(host: str) -> bytes:
    raw = check_host(host).encode("ascii")
    return bytes([len(raw)]) + raw


def _fixed(value: bytes, n: int, what: str) -> bytes:
    if len(value) != n:
        raise ValueError(f"{what} is {n} bytes, got {len(value)}")
    return value


# --- tickets and broadcasts ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticket:
    """Where to fetch a payload: its sha256 and the publisher's advertised address."""

    blob: bytes
    host: str
    port: int

    def encode(self) -> bytes:
        """The wire form: blob hash, length-prefixed host, port.

        Raises:
            PeerRefused: ("malformed") a bad host.
        """
        return _fixed(self.blob, HASH_BYTES, "ticket blob") + _host_bytes(self.host) + _PORT.pack(self.port)

    @classmethod
    def read(cls, r: _Reader) -> Ticket:
        """Read a ticket.

        Raises:
            PeerRefused: ("malformed") short data or a bad host or port.
        """
        return cls(r.take(HASH_BYTES), r.host(), r.port())


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """A trainer's result for batch [start, end], fetchable with ``ticket``."""

    batch: tuple[int, int]
    ticket: Ticket


@dataclass(frozen=True, slots=True)
class Finished:
    """A client saw the round (or warmup) through; ``merkle`` is its broadcast merkle root."""

    merkle: bytes
    warmup: bool


@dataclass(frozen=True, slots=True)
class Proof:
    """The committee proof of the sender: committee (u8), position and index (u64)."""

    committee: int
    position: int
    index: int


@dataclass(frozen=True, slots=True)
class Broadcast:
    """What a client announces to every epoch client (spec section 2)."""

    step: int
    proof: Proof
    data_hash: bytes
    commitment_sig: bytes
    nonce: int
    body: TrainingResult | Finished


def encode_broadcast(b: Broadcast) -> bytes:
    """The broadcast's bytes (the ``data`` of a signed envelope)."""
    kind = _BODY_RESULT if isinstance(b.body, TrainingResult) else _BODY_FINISHED
    head = _HEAD.pack(
        _BROADCAST_TAG,
        b.step,
        b.proof.committee,
        b.proof.position,
        b.proof.index,
        _fixed(b.data_hash, HASH_BYTES, "data_hash"),
        _fixed(b.commitment_sig, SIGNATURE_BYTES, "commitment signature"),
        b.nonce,
        kind,
    )
    if isinstance(b.body, TrainingResult):
        return head + _RESULT.pack(*b.body.batch) + b.body.ticket.encode()
    return head + _fixed(b.body.merkle, HASH_BYTES, "merkle root") + bytes([int(b.body.warmup)])


def decode_broadcast(data: bytes) -> Broadcast:
    """The Broadcast in ``data``; PeerRefused("malformed") on anything else."""
    r = _Reader(data, "broadcast")
    tag, step, committee, position, index, data_hash, sig, nonce, kind = r.unpack(_HEAD)
    if tag != _BROADCAST_TAG:
        raise PeerRefused("malformed", f"broadcast: unknown message tag {tag}")
    body: TrainingResult | Finished
    if kind == _BODY_RESULT:
        start, end = r.unpack(_RESULT)
        assert isinstance(start, int) and isinstance(end, int)
        if start > end:
            raise PeerRefused("malformed", f"broadcast: batch start {start} after end {end}")
        body = TrainingResult((start, end), Ticket.read(r))
    elif kind == _BODY_FINISHED:
        body = Finished(r.take(HASH_BYTES), r.flag())
    else:
        raise PeerRefused("malformed", f"broadcast: unknown body kind {kind}")
    r.end()
    assert isinstance(step, int) and isinstance(nonce, int)
    assert isinstance(committee, int) and isinstance(position, int) and isinstance(index, int)
    assert isinstance(data_hash, bytes) and isinstance(sig, bytes)
    return Broadcast(step, Proof(committee, position, index), data_hash, sig, nonce, body)


# --- address records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddressRecord:
    """Where ``identity`` can be dialled, as of ``issued_at`` (unix milliseconds); travels signed."""

    identity: bytes
    host: str
    port: int
    issued_at: int

    def encode(self) -> bytes:
        """The wire form: identity, length-prefixed host, port, issued_at.

        Raises:
            PeerRefused: ("malformed") a bad host or port.
        """
        return (
            _fixed(self.identity, PUBKEY_BYTES, "identity")
            + _host_bytes(self.host)
            + _PORT.pack(check_port(self.port))
            + _ISSUED.pack(self.issued_at)
        )


MAX_RECORD_BYTES: Final = PUBKEY_BYTES + 1 + MAX_HOST_BYTES + _PORT.size + _ISSUED.size


def sign_record(identity: Signer, record: AddressRecord) -> bytes:
    """The record in a signed envelope; the record's identity must be the signer's."""
    if record.identity != identity.public:
        raise ValueError("an address record is signed by the identity it names")
    return sign(identity, record.encode(), domain=DOMAIN_ADDRESS)


def open_record(raw: bytes) -> AddressRecord:
    """The AddressRecord in a signed envelope, its signer being the identity it names; else PeerRefused."""
    sender, data = open_envelope(raw, MAX_RECORD_BYTES, domain=DOMAIN_ADDRESS)
    r = _Reader(data, "address record")
    identity = r.take(PUBKEY_BYTES)
    host = r.host()
    port = r.port()
    (issued_at,) = r.unpack(_ISSUED)
    r.end()
    if identity != sender:
        raise PeerRefused("malformed", "address record signed by another identity than the one it names")
    assert isinstance(issued_at, int)
    return AddressRecord(identity, host, port, issued_at)


_COUNT = struct.Struct(">H")
MAX_RECORDS: Final = 4096


def encode_record_list(signed_records: list[bytes]) -> bytes:
    """u16 count, then per record u16 length || signed record bytes (what GET /peers answers)."""
    if len(signed_records) > MAX_RECORDS:
        raise ValueError(f"at most {MAX_RECORDS} records")
    return _COUNT.pack(len(signed_records)) + b"".join(_COUNT.pack(len(r)) + r for r in signed_records)


def decode_record_list(data: bytes) -> list[bytes]:
    """The signed records of a /peers answer, unopened; PeerRefused("malformed") on a bad frame."""
    r = _Reader(data, "peer list")
    (count,) = r.unpack(_COUNT)
    assert isinstance(count, int)
    if count > MAX_RECORDS:
        raise PeerRefused("malformed", f"peer list of {count} records, more than {MAX_RECORDS}")
    out = []
    for _ in range(count):
        (n,) = r.unpack(_COUNT)
        assert isinstance(n, int)
        if n > MAX_RECORD_BYTES + ENVELOPE_OVERHEAD:
            raise PeerRefused("malformed", f"peer list: record of {n} bytes")
        out.append(r.take(n))
    r.end()
    return out


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int]:
    """("host", port) of "host:port", "[v6]:port" or (given ``default_port``) a bare host; else ValueError."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"unclosed '[' in {text!r}")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"junk after ']' in {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        if default_port is None:
            raise ValueError(f"no port in {text!r} (host:port)")
        port = default_port
    else:
        if not port_text.isdigit():
            raise ValueError(f"port {port_text!r} in {text!r} is not a number")
        port = int(port_text)
    try:
        check_host(host)
        check_port(port)
    except PeerRefused as exc:
        raise ValueError(f"{text!r}: {exc.detail}") from exc
    return host, port
