"""Anchor 0.30's account checks, error codes and logs, for the emulated Psyche programs."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from psyche.chain.layout import Reader
from psyche.chain.programs import SYSTEM_PROGRAM_ID
from psyche.errors import AccountDecodeError
from psyche.localnet.programs.associated_token import create_pda_account
from psyche.localnet.programs.base import AccountRef, Context, InstructionError
from psyche.localnet.programs.system import TRANSFER

T = TypeVar("T")
Handler = Callable[[Context], None]

# Anchor's ErrorCode: number -> (name, message).
ANCHOR_ERRORS = {
    101: ("InstructionFallbackNotFound", "Fallback functions are not supported"),
    102: ("InstructionDidNotDeserialize", "The program could not deserialize the given instruction"),
    2000: ("ConstraintMut", "A mut constraint was violated"),
    2002: ("ConstraintSigner", "A signer constraint was violated"),
    2003: ("ConstraintRaw", "A raw constraint was violated"),
    2006: ("ConstraintSeeds", "A seeds constraint was violated"),
    2009: ("ConstraintAssociated", "An associated constraint was violated"),
    3000: ("AccountDiscriminatorAlreadySet", "The account discriminator was already set on this account"),
    3001: ("AccountDiscriminatorNotFound", "No 8 byte discriminator was found on the account"),
    3002: ("AccountDiscriminatorMismatch", "8 byte discriminator did not match what was expected"),
    3003: ("AccountDidNotDeserialize", "Failed to deserialize the account"),
    3005: ("AccountNotEnoughKeys", "Not enough account keys given to the instruction"),
    3007: ("AccountOwnedByWrongProgram", "The given account is owned by a different program than expected"),
    3008: ("InvalidProgramId", "Program ID was not as expected"),
    3009: ("InvalidProgramExecutable", "Program account is not executable"),
    3010: ("AccountNotSigner", "The given account did not sign"),
    3012: ("AccountNotInitialized", "The program expected this account to be already initialized"),
}
INSTRUCTION_DID_NOT_DESERIALIZE = 102
CONSTRAINT_MUT, CONSTRAINT_RAW, CONSTRAINT_SEEDS, CONSTRAINT_ASSOCIATED = 2000, 2003, 2006, 2009
DISCRIMINATOR_ALREADY_SET, DISCRIMINATOR_NOT_FOUND, DISCRIMINATOR_MISMATCH = 3000, 3001, 3002
DID_NOT_DESERIALIZE, NOT_ENOUGH_KEYS, WRONG_OWNER = 3003, 3005, 3007
INVALID_PROGRAM_ID, NOT_SIGNER, NOT_INITIALIZED = 3008, 3010, 3012


def anchor_error(ctx: Context, code: int, account: str | None = None) -> InstructionError:
    """Log Anchor's ``AnchorError ...`` line and return the Custom(code) error to raise."""
    name, message = ANCHOR_ERRORS[code]
    where = f"caused by account: {account}" if account else "occurred"
    ctx.log(f"AnchorError {where}. Error Code: {name}. Error Number: {code}. Error Message: {message}.")
    return InstructionError.custom_code(code)


def program_error(ctx: Context, code: int, name: str, message: str | None = None) -> InstructionError:
    """A custom ``#[error_code]`` error (6000 + i) with Anchor's log line."""
    ctx.log(
        f"AnchorError occurred. Error Code: {name}. Error Number: {code}. Error Message: {message or name}."
    )
    return InstructionError.custom_code(code)


def handler_for(ctx: Context, handlers: dict[bytes, tuple[str, Handler]]) -> Handler:
    """The handler for the instruction's 8-byte discriminator, after Anchor's ``Instruction: <Name>`` log
    line (an unknown discriminator → 101)."""
    handler = handlers.get(bytes(ctx.data[:8]))
    if handler is None:
        raise anchor_error(ctx, 101)
    label, fn = handler
    ctx.log(f"Instruction: {label}")
    return fn


def decode_args(ctx: Context, parse: Callable[[Reader], T]) -> T:
    """Borsh-decode the arguments after the 8-byte discriminator (short data → 102)."""
    try:
        return parse(Reader(ctx.data, "instruction", pos=8))
    except (AccountDecodeError, ValueError, struct.error) as exc:
        raise anchor_error(ctx, INSTRUCTION_DID_NOT_DESERIALIZE) from exc


