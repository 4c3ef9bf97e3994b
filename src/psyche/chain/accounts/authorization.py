"""The authorizer's ``Authorization`` account (Borsh, 90 + scope + 32·delegates bytes) and its check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from solders.pubkey import Pubkey

from psyche.chain.anchor import account_discriminator, check_account_discriminator
from psyche.chain.layout import Reader, Writer
from psyche.chain.programs import PERMISSIONLESS_GRANTEE


def _pubkey(r: Reader) -> Pubkey:
    return r.pubkey()


@dataclass(frozen=True, slots=True)
class Authorization:
    """A grantor's permission for a grantee (or anyone) to act in ``scope``, optionally through delegates."""

    DISCRIMINATOR: ClassVar[bytes] = account_discriminator("Authorization")
    BASE_SIZE: ClassVar[int] = 90
    WHAT: ClassVar[str] = "authorization account"

    bump: int
    grantor: Pubkey
    grantee: Pubkey
    scope: bytes
    active: bool
    delegates: tuple[Pubkey, ...]
    grantor_update_unix_timestamp: int

    @staticmethod
    def size_for(scope_len: int, delegates: int) -> int:
        """The exact account size the program allocates (and reallocates on grantee updates)."""
        return Authorization.BASE_SIZE + scope_len + 32 * delegates

    @property
    def size(self) -> int:
        return self.size_for(len(self.scope), len(self.delegates))

    @classmethod
    def decode(cls, data: bytes) -> Authorization:
        """Decode account data; trailing bytes are ignored as Anchor's ``try_deserialize`` does."""
        check_account_discriminator(data, cls.DISCRIMINATOR, cls.WHAT)
        r = Reader(data, cls.WHAT, pos=len(cls.DISCRIMINATOR))
        return cls(
            bump=r.u8(),
            grantor=r.pubkey(),
            grantee=r.pubkey(),
            scope=r.bytes_vec(),
            active=r.boolean(),
            delegates=tuple(r.vec(_pubkey, item_size=32)),
            grantor_update_unix_timestamp=r.i64(),
        )

    def encode(self) -> bytes:
        """Exactly ``90 + L + 32·N`` bytes, as the program allocates them."""
        return (
            Writer()
            .raw(self.DISCRIMINATOR)
            .u8(self.bump)
            .pubkey(self.grantor)
            .pubkey(self.grantee)
            .bytes_vec(bytes(self.scope))
            .boolean(self.active)
            .vec(self.delegates, Writer.pubkey)
            .i64(self.grantor_update_unix_timestamp)
            .getvalue()
        )

    def is_valid_for(self, grantor: Pubkey, grantee: Pubkey, scope: bytes) -> bool:
        """True iff active, granted by ``grantor`` for exactly ``scope``, and usable by ``grantee``.

        ``grantee`` is the key trying to act (e.g. the joining user): it qualifies when the stored grantee is
        the all-zero key ("anyone"), equals it, or lists it as a delegate.
        """
        return (
            self.active
            and self.grantor == grantor
            and bytes(self.scope) == bytes(scope)
            and (self.grantee in (PERMISSIONLESS_GRANTEE, grantee) or grantee in self.delegates)
        )
