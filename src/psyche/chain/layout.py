"""Pure byte readers and writers for Solana account and instruction data (little-endian, Borsh, zero-copy).

Every read is bounds-checked: running past the end, a bad bool, bad UTF-8 in a Borsh string or an
unknown enum tag raises :class:`AccountDecodeError` naming the account type, never IndexError or
struct.error. Writers raise ValueError for values that cannot be represented (callers validate user
input before it gets here).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TypeVar

from solders.pubkey import Pubkey

from psyche.errors import AccountDecodeError

T = TypeVar("T")

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


class Reader:
    """A cursor over immutable bytes, for both Borsh (sequential) and zero-copy (seek + read) layouts.

    Each read returns the value at the cursor and moves past it; ``u8`` ... ``f64`` are little-endian.

    Raises:
        AccountDecodeError: from any read that runs past the end or meets an invalid value; the message
            starts with ``what`` (the account type).
    """

    __slots__ = ("_data", "_pos", "what")

    def __init__(self, data: bytes, what: str, pos: int = 0) -> None:
        self._data = bytes(data)
        self._pos = pos
        self.what = what

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def seek(self, pos: int) -> Reader:
        """Move the cursor to the absolute offset ``pos`` (zero-copy reads); returns the reader, to chain."""
        self._pos = pos
        return self

    def fail(self, reason: str) -> AccountDecodeError:
        """Build the decode error for this account type (the caller raises it)."""
        return AccountDecodeError(f"{self.what}: {reason}")

    def _need(self, n: int) -> int:
        start = self._pos
        end = start + n
        if n < 0 or end > len(self._data):
            raise self.fail(f"expected ≥{end} bytes, got {len(self._data)}")
        self._pos = end
        return start

    def _int(self, s: struct.Struct) -> int:
        start = self._need(s.size)
        return int(s.unpack_from(self._data, start)[0])

    def _float(self, s: struct.Struct) -> float:
        start = self._need(s.size)
        return float(s.unpack_from(self._data, start)[0])

    def u8(self) -> int:
        return self._int(_U8)

    def u16(self) -> int:
        return self._int(_U16)

    def u32(self) -> int:
        return self._int(_U32)

    def u64(self) -> int:
        return self._int(_U64)

    def i64(self) -> int:
        return self._int(_I64)

    def f32(self) -> float:
        return self._float(_F32)

    def f64(self) -> float:
        return self._float(_F64)

    def boolean(self) -> bool:
        """A Borsh bool: exactly 0 or 1, anything else is corrupt data."""
        value = self.u8()
        if value > 1:
            raise self.fail(f"invalid bool byte {value} at offset {self._pos - 1}")
        return value == 1

    def flag(self) -> bool:
        """A zero-copy u8 used as a bool: any non-zero byte is true."""
        return self.u8() != 0

    def raw(self, n: int) -> bytes:
        """The next ``n`` bytes as they are."""
        start = self._need(n)
        return self._data[start : start + n]

    def skip(self, n: int) -> None:
        """Move past ``n`` bytes (padding), checking that they exist."""
        self._need(n)

    def pubkey(self) -> Pubkey:
        return Pubkey.from_bytes(self.raw(32))

    def fixed_str(self, n: int) -> str:
        """A FixedString<N>: bytes up to the first NUL (or all N), decoded lossily like the Rust reader."""
        return decode_fixed_str(self.raw(n))

    def string(self) -> str:
        """A Borsh String: u32 length then UTF-8 bytes (strict)."""
        data = self.bytes_vec()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"invalid UTF-8 in string at offset {self._pos - len(data)}") from exc

    def bytes_vec(self) -> bytes:
        """A Borsh Vec<u8>: u32 length then the bytes."""
        n = self.u32()
        return self.raw(n)

    def option(self, read: Callable[[Reader], T]) -> T | None:
        """A Borsh Option<T>: 0 for None, 1 followed by T."""
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read(self)
        raise self.fail(f"invalid Option tag {tag} at offset {self._pos - 1}")

    def vec(self, read: Callable[[Reader], T], item_size: int = 1) -> list[T]:
        """A Borsh Vec<T>: u32 length then the items. ``item_size`` (minimum bytes per item) lets an
        absurd length fail at once instead of after a long loop."""
        n = self.u32()
        if n * max(item_size, 1) > self.remaining:
            raise self.fail(f"vector of {n} items does not fit in the {self.remaining} bytes left")
        return [read(self) for _ in range(n)]

    def enum_tag(self, size: int, variants: int, name: str) -> int:
        """An enum tag of ``size`` bytes (1 for Borsh, 4 for repr(C)) that must be < ``variants``."""
        tag = {1: self.u8, 2: self.u16, 4: self.u32}[size]()
        if tag >= variants:
            raise self.fail(f"unknown {name} variant {tag} at offset {self._pos - size}")
        return tag

    def expect_end(self) -> None:
        """Check that every byte was read.

        Raises:
            AccountDecodeError: trailing bytes are left (the message says how many).
        """
        if self._pos != len(self._data):
            raise self.fail(f"{len(self._data) - self._pos} unexpected trailing bytes")


def decode_fixed_str(raw: bytes) -> str:
    """Decode a FixedString<N>'s bytes: up to the first NUL (or all of them), invalid UTF-8 replaced like the
    Rust reader does."""
    end = raw.find(b"\x00")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", errors="replace")


def encode_fixed_str(value: str, n: int, *, truncate: bool = False) -> bytes:
    """Encode a FixedString<N>: UTF-8, NUL-padded. Too long fails unless ``truncate`` (from_str_truncated)."""
    data = value.encode("utf-8")
    if len(data) > n:
        if not truncate:
            raise ValueError(f"string of {len(data)} bytes does not fit in {n} bytes: {value[:40]!r}")
        data = data[:n]
    return data.ljust(n, b"\x00")


class Writer:
    """A sequential Borsh writer; ``getvalue()`` returns the bytes.

    Every method appends and returns the writer, so calls chain; numbers are little-endian.

    Raises:
        ValueError: a number out of range for its type, or a string too long for its FixedString.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        """The bytes written so far."""
        return bytes(self._buf)

    def _pack(self, s: struct.Struct, value: int | float) -> Writer:
        try:
            self._buf += s.pack(value)
        except struct.error as exc:
            raise ValueError(f"value {value!r} out of range for {s.format}") from exc
        return self

    def u8(self, value: int) -> Writer:
        return self._pack(_U8, value)

    def u16(self, value: int) -> Writer:
        return self._pack(_U16, value)

    def u32(self, value: int) -> Writer:
        return self._pack(_U32, value)

    def u64(self, value: int) -> Writer:
        return self._pack(_U64, value)

    def i64(self, value: int) -> Writer:
        return self._pack(_I64, value)

    def f32(self, value: float) -> Writer:
        return self._pack(_F32, value)

    def f64(self, value: float) -> Writer:
        return self._pack(_F64, value)

    def boolean(self, value: bool) -> Writer:
        return self.u8(1 if value else 0)

    def raw(self, data: bytes) -> Writer:
        """Append ``data`` as it is (no length prefix)."""
        self._buf += data
        return self

    def pubkey(self, key: Pubkey) -> Writer:
        return self.raw(bytes(key))

    def fixed_str(self, value: str, n: int, *, truncate: bool = False) -> Writer:
        """Append a FixedString<``n``> (see :func:`encode_fixed_str`)."""
        return self.raw(encode_fixed_str(value, n, truncate=truncate))

    def string(self, value: str) -> Writer:
        """Append a Borsh String: u32 length then the UTF-8 bytes."""
        return self.bytes_vec(value.encode("utf-8"))

    def bytes_vec(self, data: bytes) -> Writer:
        """Append a Borsh Vec<u8>: u32 length then the bytes."""
        return self.u32(len(data)).raw(data)

    def option(self, value: T | None, write: Callable[[Writer, T], object]) -> Writer:
        """Append a Borsh Option<T>: 0 for None, else 1 followed by ``write(self, value)``."""
        if value is None:
            return self.u8(0)
        self.u8(1)
        write(self, value)
        return self

    def vec(self, items: Iterable[T], write: Callable[[Writer, T], object]) -> Writer:
        """Append a Borsh Vec<T>: u32 length then ``write(self, item)`` for each item."""
        items = list(items)
        self.u32(len(items))
        for item in items:
            write(self, item)
        return self

    def zeros(self, n: int) -> Writer:
        """Append ``n`` zero bytes (padding)."""
        self._buf += bytes(n)
        return self


def pack_at(buf: bytearray, offset: int, fmt: str, *values: int | float) -> None:
    """Write little-endian ``fmt`` values into a zero-copy buffer at an absolute offset."""
    try:
        struct.pack_into("<" + fmt, buf, offset, *values)
    except struct.error as exc:
        raise ValueError(f"values {values!r} out of range for {fmt!r} at offset {offset}") from exc
