"""The System program's create_account, assign, transfer and allocate (bincode data: u32 tag then fields)."""

from __future__ import annotations

import struct

from solders.pubkey import Pubkey

from psyche.chain.programs import SYSTEM_PROGRAM_ID
from psyche.localnet.programs.base import AccountRef, Context, InstructionError

MAX_PERMITTED_DATA_LENGTH = 10 * 1024 * 1024
# SystemError codes (Custom n).
ACCOUNT_ALREADY_IN_USE = 0
RESULT_WITH_NEGATIVE_LAMPORTS = 1
INVALID_ACCOUNT_DATA_LENGTH = 3

CREATE_ACCOUNT = 0
ASSIGN = 1
TRANSFER = 2
ALLOCATE = 8


def _address(ref: AccountRef) -> str:
    return f"Address {{ address: {ref.key}, base: None }}"


def _require_signer(ctx: Context, ref: AccountRef, what: str) -> None:
    if not ref.is_signer:
        ctx.log(f"{what}: account {_address(ref)} must sign")
        raise InstructionError("MissingRequiredSignature")


def _allocate(ctx: Context, ref: AccountRef, space: int) -> None:
    _require_signer(ctx, ref, "Allocate")
    account = ref.account
    if account.data or account.owner != SYSTEM_PROGRAM_ID:
        ctx.log(f"Allocate: account {_address(ref)} already in use")
        raise InstructionError.custom_code(ACCOUNT_ALREADY_IN_USE)
    if space > MAX_PERMITTED_DATA_LENGTH:
        ctx.log(f"Allocate: requested {space}, max allowed {MAX_PERMITTED_DATA_LENGTH}")
        raise InstructionError.custom_code(INVALID_ACCOUNT_DATA_LENGTH)
    account.data = bytearray(space)


def _assign(ctx: Context, ref: AccountRef, owner: Pubkey) -> None:
    if ref.account.owner == owner:
        return
    _require_signer(ctx, ref, "Assign")
    ref.account.owner = owner


def _transfer(ctx: Context, source: AccountRef, dest: AccountRef, lamports: int) -> None:
    if not source.is_signer:
        ctx.log(f"Transfer: `from` account {source.key} must sign")
        raise InstructionError("MissingRequiredSignature")
    if source.account.data:
        ctx.log("Transfer: `from` must not carry data")
        raise InstructionError("InvalidArgument")
    if lamports > source.account.lamports:
        ctx.log(f"Transfer: insufficient lamports {source.account.lamports}, need {lamports}")
        raise InstructionError.custom_code(RESULT_WITH_NEGATIVE_LAMPORTS)
    source.account.lamports -= lamports
    dest.account.lamports += lamports


class SystemProgram:
    """Native program ``111…1``; it owns every wallet and every account not yet assigned elsewhere."""

    program_id = SYSTEM_PROGRAM_ID
    native = True

    def process(self, ctx: Context) -> None:
        """Run the instruction named by its u32 tag (CreateAccount, Transfer, Assign, Allocate, ...)."""
        data = ctx.data
        if len(data) < 4:
            raise InstructionError("InvalidInstructionData")
        (tag,) = struct.unpack_from("<I", data)
        try:
            if tag == CREATE_ACCOUNT:
                lamports, space = struct.unpack_from("<QQ", data, 4)
                owner = Pubkey.from_bytes(data[20:52])
                source, new = ctx.account(0), ctx.account(1)
                if new.account.lamports > 0:
                    ctx.log(f"Create Account: account {_address(new)} already in use")
                    raise InstructionError.custom_code(ACCOUNT_ALREADY_IN_USE)
                _allocate(ctx, new, space)
                _assign(ctx, new, owner)
                _transfer(ctx, source, new, lamports)
            elif tag == ASSIGN:
                _assign(ctx, ctx.account(0), Pubkey.from_bytes(data[4:36]))
            elif tag == TRANSFER:
                (lamports,) = struct.unpack_from("<Q", data, 4)
                _transfer(ctx, ctx.account(0), ctx.account(1), lamports)
            elif tag == ALLOCATE:
                (space,) = struct.unpack_from("<Q", data, 4)
                _allocate(ctx, ctx.account(0), space)
            else:
                raise InstructionError("InvalidInstructionData")
        except (struct.error, ValueError) as exc:
            raise InstructionError("InvalidInstructionData") from exc
