"""Join authorization operations: create (and activate), read, set delegates, deactivate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from solders.pubkey import Pubkey

from psyche.errors import AccountNotFound, ConfigError
from psyche.manager.operations import ChainAccess

if TYPE_CHECKING:
    from solders.instruction import Instruction

    from psyche.chain.accounts.authorization import Authorization


@dataclass(frozen=True, slots=True)
class AuthorizationState:
    """An authorization as read after the operation, and the transactions it took (none: nothing sent)."""

    address: Pubkey
    authorization: Authorization
    lamports: int
    signatures: list[str]
    created: bool = False

    @property
    def signature(self) -> str | None:
        """The last transaction's signature, None when nothing was sent."""
        return self.signatures[-1] if self.signatures else None


def _read(chain: ChainAccess, address: Pubkey) -> tuple[Authorization, int] | None:
    from psyche.chain.accounts.authorization import Authorization

    info = chain.reader.get_account_info(address)
    if info is None or info.lamports == 0:
        return None
    return Authorization.decode(info.data), info.lamports


def _state(
    chain: ChainAccess, address: Pubkey, signatures: list[str], created: bool = False
) -> AuthorizationState:
    current = _read(chain, address)
    assert current is not None, "the authorization was just read or written"
    return AuthorizationState(address, current[0], current[1], signatures, created)


def create_authorization(chain: ChainAccess, grantee: Pubkey) -> AuthorizationState:
    """Authorize ``grantee`` (or anyone: the all-ones key) to join the wallet's runs.

    Creates the authorization when missing and activates it when inactive; sends nothing when it exists
    and is active.

    Raises:
        TransactionFailed: the transaction failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain import pda

    program = chain.programs.authorizer
    grantor = chain.sender.payer
    address = pda.authorization(grantor, grantee, program_id=program)
    existing = _read(chain, address)
    instructions = []
    if existing is None:
        instructions.append(ix.authorization_create(grantor, grantor, grantee, program_id=program))
    if existing is None or not existing[0].active:
        instructions.append(ix.authorization_grantor_update(grantor, address, True, program_id=program))
    signatures = [str(chain.sender.send(instructions).signature)] if instructions else []
    return _state(chain, address, signatures, created=existing is None)


def read_authorization(chain: ChainAccess, grantor: Pubkey, grantee: Pubkey) -> AuthorizationState:
    """The authorization ``grantor`` gave ``grantee``.

    Raises:
        AccountNotFound: there is none.
    """
    from psyche.chain import pda

    address = pda.authorization(grantor, grantee, program_id=chain.programs.authorizer)
    if _read(chain, address) is None:
        raise AccountNotFound(
            f"no authorization from {grantor} for grantee {grantee}; authorization", str(address)
        )
    return _state(chain, address, [])


def set_delegates(
    chain: ChainAccess, grantor: Pubkey, *, clear: bool, added: list[Pubkey]
) -> AuthorizationState:
    """As the grantee of ``grantor``'s authorization (the wallet), clear and/or add the keys that join for it.

    About 30 keys fit Solana's 1232-byte transaction: more go in further transactions, each appending (only
    the first clears).

    Raises:
        ConfigError: nothing to clear or add.
        AccountNotFound: ``grantor`` has not authorized the wallet.
        TransactionFailed: a transaction failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain import pda
    from psyche.chain.transactions import PACKET_DATA_SIZE

    if not clear and not added:
        raise ConfigError("nothing to do: pass --delegates-clear and/or --delegates-added <PUBKEY>...")
    program = chain.programs.authorizer
    grantee = chain.sender.payer
    address = pda.authorization(grantor, grantee, program_id=program)
    if _read(chain, address) is None:
        raise AccountNotFound(
            f"no authorization from {grantor} for your key {grantee} (ask the join authority to run "
            f"join-authorization-create --authorizer {grantee}); authorization",
            str(address),
        )

    def update(first: bool, keys: list[Pubkey]) -> Instruction:
        return ix.authorization_grantee_update(
            grantee,
            grantee,
            address,
            delegates_clear=clear and first,
            delegates_added=keys,
            program_id=program,
        )

    batches: list[list[Pubkey]] = [[]]
    for key in added:
        candidate = update(len(batches) == 1, [*batches[-1], key])
        if batches[-1] and chain.sender.size([candidate]) > PACKET_DATA_SIZE:
            batches.append([])
        batches[-1].append(key)
    signatures = [str(chain.sender.send([update(i == 0, keys)]).signature) for i, keys in enumerate(batches)]
    return _state(chain, address, signatures)


def deactivate_authorization(chain: ChainAccess, grantee: Pubkey) -> AuthorizationState:
    """Deactivate the wallet's authorization for ``grantee`` (the account stays; create re-activates it).

    Raises:
        AccountNotFound: there is none.
        TransactionFailed: the transaction failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain import pda

    program = chain.programs.authorizer
    grantor = chain.sender.payer
    address = pda.authorization(grantor, grantee, program_id=program)
    found = _read(chain, address)
    if found is None:
        raise AccountNotFound(
            f"no authorization from {grantor} for grantee {grantee}; authorization", str(address)
        )
    signatures = []
    if found[0].active:
        instruction = ix.authorization_grantor_update(grantor, address, False, program_id=program)
        signatures.append(str(chain.sender.send([instruction]).signature))
    return _state(chain, address, signatures)
