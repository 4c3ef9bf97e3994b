"""Shared plumbing for instruction builders: account metas, Anchor instruction data, Borsh-encodable args."""

from __future__ import annotations

from typing import Protocol

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from psyche.chain.anchor import instruction_discriminator
from psyche.chain.layout import Writer


class BorshEncodable(Protocol):
    """Any argument type that knows its own Borsh encoding."""

    def to_borsh(self) -> bytes: ...


def signer(key: Pubkey, *, writable: bool = False) -> AccountMeta:
    return AccountMeta(key, is_signer=True, is_writable=writable)


def writable(key: Pubkey) -> AccountMeta:
    return AccountMeta(key, is_signer=False, is_writable=True)


def readonly(key: Pubkey) -> AccountMeta:
    return AccountMeta(key, is_signer=False, is_writable=False)


def discriminators(names: tuple[str, ...]) -> dict[str, bytes]:
    """Each instruction name's Anchor discriminator, computed once at import."""
    return {name: instruction_discriminator(name) for name in names}


def anchor_writer(discriminator: bytes) -> Writer:
    """A Borsh writer that already holds the 8-byte discriminator; the args follow in declaration order."""
    return Writer().raw(discriminator)


def build(program_id: Pubkey, data: bytes, accounts: list[AccountMeta]) -> Instruction:
    return Instruction(program_id, data, accounts)


def borsh_of(value: BorshEncodable, size: int | None, what: str) -> bytes:
    """``value.to_borsh()``, checked against the fixed size the program expects for ``what``."""
    data = value.to_borsh()
    if size is not None and len(data) != size:
        raise ValueError(f"{what} must encode to {size} bytes, got {len(data)}")
    return data


def fixed_bytes(value: bytes | Pubkey, size: int, what: str) -> bytes:
    data = bytes(value)
    if len(data) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(data)}")
    return data
