"""The coordinator's small per-run index account, ``CoordinatorInstance`` (Anchor, Borsh, 173 bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from solders.pubkey import Pubkey

from psyche.chain.anchor import account_discriminator, check_account_discriminator
from psyche.chain.layout import Reader, Writer


@dataclass(frozen=True, slots=True)
class CoordinatorInstance:
    """Where a run's big coordinator account lives, and who may own it and authorize joins."""

    DISCRIMINATOR: ClassVar[bytes] = account_discriminator("CoordinatorInstance")
    SIZE: ClassVar[int] = 173
    RUN_ID_RESERVED: ClassVar[int] = 64
    WHAT: ClassVar[str] = "coordinator instance account"

    bump: int
    main_authority: Pubkey
    join_authority: Pubkey
    coordinator_account: Pubkey
    run_id: str

    @classmethod
    def decode(cls, data: bytes) -> CoordinatorInstance:
        """Decode account data; trailing bytes after the Borsh body (the unused reservation) are ignored."""
        check_account_discriminator(data, cls.DISCRIMINATOR, cls.WHAT)
        r = Reader(data, cls.WHAT, pos=len(cls.DISCRIMINATOR))
        return cls(
            bump=r.u8(),
            main_authority=r.pubkey(),
            join_authority=r.pubkey(),
            coordinator_account=r.pubkey(),
            run_id=r.string(),
        )

    def encode(self) -> bytes:
        """The 173 allocated bytes: the Borsh body, then zeros to the end of the 64-byte run_id space."""
        run_id = self.run_id.encode("utf-8")
        if len(run_id) > self.RUN_ID_RESERVED:
            raise ValueError(
                f"run_id of {len(run_id)} bytes does not fit the {self.RUN_ID_RESERVED}-byte space"
            )
        body = (
            Writer()
            .raw(self.DISCRIMINATOR)
            .u8(self.bump)
            .pubkey(self.main_authority)
            .pubkey(self.join_authority)
            .pubkey(self.coordinator_account)
            .bytes_vec(run_id)
            .getvalue()
        )
        return body.ljust(self.SIZE, b"\x00")
