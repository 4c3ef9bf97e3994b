"""Associated Token Account program: create and create_idempotent, through CPIs to System and SPL Token."""

from __future__ import annotations

import struct

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from psyche.chain.accounts.token import TokenAccount
from psyche.chain.programs import ASSOCIATED_TOKEN_PROGRAM_ID, SYSTEM_PROGRAM_ID, TOKEN_PROGRAM_ID
from psyche.localnet.programs.base import Context, InstructionError
from psyche.localnet.programs.system import ALLOCATE, ASSIGN, CREATE_ACCOUNT, TRANSFER

INVALID_OWNER = 0  # AssociatedTokenAccountError::InvalidOwner


def _system_ix(data: bytes, metas: list[AccountMeta]) -> Instruction:
    return Instruction(SYSTEM_PROGRAM_ID, data, metas)


def create_pda_account(
    ctx: Context, payer: Pubkey, address: Pubkey, space: int, owner: Pubkey, seeds: list[bytes]
) -> None:
    """What Anchor's ``init`` and the ATA program do: create (or top up, allocate and assign) a PDA by CPI."""
    account = next(ref.account for ref in ctx.accounts if ref.key == address)
    required = ctx.rent_exempt_minimum(space)
    if account.lamports == 0:
        data = struct.pack("<IQQ", CREATE_ACCOUNT, required, space) + bytes(owner)
        metas = [AccountMeta(payer, True, True), AccountMeta(address, True, True)]
        ctx.invoke(_system_ix(data, metas), [seeds])
        return
    if required > account.lamports:
        data = struct.pack("<IQ", TRANSFER, required - account.lamports)
        ctx.invoke(_system_ix(data, [AccountMeta(payer, True, True), AccountMeta(address, False, True)]))
    me = [AccountMeta(address, True, True)]
    ctx.invoke(_system_ix(struct.pack("<IQ", ALLOCATE, space), me), [seeds])
    ctx.invoke(_system_ix(struct.pack("<I", ASSIGN) + bytes(owner), me), [seeds])


class AssociatedTokenProgram:
    """``ATokenGP…``: the deterministic token account of (wallet, mint)."""

    program_id = ASSOCIATED_TOKEN_PROGRAM_ID
    native = False

    def process(self, ctx: Context) -> None:
        """Create (or, with data ``[1]``, create idempotently) the associated token account."""
        data = ctx.data
        if len(data) > 1 or (data and data[0] > 1):
            raise InstructionError("InvalidInstructionData")
        idempotent = bool(data) and data[0] == 1
        payer, ata, wallet, mint = ctx.account(0), ctx.account(1), ctx.account(2), ctx.account(3)
        token_program = ctx.account(5).key
        seeds = [bytes(wallet.key), bytes(token_program), bytes(mint.key)]
        expected, bump = Pubkey.find_program_address(seeds, self.program_id)
        if idempotent:
            ctx.log("CreateIdempotent")
            if ata.account.owner == TOKEN_PROGRAM_ID and len(ata.account.data) == TokenAccount.SIZE:
                existing = TokenAccount.decode(bytes(ata.account.data))
                if existing.owner != wallet.key:
                    ctx.log("Error: Associated token account owner does not match address derivation")
                    raise InstructionError.custom_code(INVALID_OWNER)
                if ata.key != expected:
                    ctx.log("Error: Associated address does not match seed derivation")
                    raise InstructionError("InvalidSeeds")
                return
        else:
            ctx.log("Create")
        if ata.key != expected:
            ctx.log("Error: Associated address does not match seed derivation")
            raise InstructionError("InvalidSeeds")
        if token_program != TOKEN_PROGRAM_ID or mint.account.owner != TOKEN_PROGRAM_ID:
            raise InstructionError("IncorrectProgramId")
        if ata.account.owner != SYSTEM_PROGRAM_ID or ata.account.data:
            # What System's create_account reports for an address that is taken.
            ctx.log(f"Create Account: account Address {{ address: {ata.key}, base: None }} already in use")
            raise InstructionError.custom_code(0)
        create_pda_account(
            ctx, payer.key, ata.key, TokenAccount.SIZE, TOKEN_PROGRAM_ID, [*seeds, bytes([bump])]
        )
        ctx.log("Initialize the associated token account")
        init = Instruction(
            TOKEN_PROGRAM_ID,
            bytes([18]) + bytes(wallet.key),
            [AccountMeta(ata.key, False, True), AccountMeta(mint.key, False, False)],
        )
        ctx.invoke(init)
