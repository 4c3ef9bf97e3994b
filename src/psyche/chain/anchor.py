"""Anchor's 8-byte discriminators for accounts and instructions, and the account discriminator check."""

from __future__ import annotations

import hashlib

from psyche.errors import AccountDecodeError

DISCRIMINATOR_SIZE = 8


def account_discriminator(struct_name: str) -> bytes:
    """``sha256("account:<StructName>")[:8]``: the first 8 bytes of every ``#[account]``."""
    return hashlib.sha256(f"account:{struct_name}".encode()).digest()[:DISCRIMINATOR_SIZE]


def instruction_discriminator(name: str) -> bytes:
    """``sha256("global:<snake_case_name>")[:8]``: the first 8 bytes of every instruction's data."""
    return hashlib.sha256(f"global:{name}".encode()).digest()[:DISCRIMINATOR_SIZE]


def check_account_discriminator(data: bytes, expected: bytes, what: str) -> None:
    """Raise :class:`AccountDecodeError` unless ``data`` starts with ``expected``; ``what`` names the type."""
    if len(data) < len(expected):
        raise AccountDecodeError(f"{what}: expected ≥{len(expected)} bytes, got {len(data)}")
    if data[: len(expected)] != expected:
        raise AccountDecodeError(
            f"{what}: wrong discriminator {bytes(data[: len(expected)]).hex()} (expected {expected.hex()})"
        )
