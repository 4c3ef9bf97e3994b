"""Solana's per-transaction limits: encoded size, duplicate keys, the compute budget and its fee."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from solders.message import Message, MessageV0, MessageV1
from solders.pubkey import Pubkey

from psyche.localnet.programs.base import Context, InstructionError

AnyMessage = Message | MessageV0 | MessageV1

# The longest base58/base64 text of a 1232-byte transaction (agave rpc.rs "golden" values).
MAX_BASE58_SIZE = 1683
MAX_BASE64_SIZE = 1644

COMPUTE_BUDGET_PROGRAM_ID = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT = 200_000
MAX_COMPUTE_UNIT_LIMIT = 1_400_000
MICRO_LAMPORTS_PER_LAMPORT = 1_000_000

# ComputeBudgetInstruction tags (borsh enum index) and the size of their argument.
_REQUEST_HEAP_FRAME, _SET_UNIT_LIMIT, _SET_UNIT_PRICE, _SET_LOADED_DATA_LIMIT = 1, 2, 3, 4
_ARG_FORMAT = {
    _REQUEST_HEAP_FRAME: "<I",
    _SET_UNIT_LIMIT: "<I",
    _SET_UNIT_PRICE: "<Q",
    _SET_LOADED_DATA_LIMIT: "<I",
}


@dataclass(frozen=True, slots=True)
class ComputeBudget:
    """The transaction's compute unit limit and price (micro-lamports per unit)."""

    unit_limit: int
    unit_price: int = 0

    @property
    def prioritization_fee(self) -> int:
        """Lamports on top of the signature fee: ``ceil(price * limit / 1e6)``."""
        return -(-self.unit_price * self.unit_limit // MICRO_LAMPORTS_PER_LAMPORT)


class BudgetError(Exception):
    """A compute budget instruction Solana refuses before execution; ``err`` is the TransactionError JSON."""

    def __init__(self, err: Any) -> None:
        super().__init__(str(err))
        self.err = err


def compute_budget(message: AnyMessage) -> ComputeBudget:
    """The budget the message asks for, as agave's ``process_compute_budget_instructions`` computes it.

    Without ``SetComputeUnitLimit``: 200 000 units per instruction that is not a ComputeBudget one, at most
    1 400 000; with it, the requested value capped at 1 400 000.

    Raises:
        BudgetError: ``{"InstructionError": [i, "InvalidInstructionData"]}`` for undecodable data,
            ``{"DuplicateInstruction": i}`` for a second instruction of the same kind.
    """
    keys = list(message.account_keys)
    seen: dict[int, int] = {}
    others = 0
    for index, ix in enumerate(message.instructions):
        if keys[ix.program_id_index] != COMPUTE_BUDGET_PROGRAM_ID:
            others += 1
            continue
        data = bytes(ix.data)
        fmt = _ARG_FORMAT.get(data[0]) if data else None
        if fmt is None or len(data) != 1 + struct.calcsize(fmt):
            raise BudgetError({"InstructionError": [index, "InvalidInstructionData"]})
        if data[0] in seen:
            raise BudgetError({"DuplicateInstruction": index})
        (seen[data[0]],) = struct.unpack_from(fmt, data, 1)
    default = min(DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT * others, MAX_COMPUTE_UNIT_LIMIT)
    limit = min(seen.get(_SET_UNIT_LIMIT, default), MAX_COMPUTE_UNIT_LIMIT)
    return ComputeBudget(limit, seen.get(_SET_UNIT_PRICE, 0))


def duplicate_key(message: AnyMessage) -> bool:
    """True when the message lists one account twice (Solana: ``AccountLoadedTwice`` when it locks them)."""
    keys = list(message.account_keys)
    return len(set(keys)) != len(keys)


class ComputeBudgetProgram:
    """The native ``ComputeBudget111…1`` program: its instructions are read before execution; a no-op."""

    program_id = COMPUTE_BUDGET_PROGRAM_ID
    native = True

    def process(self, ctx: Context) -> None:
        """Check the instruction decodes; the limits were already applied by :func:`compute_budget`."""
        if not ctx.data:
            raise InstructionError("InvalidInstructionData")
