"""SPL Token: initialize_mint(2), initialize_account(2,3), mint_to, transfer(_checked), close_account."""

from __future__ import annotations

import struct
from dataclasses import replace

from solders.pubkey import Pubkey

from psyche.chain.accounts.token import AccountState, Mint, TokenAccount
from psyche.chain.programs import TOKEN_PROGRAM_ID
from psyche.errors import AccountDecodeError
from psyche.localnet.programs.base import AccountRef, Context, InstructionError

# TokenError codes (Custom n) and their log text.
_ERRORS = {
    0: "Lamport balance below rent-exempt threshold",
    1: "insufficient funds",
    2: "Invalid Mint",
    3: "Account not associated with this Mint",
    4: "owner does not match",
    6: "account or token already in use",
    9: "State is unititialized",
    11: "Non-native account can only be closed if its balance is zero",
    12: "Invalid instruction",
    14: "Operation overflowed",
    17: "Account is frozen",
    18: "The provided decimals value different from the Mint decimals",
}
NOT_RENT_EXEMPT, INSUFFICIENT_FUNDS, INVALID_MINT, MINT_MISMATCH, OWNER_MISMATCH = 0, 1, 2, 3, 4
ALREADY_IN_USE, UNINITIALIZED, NON_NATIVE_HAS_BALANCE, INVALID_INSTRUCTION, OVERFLOW = 6, 9, 11, 12, 14
ACCOUNT_FROZEN, DECIMALS_MISMATCH = 17, 18
U64_MAX = 2**64 - 1


def _fail(ctx: Context, code: int) -> InstructionError:
    ctx.log(f"Error: {_ERRORS.get(code, 'token error')}")
    return InstructionError.custom_code(code)


def _owned(ref: AccountRef) -> None:
    if ref.account.owner != TOKEN_PROGRAM_ID:
        raise InstructionError("IncorrectProgramId")


def load_mint(ctx: Context, ref: AccountRef) -> Mint:
    """The mint in ``ref``, as the token program loads it.

    Raises:
        InstructionError: not owned by the token program, not a mint, or uninitialized.
    """
    _owned(ref)
    if len(ref.account.data) != Mint.SIZE:
        raise _fail(ctx, INVALID_MINT)
    try:
        mint = Mint.decode(bytes(ref.account.data))
    except AccountDecodeError as exc:
        raise InstructionError("InvalidAccountData") from exc
    if not mint.is_initialized:
        raise _fail(ctx, UNINITIALIZED)
    return mint


def load_token_account(ctx: Context, ref: AccountRef) -> TokenAccount:
    """The token account in ``ref``, as the token program loads it.

    Raises:
        InstructionError: not owned by the token program, not a token account, uninitialized or frozen.
    """
    _owned(ref)
    if len(ref.account.data) != TokenAccount.SIZE:
        raise InstructionError("InvalidAccountData")
    try:
        account = TokenAccount.decode(bytes(ref.account.data))
    except AccountDecodeError as exc:
        raise InstructionError("InvalidAccountData") from exc
    if account.state == AccountState.UNINITIALIZED:
        raise _fail(ctx, UNINITIALIZED)
    if account.state == AccountState.FROZEN:
        raise _fail(ctx, ACCOUNT_FROZEN)
    return account


def _check_authority(ctx: Context, expected: Pubkey | None, ref: AccountRef) -> None:
    if expected is None or ref.key != expected:
        raise _fail(ctx, OWNER_MISMATCH)
    if not ref.is_signer:
        raise InstructionError("MissingRequiredSignature")


class TokenProgram:
    """``Tokenkeg…``: enough of SPL Token for collateral mints, ATAs and the treasurer's payouts."""

    program_id = TOKEN_PROGRAM_ID
    native = False

    def process(self, ctx: Context) -> None:
        """Run the instruction named by its first byte (the SPL Token tag); bad data is InvalidInstruction."""
        data = ctx.data
        if not data:
            raise _fail(ctx, INVALID_INSTRUCTION)
        tag = data[0]
        handler = _HANDLERS.get(tag)
        if handler is None:
            raise _fail(ctx, INVALID_INSTRUCTION)
        name, fn = handler
        ctx.log(f"Instruction: {name}")
        try:
            fn(ctx, data[1:])
        except (struct.error, ValueError) as exc:
            raise _fail(ctx, INVALID_INSTRUCTION) from exc


def _initialize_mint(ctx: Context, args: bytes) -> None:
    ref = ctx.account(0)
    _owned(ref)
    decimals = args[0]
    authority = Pubkey.from_bytes(args[1:33])
    freeze = Pubkey.from_bytes(args[34:66]) if len(args) > 33 and args[33] == 1 else None
    if len(ref.account.data) != Mint.SIZE:
        raise InstructionError("InvalidAccountData")
    if Mint.decode(bytes(ref.account.data)).is_initialized:
        raise _fail(ctx, ALREADY_IN_USE)
    if ref.account.lamports < ctx.rent_exempt_minimum(Mint.SIZE):
        raise _fail(ctx, NOT_RENT_EXEMPT)
    ref.account.data[:] = Mint(authority, 0, decimals, True, freeze).encode()