class Accounts:
    """The ``#[derive(Accounts)]`` checks of one instruction, by field name, in declaration order."""

    def __init__(self, ctx: Context, names: Sequence[str]) -> None:
        if len(ctx.accounts) < len(names):
            raise anchor_error(ctx, NOT_ENOUGH_KEYS)
        self.ctx = ctx
        self.refs = {name: ctx.accounts[i] for i, name in enumerate(names)}

    def __getitem__(self, name: str) -> AccountRef:
        return self.refs[name]

    def key(self, name: str) -> Pubkey:
        """The address of the account named ``name``."""
        return self.refs[name].key

    def fail(self, code: int, name: str) -> InstructionError:
        """Anchor error ``code`` for account ``name``, logged like Anchor does (the caller raises it)."""
        return anchor_error(self.ctx, code, name)

    def signer(self, name: str) -> AccountRef:
        """``Signer``: the account; AccountNotSigner (3010) when it did not sign."""
        ref = self.refs[name]
        if not ref.is_signer:
            raise self.fail(NOT_SIGNER, name)
        return ref

    def mut(self, name: str) -> AccountRef:
        """``#[account(mut)]``: the account; ConstraintMut (2000) when it is not writable."""
        ref = self.refs[name]
        if not ref.is_writable:
            raise self.fail(CONSTRAINT_MUT, name)
        return ref

    def program(self, name: str, program_id: Pubkey) -> None:
        """``Program<T>``: InvalidProgramId (3008) unless the account is ``program_id``,
        InvalidProgramExecutable (3009) unless it is executable."""
        ref = self.refs[name]
        if ref.key != program_id:
            raise self.fail(INVALID_PROGRAM_ID, name)
        if not ref.account.executable:
            raise self.fail(3009, name)

    def require(self, ok: bool, name: str, code: int = CONSTRAINT_RAW) -> None:
        """A constraint on account ``name``: raise Anchor error ``code`` (default ConstraintRaw) unless
        ``ok``."""
        if not ok:
            raise self.fail(code, name)

    def load(self, name: str, owner: Pubkey, discriminator: bytes, decode: Callable[[bytes], T]) -> T:
        """``Account<T>`` / ``AccountLoader<T>``: initialized, owned by ``owner``, right discriminator
        (``b""`` for SPL accounts, which have none)."""
        account = self.refs[name].account
        if account.lamports == 0 and account.owner == SYSTEM_PROGRAM_ID:
            raise self.fail(NOT_INITIALIZED, name)
        if account.owner != owner:
            raise self.fail(WRONG_OWNER, name)
        if discriminator and len(account.data) < len(discriminator):
            raise self.fail(DISCRIMINATOR_NOT_FOUND, name)
        if discriminator and bytes(account.data[: len(discriminator)]) != discriminator:
            raise self.fail(DISCRIMINATOR_MISMATCH, name)
        try:
            return decode(bytes(account.data))
        except (AccountDecodeError, ValueError) as exc:
            raise self.fail(DID_NOT_DESERIALIZE, name) from exc

    def seeds(self, name: str, seeds: Sequence[bytes], bump: int | None = None) -> int:
        """``seeds = [...]`` (+ ``bump`` when stored): the address must be the PDA; returns the bump."""
        program_id = self.ctx.program_id
        if bump is None:
            expected, found = Pubkey.find_program_address(list(seeds), program_id)
        else:
            found = bump
            try:
                expected = Pubkey.create_program_address([*seeds, bytes([bump])], program_id)
            except Exception as exc:  # an on-curve result: no PDA for that bump
                raise self.fail(CONSTRAINT_SEEDS, name) from exc
        if expected != self.refs[name].key:
            raise self.fail(CONSTRAINT_SEEDS, name)
        return found

    def init(self, name: str, payer: str, seeds: Sequence[bytes], space: int) -> int:
        """``init`` of a PDA: check the seeds, then create it (paid by ``payer``); returns the bump."""
        self.mut(name)
        bump = self.seeds(name, seeds)
        create_pda_account(
            self.ctx, self.key(payer), self.key(name), space, self.ctx.program_id, [*seeds, bytes([bump])]
        )
        return bump

    def realloc(self, name: str, payer: str, new_size: int) -> None:
        """``realloc = n, realloc::payer, realloc::zero = true``: resize, keeping exactly rent-exempt."""
        ref = self.refs[name]
        account = ref.account
        required = self.ctx.rent_exempt_minimum(new_size)
        if required > account.lamports:
            data = struct.pack("<IQ", TRANSFER, required - account.lamports)
            metas = [AccountMeta(self.key(payer), True, True), AccountMeta(ref.key, False, True)]
            self.ctx.invoke(Instruction(SYSTEM_PROGRAM_ID, data, metas))
        elif account.lamports > required:
            self.refs[payer].account.lamports += account.lamports - required
            account.lamports = required
        old = len(account.data)
        if new_size > old:
            account.data.extend(bytes(new_size - old))
        else:
            del account.data[new_size:]

    def close(self, name: str, destination: str) -> None:
        """``close = destination``: move the lamports, hand the account back to System, empty it."""
        account = self.refs[name].account
        self.refs[destination].account.lamports += account.lamports
        account.lamports = 0
        account.owner = SYSTEM_PROGRAM_ID
        del account.data[:]
