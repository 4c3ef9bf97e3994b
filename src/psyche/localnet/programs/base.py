"""The emulated programs' interface, and Solana's InstructionError with its JSON and text forms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from solders.instruction import Instruction
from solders.pubkey import Pubkey

if TYPE_CHECKING:
    from psyche.localnet.records import Account

# Display strings of solana-program's InstructionError variants (what "Program X failed: ..." prints).
_MESSAGES = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "UnbalancedInstruction": "sum of account balances before and after instruction do not match",
    "ModifiedProgramId": "instruction illegally modified the program id of an account",
    "ExternalAccountLamportSpend": "instruction spent from the balance of an account it does not own",
    "ExternalAccountDataModified": "instruction modified data of an account it does not own",
    "ReadonlyLamportChange": "instruction changed the balance of a read-only account",
    "ReadonlyDataModified": "instruction modified data of a read-only account",
    "ExecutableModified": "instruction changed executable bit of an account",
    "AccountDataSizeChanged": "instruction changed the size of the account data",
    "NotEnoughAccountKeys": "insufficient account keys for instruction",
    "InvalidSeeds": "Provided seeds do not result in a valid address",
    "PrivilegeEscalation": "Cross-program invocation with unauthorized signer or writable account",
    "UnsupportedProgramId": "Unsupported program id",
    "InvalidRealloc": "Failed to reallocate account data",
    "CallDepth": "Cross-program invocation call depth too deep",
    "ReentrancyNotAllowed": "Cross-program invocation reentrancy not allowed for this instruction",
    "AccountNotRentExempt": "An account does not have enough lamports to be rent-exempt",
    "IllegalOwner": "Provided owner is not allowed",
    "ProgramFailedToComplete": "Program failed to complete",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
}


class InstructionError(Exception):
    """One instruction failed; ``kind`` is the Solana variant name, ``custom`` the code for ``Custom``."""

    def __init__(self, kind: str, custom: int | None = None) -> None:
        super().__init__(kind if custom is None else f"Custom({custom})")
        self.kind = kind
        self.custom = custom

    @classmethod
    def custom_code(cls, code: int) -> InstructionError:
        """A ``Custom(code)`` error: a program's own error number."""
        return cls("Custom", code)

    def to_json(self) -> object:
        """The JSON form inside ``{"InstructionError": [index, <this>]}``."""
        if self.custom is not None:
            return {"Custom": self.custom}
        return self.kind

    def describe(self) -> str:
        """Solana's Display text, e.g. ``custom program error: 0x1770``."""
        if self.custom is not None:
            return f"custom program error: {self.custom:#x}"
        return _MESSAGES.get(self.kind, self.kind)


@dataclass(slots=True)
class AccountRef:
    """One account of an instruction, with the privileges this invocation holds on it."""

    key: Pubkey
    is_signer: bool
    is_writable: bool
    account: Account


class Context(Protocol):
    """What a program sees while it runs one instruction (implemented by the executor)."""

    program_id: Pubkey
    accounts: list[AccountRef]
    data: bytes

    @property
    def unix_timestamp(self) -> int: ...

    @property
    def slot(self) -> int: ...

    def rent_exempt_minimum(self, size: int) -> int:
        """Lamports an account of ``size`` data bytes needs to be rent-exempt."""

    def log(self, message: str) -> None:
        """Append ``Program log: <message>``."""

    def invoke(self, instruction: Instruction, signer_seeds: Sequence[Sequence[bytes]] = ()) -> None:
        """A cross-program invocation; ``signer_seeds`` sign for PDAs of the caller."""

    def account(self, index: int) -> AccountRef:
        """The instruction's account at ``index``, or NotEnoughAccountKeys."""


class Program(Protocol):
    """An emulated on-chain program."""

    program_id: Pubkey
    # Native programs (System) do not print "consumed N of M compute units" lines.
    native: bool

    def process(self, ctx: Context) -> None:
        """Run one instruction on ``ctx.accounts``; InstructionError fails it, and the executor drops its
        changes."""


@dataclass(slots=True)
class ProgramRegistry:
    """The programs the ledger can execute, by id."""

    programs: dict[Pubkey, Program] = field(default_factory=dict)

    def add(self, program: Program) -> None:
        """Register ``program`` under its program id (replacing one already there)."""
        self.programs[program.program_id] = program

    def get(self, program_id: Pubkey) -> Program | None:
        """The program with ``program_id``, or None."""
        return self.programs.get(program_id)