def _initialize_account(ctx: Context, account_ref: AccountRef, mint_ref: AccountRef, owner: Pubkey) -> None:
    _owned(account_ref)
    if len(account_ref.account.data) != TokenAccount.SIZE:
        raise InstructionError("InvalidAccountData")
    if TokenAccount.decode(bytes(account_ref.account.data)).state != AccountState.UNINITIALIZED:
        raise _fail(ctx, ALREADY_IN_USE)
    if account_ref.account.lamports < ctx.rent_exempt_minimum(TokenAccount.SIZE):
        raise _fail(ctx, NOT_RENT_EXEMPT)
    if mint_ref.account.owner != TOKEN_PROGRAM_ID or len(mint_ref.account.data) != Mint.SIZE:
        raise _fail(ctx, INVALID_MINT)
    if not Mint.decode(bytes(mint_ref.account.data)).is_initialized:
        raise _fail(ctx, INVALID_MINT)
    account_ref.account.data[:] = TokenAccount(mint=mint_ref.key, owner=owner, amount=0).encode()


def _initialize_account1(ctx: Context, args: bytes) -> None:
    _initialize_account(ctx, ctx.account(0), ctx.account(1), ctx.account(2).key)


def _initialize_account23(ctx: Context, args: bytes) -> None:
    _initialize_account(ctx, ctx.account(0), ctx.account(1), Pubkey.from_bytes(args[:32]))


def _move(
    ctx: Context, source_ref: AccountRef, dest_ref: AccountRef, owner_ref: AccountRef, amount: int
) -> tuple[TokenAccount, TokenAccount]:
    source = load_token_account(ctx, source_ref)
    dest = load_token_account(ctx, dest_ref)
    if source.mint != dest.mint:
        raise _fail(ctx, MINT_MISMATCH)
    if source.amount < amount:
        raise _fail(ctx, INSUFFICIENT_FUNDS)
    _check_authority(ctx, source.owner, owner_ref)
    if source_ref.key == dest_ref.key:
        return source, dest
    if dest.amount + amount > U64_MAX:
        raise _fail(ctx, OVERFLOW)
    source_ref.account.data[:] = replace(source, amount=source.amount - amount).encode()
    dest_ref.account.data[:] = replace(dest, amount=dest.amount + amount).encode()
    return source, dest


def _transfer(ctx: Context, args: bytes) -> None:
    (amount,) = struct.unpack_from("<Q", args)
    _move(ctx, ctx.account(0), ctx.account(1), ctx.account(2), amount)


def _transfer_checked(ctx: Context, args: bytes) -> None:
    amount, decimals = struct.unpack_from("<QB", args)
    mint_ref = ctx.account(1)
    source = load_token_account(ctx, ctx.account(0))
    if source.mint != mint_ref.key:
        raise _fail(ctx, MINT_MISMATCH)
    if load_mint(ctx, mint_ref).decimals != decimals:
        raise _fail(ctx, DECIMALS_MISMATCH)
    _move(ctx, ctx.account(0), ctx.account(2), ctx.account(3), amount)


def _mint_to(ctx: Context, args: bytes) -> None:
    (amount,) = struct.unpack_from("<Q", args)
    mint_ref, dest_ref, authority_ref = ctx.account(0), ctx.account(1), ctx.account(2)
    dest = load_token_account(ctx, dest_ref)
    if dest.mint != mint_ref.key:
        raise _fail(ctx, MINT_MISMATCH)
    mint = load_mint(ctx, mint_ref)
    _check_authority(ctx, mint.mint_authority, authority_ref)
    if mint.supply + amount > U64_MAX:
        raise _fail(ctx, OVERFLOW)
    mint_ref.account.data[:] = replace(mint, supply=mint.supply + amount).encode()
    dest_ref.account.data[:] = replace(dest, amount=dest.amount + amount).encode()


def _close_account(ctx: Context, args: bytes) -> None:
    account_ref, dest_ref, owner_ref = ctx.account(0), ctx.account(1), ctx.account(2)
    account = load_token_account(ctx, account_ref)
    if account.amount != 0:
        raise _fail(ctx, NON_NATIVE_HAS_BALANCE)
    _check_authority(ctx, account.close_authority or account.owner, owner_ref)
    dest_ref.account.lamports += account_ref.account.lamports
    account_ref.account.lamports = 0
    account_ref.account.data[:] = bytes(len(account_ref.account.data))


_HANDLERS = {
    0: ("InitializeMint", _initialize_mint),
    1: ("InitializeAccount", _initialize_account1),
    3: ("Transfer", _transfer),
    7: ("MintTo", _mint_to),
    9: ("CloseAccount", _close_account),
    12: ("TransferChecked", _transfer_checked),
    16: ("InitializeAccount2", _initialize_account23),
    18: ("InitializeAccount3", _initialize_account23),
    20: ("InitializeMint2", _initialize_mint),
}
