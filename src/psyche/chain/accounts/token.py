"""SPL Token ``Account`` (165 bytes) and ``Mint`` (82 bytes), standard layout (``COption`` = u32 tag)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from solders.pubkey import Pubkey

from psyche.chain.layout import Reader, Writer
from psyche.errors import AccountDecodeError

T = TypeVar("T")

_PUBKEY_SIZE = 32
_U64_SIZE = 8


class AccountState(enum.IntEnum):
    """SPL token account state byte."""

    UNINITIALIZED = 0
    INITIALIZED = 1
    FROZEN = 2


def _read_coption(r: Reader, read: Callable[[Reader], T], size: int) -> T | None:
    # Unlike Borsh's Option, the payload bytes are always there (zeros when None).
    tag = r.u32()
    if tag > 1:
        raise r.fail(f"invalid COption tag {tag} at offset {r.pos - 4}")
    if tag == 0:
        r.skip(size)
        return None
    return read(r)


def _write_coption(w: Writer, value: T | None, write: Callable[[Writer, T], object], size: int) -> None:
    if value is None:
        w.u32(0).zeros(size)
    else:
        w.u32(1)
        write(w, value)


def _check_length(data: bytes, size: int, what: str) -> None:
    # Token-2022 appends extensions after the base layout, so longer data is accepted and the rest ignored.
    if len(data) < size:
        raise AccountDecodeError(f"{what}: expected ≥{size} bytes, got {len(data)}")


@dataclass(frozen=True, slots=True)
class TokenAccount:
    """An SPL token account: who holds how many base units of which mint."""

    SIZE: ClassVar[int] = 165
    WHAT: ClassVar[str] = "token account"

    mint: Pubkey
    owner: Pubkey
    amount: int
    delegate: Pubkey | None = None
    state: AccountState = AccountState.INITIALIZED
    is_native: int | None = None
    delegated_amount: int = 0
    close_authority: Pubkey | None = None

    @classmethod
    def decode(cls, data: bytes) -> TokenAccount:
        """Decode the base layout (an uninitialized account decodes with ``state`` UNINITIALIZED).

        Raises:
            AccountDecodeError: the data is not 165 bytes, or a tag is invalid.
        """
        _check_length(data, cls.SIZE, cls.WHAT)
        r = Reader(data, cls.WHAT)
        mint = r.pubkey()
        owner = r.pubkey()
        amount = r.u64()
        delegate = _read_coption(r, Reader.pubkey, _PUBKEY_SIZE)
        state = AccountState(r.enum_tag(1, len(AccountState), "account state"))
        return cls(
            mint=mint,
            owner=owner,
            amount=amount,
            delegate=delegate,
            state=state,
            is_native=_read_coption(r, Reader.u64, _U64_SIZE),
            delegated_amount=r.u64(),
            close_authority=_read_coption(r, Reader.pubkey, _PUBKEY_SIZE),
        )

    def encode(self) -> bytes:
        """The 165-byte account data."""
        w = Writer().pubkey(self.mint).pubkey(self.owner).u64(self.amount)
        _write_coption(w, self.delegate, Writer.pubkey, _PUBKEY_SIZE)
        w.u8(int(self.state))
        _write_coption(w, self.is_native, Writer.u64, _U64_SIZE)
        w.u64(self.delegated_amount)
        _write_coption(w, self.close_authority, Writer.pubkey, _PUBKEY_SIZE)
        return w.getvalue()


@dataclass(frozen=True, slots=True)
class Mint:
    """An SPL token mint: supply and decimals (the UI amount is ``base / 10**decimals``)."""

    SIZE: ClassVar[int] = 82
    WHAT: ClassVar[str] = "mint account"

    mint_authority: Pubkey | None
    supply: int
    decimals: int
    is_initialized: bool = True
    freeze_authority: Pubkey | None = None

    @classmethod
    def decode(cls, data: bytes) -> Mint:
        """Decode the base layout (an uninitialized mint decodes with ``is_initialized`` False).

        Raises:
            AccountDecodeError: the data is not 82 bytes, or a tag or bool is invalid.
        """
        _check_length(data, cls.SIZE, cls.WHAT)
        r = Reader(data, cls.WHAT)
        return cls(
            mint_authority=_read_coption(r, Reader.pubkey, _PUBKEY_SIZE),
            supply=r.u64(),
            decimals=r.u8(),
            is_initialized=r.boolean(),
            freeze_authority=_read_coption(r, Reader.pubkey, _PUBKEY_SIZE),
        )

    def encode(self) -> bytes:
        """The 82-byte mint data."""
        w = Writer()
        _write_coption(w, self.mint_authority, Writer.pubkey, _PUBKEY_SIZE)
        w.u64(self.supply).u8(self.decimals).boolean(self.is_initialized)
        _write_coption(w, self.freeze_authority, Writer.pubkey, _PUBKEY_SIZE)
        return w.getvalue()
