"""Builders for Solana's own programs that the CLI needs: System, SPL Token and Associated Token."""

from __future__ import annotations

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.instructions._common import build, readonly, signer, writable
from psyche.chain.layout import Writer
from psyche.chain.programs import ASSOCIATED_TOKEN_PROGRAM_ID, SYSTEM_PROGRAM_ID, TOKEN_PROGRAM_ID

# System program instructions are a u32 LE tag (bincode enum) followed by the fields.
_SYSTEM_CREATE_ACCOUNT = 0
_SYSTEM_TRANSFER = 2
# SPL Token instructions are a u8 tag followed by the fields.
_TOKEN_TRANSFER = 3
_TOKEN_TRANSFER_CHECKED = 12
# Associated Token: empty data (legacy) means Create; [1] means CreateIdempotent.
_ATA_CREATE_IDEMPOTENT = 1


def system_create_account(
    payer: Pubkey, new_account: Pubkey, lamports: int, space: int, owner: Pubkey
) -> Instruction:
    """Create ``new_account`` (it must sign) with ``space`` bytes owned by ``owner``, paid by ``payer``."""
    data = Writer().u32(_SYSTEM_CREATE_ACCOUNT).u64(lamports).u64(space).pubkey(owner).getvalue()
    return build(SYSTEM_PROGRAM_ID, data, [signer(payer, writable=True), signer(new_account, writable=True)])


def system_transfer(source: Pubkey, destination: Pubkey, lamports: int) -> Instruction:
    """Move ``lamports`` from ``source`` (signer) to ``destination``."""
    data = Writer().u32(_SYSTEM_TRANSFER).u64(lamports).getvalue()
    return build(SYSTEM_PROGRAM_ID, data, [signer(source, writable=True), writable(destination)])


def token_transfer(
    source: Pubkey, destination: Pubkey, owner: Pubkey, amount: int, *, program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """SPL ``Transfer`` of ``amount`` base units between token accounts, signed by the source's owner."""
    data = Writer().u8(_TOKEN_TRANSFER).u64(amount).getvalue()
    return build(program_id, data, [writable(source), writable(destination), signer(owner)])


def token_transfer_checked(
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    owner: Pubkey,
    amount: int,
    decimals: int,
    *,
    program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """SPL ``TransferChecked``: like transfer, but the program also checks the mint and its decimals."""
    data = Writer().u8(_TOKEN_TRANSFER_CHECKED).u64(amount).u8(decimals).getvalue()
    return build(program_id, data, [writable(source), readonly(mint), writable(destination), signer(owner)])


def _create_ata(
    data: bytes, payer: Pubkey, owner: Pubkey, mint: Pubkey, token_program_id: Pubkey, program_id: Pubkey
) -> Instruction:
    address = pda.associated_token_account(
        owner, mint, token_program_id=token_program_id, program_id=program_id
    )
    return build(
        program_id,
        data,
        [
            signer(payer, writable=True),
            writable(address),
            readonly(owner),
            readonly(mint),
            readonly(SYSTEM_PROGRAM_ID),
            readonly(token_program_id),
        ],
    )


def create_associated_token_account(
    payer: Pubkey,
    owner: Pubkey,
    mint: Pubkey,
    *,
    token_program_id: Pubkey = TOKEN_PROGRAM_ID,
    program_id: Pubkey = ASSOCIATED_TOKEN_PROGRAM_ID,
) -> Instruction:
    """Create ``owner``'s associated token account for ``mint`` (fails if it exists)."""
    return _create_ata(b"", payer, owner, mint, token_program_id, program_id)


def create_associated_token_account_idempotent(
    payer: Pubkey,
    owner: Pubkey,
    mint: Pubkey,
    *,
    token_program_id: Pubkey = TOKEN_PROGRAM_ID,
    program_id: Pubkey = ASSOCIATED_TOKEN_PROGRAM_ID,
) -> Instruction:
    """Create ``owner``'s associated token account for ``mint`` unless it already exists."""
    return _create_ata(bytes([_ATA_CREATE_IDEMPOTENT]), payer, owner, mint, token_program_id, program_id)
