"""The treasurer's ``Run`` and ``Participant`` accounts (Borsh, with unused zero bytes after the body)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from solders.pubkey import Pubkey

from psyche.chain.anchor import account_discriminator, check_account_discriminator
from psyche.chain.layout import Reader, Writer


@dataclass(frozen=True, slots=True)
class TreasurerRun:
    """A treasurer-backed run: its owner, coordinator accounts, collateral mint and claim totals."""

    DISCRIMINATOR: ClassVar[bytes] = account_discriminator("Run")
    # The program allocates 8 + Rust size_of (alignment padding included); Borsh uses only DATA_SIZE of it.
    SIZE: ClassVar[int] = 200
    DATA_SIZE: ClassVar[int] = 193
    WHAT: ClassVar[str] = "treasurer run account"

    bump: int
    index: int
    main_authority: Pubkey
    join_authority: Pubkey
    coordinator_account: Pubkey
    coordinator_instance: Pubkey
    collateral_mint: Pubkey
    total_claimed_collateral_amount: int
    total_claimed_earned_points: int

    @classmethod
    def decode(cls, data: bytes) -> TreasurerRun:
        """Decode account data; the unused tail is ignored."""
        check_account_discriminator(data, cls.DISCRIMINATOR, cls.WHAT)
        r = Reader(data, cls.WHAT, pos=len(cls.DISCRIMINATOR))
        return cls(
            bump=r.u8(),
            index=r.u64(),
            main_authority=r.pubkey(),
            join_authority=r.pubkey(),
            coordinator_account=r.pubkey(),
            coordinator_instance=r.pubkey(),
            collateral_mint=r.pubkey(),
            total_claimed_collateral_amount=r.u64(),
            total_claimed_earned_points=r.u64(),
        )

    def encode(self) -> bytes:
        """The 200 allocated bytes: the 193-byte body and a zero tail."""
        return (
            Writer()
            .raw(self.DISCRIMINATOR)
            .u8(self.bump)
            .u64(self.index)
            .pubkey(self.main_authority)
            .pubkey(self.join_authority)
            .pubkey(self.coordinator_account)
            .pubkey(self.coordinator_instance)
            .pubkey(self.collateral_mint)
            .u64(self.total_claimed_collateral_amount)
            .u64(self.total_claimed_earned_points)
            .zeros(self.SIZE - self.DATA_SIZE)
            .getvalue()
        )


@dataclass(frozen=True, slots=True)
class Participant:
    """What one user has already claimed from one treasurer run."""

    DISCRIMINATOR: ClassVar[bytes] = account_discriminator("Participant")
    SIZE: ClassVar[int] = 32
    DATA_SIZE: ClassVar[int] = 25
    WHAT: ClassVar[str] = "treasurer participant account"

    bump: int
    claimed_collateral_amount: int
    claimed_earned_points: int

    @classmethod
    def decode(cls, data: bytes) -> Participant:
        """Decode account data; the unused tail is ignored."""
        check_account_discriminator(data, cls.DISCRIMINATOR, cls.WHAT)
        r = Reader(data, cls.WHAT, pos=len(cls.DISCRIMINATOR))
        return cls(bump=r.u8(), claimed_collateral_amount=r.u64(), claimed_earned_points=r.u64())

    def encode(self) -> bytes:
        """The 32 allocated bytes: the 25-byte body and a zero tail."""
        return (
            Writer()
            .raw(self.DISCRIMINATOR)
            .u8(self.bump)
            .u64(self.claimed_collateral_amount)
            .u64(self.claimed_earned_points)
            .zeros(self.SIZE - self.DATA_SIZE)
            .getvalue()
        )
