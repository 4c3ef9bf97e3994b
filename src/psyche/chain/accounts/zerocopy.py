"""Primitives for the coordinator account's zero-copy (repr(C)) fields at absolute offsets, plus f32 helpers.

Readers here are only called after the account's size has been checked, so fixed offsets are always in
range; they raise AccountDecodeError for bad enum tags and Option tags. Writers write over a base buffer.
"""

from __future__ import annotations

import struct

from psyche.chain.layout import Writer, decode_fixed_str, encode_fixed_str
from psyche.errors import AccountDecodeError

ZC_WHAT = "coordinator account"
STR64 = 64  # SOLANA_MAX_STRING_LEN
STR192 = 192  # SOLANA_MAX_URL_STRING_LEN

U32 = struct.Struct("<I")
F32 = struct.Struct("<f")
F64 = struct.Struct("<d")


def f32(value: float) -> float:
    """Round a Python float to the nearest f32, as storing it on chain does."""
    return float(F32.unpack(F32.pack(value))[0])


def f32_serde(value: float) -> float:
    """The float that JSON-prints like Rust prints an f32 (shortest digits that round-trip as f32)."""
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if f32(candidate) == value:
            return candidate
    return value


def zc_tag(data: bytes, off: int, variants: int, name: str) -> int:
    """A repr(C) enum tag (u32) that must be < ``variants``.

    Raises:
        AccountDecodeError: the tag is ``variants`` or more.
    """
    tag = int(U32.unpack_from(data, off)[0])
    if tag >= variants:
        raise AccountDecodeError(f"{ZC_WHAT}: unknown {name} variant {tag} at offset {off}")
    return tag


def zc_str(data: bytes, off: int, n: int) -> str:
    """Read a FixedString<n> at ``off`` (see :func:`psyche.chain.layout.decode_fixed_str`)."""
    return decode_fixed_str(data[off : off + n])


def zc_put_str(buf: bytearray, off: int, n: int, value: str) -> None:
    """Write a FixedString<n>, leaving the bytes alone when they already read as ``value`` (keeps bytes
    after the NUL, and lossily-decoded strings, byte-identical)."""
    if decode_fixed_str(bytes(buf[off : off + n])) != value:
        buf[off : off + n] = encode_fixed_str(value, n)


def zc_pack(buf: bytearray, s: struct.Struct, off: int, *values: object) -> None:
    """Pack ``values`` with ``s`` at ``off``; ValueError (naming the offset) when one does not fit."""
    try:
        s.pack_into(buf, off, *values)
    except struct.error as exc:
        raise ValueError(f"values {values!r} out of range for {s.format!r} at offset {off}") from exc


def zc_put_tag(buf: bytearray, off: int, tag: int) -> None:
    """Write a repr(C) enum tag (u32) at ``off``."""
    U32.pack_into(buf, off, tag)


def zc_opt_tag(data: bytes, off: int, name: str) -> bool:
    """The first byte of a repr(C) Option: 0 None, 1 Some, anything else is corrupt.

    Raises:
        AccountDecodeError: the byte is neither 0 nor 1.
    """
    tag = data[off]
    if tag > 1:
        raise AccountDecodeError(f"{ZC_WHAT}: invalid Option tag {tag} for {name} at offset {off}")
    return tag == 1


def zc_opt_f32(data: bytes, off: int, name: str) -> float | None:
    """An Option<f32>: 8 bytes, tag in byte 0, value at +4.

    Raises:
        AccountDecodeError: the tag byte is neither 0 nor 1.
    """
    return float(F32.unpack_from(data, off + 4)[0]) if zc_opt_tag(data, off, name) else None


def zc_put_opt_f32(buf: bytearray, off: int, value: float | None) -> None:
    """Write an Option<f32> (8 bytes: tag byte, value at +4); None leaves the value bytes alone."""
    buf[off] = 0 if value is None else 1
    if value is not None:
        zc_pack(buf, F32, off + 4, value)


def borsh_opt_f32(w: Writer, value: float | None) -> Writer:
    """Append a Borsh Option<f32>."""
    return w.option(value, Writer.f32)


def borsh_str(w: Writer, value: str, n: int) -> Writer:
    """Append a FixedString<n> (``Writer.fixed_str``)."""
    return w.fixed_str(value, n)
