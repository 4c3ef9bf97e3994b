"""Sign, send and confirm one transaction; failures carry the logs and the program error's name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from psyche.chain.program_errors import error_name
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, ProgramIds
from psyche.chain.rpc import RpcClient
from psyche.errors import TransactionFailed

# Solana's packet payload: the most a serialized transaction, signatures included, may take.
PACKET_DATA_SIZE = 1232

_FAILED_LINE = re.compile(r"Program (?P<program>\w+) failed: custom program error: 0x(?P<code>[0-9a-fA-F]+)")


@dataclass(frozen=True, slots=True)
class SentTransaction:
    """A confirmed transaction: its signature, slot and program logs."""

    signature: Signature
    slot: int
    logs: list[str]


def failing_program(logs: Sequence[str]) -> tuple[Pubkey, int] | None:
    """The program and custom code of the last ``Program X failed: custom program error: 0x..`` log line."""
    for line in reversed(logs):
        match = _FAILED_LINE.search(line)
        if match:
            try:
                return Pubkey.from_string(match["program"]), int(match["code"], 16)
            except ValueError:
                return None
    return None


def name_failure(error: TransactionFailed, programs: ProgramIds = DEFAULT_PROGRAM_IDS) -> TransactionFailed:
    """The same failure with the program error's name in its message (when the logs let us name it)."""
    found = failing_program(error.logs)
    code = error.program_error if error.program_error is not None else (found[1] if found else None)
    if code is None:
        return error
    name = error_name(found[0] if found else None, code, programs)
    if name is None or name in error.message:
        return error
    named = TransactionFailed(
        f"{error.message} [{name}]",
        signature=error.signature,
        logs=error.logs,
        program_error=code,
        hint=error.hint,
    )
    named.__cause__ = error
    return named


def _signed(
    instructions: Sequence[Instruction], payer: Keypair, signers: Sequence[Keypair], blockhash: Hash
) -> Transaction:
    message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    unique: dict[Pubkey, Keypair] = {payer.pubkey(): payer}
    for kp in signers:
        unique.setdefault(kp.pubkey(), kp)
    return Transaction(list(unique.values()), message, blockhash)


def transaction_size(
    instructions: Sequence[Instruction], payer: Keypair, signers: Sequence[Keypair] = ()
) -> int:
    """Bytes of the serialized transaction, signatures included (what Solana compares to 1232)."""
    return len(bytes(_signed(instructions, payer, signers, Hash.default())))


def pack(
    instructions: Sequence[Instruction], payer: Keypair, signers: Sequence[Keypair] = ()
) -> list[list[Instruction]]:
    """The instructions, in order, in as few transactions of at most PACKET_DATA_SIZE bytes as they fit.

    An instruction too large for a transaction of its own stays alone (build_transaction then refuses it).
    """
    batches: list[list[Instruction]] = []
    for instruction in instructions:
        if batches and transaction_size([*batches[-1], instruction], payer, signers) <= PACKET_DATA_SIZE:
            batches[-1].append(instruction)
        else:
            batches.append([instruction])
    return batches


def build_transaction(
    instructions: Sequence[Instruction], payer: Keypair, signers: Sequence[Keypair], blockhash: Hash
) -> Transaction:
    """A legacy transaction paid by ``payer`` and signed by it and every extra signer.

    Raises:
        TransactionFailed: the transaction is over PACKET_DATA_SIZE; every cluster would refuse it, so it is
            refused here, before anything is sent.
    """
    tx = _signed(instructions, payer, signers, blockhash)
    size = len(bytes(tx))
    if size > PACKET_DATA_SIZE:
        raise TransactionFailed(
            f"transaction too large: {size} bytes, Solana's limit is {PACKET_DATA_SIZE}; nothing was sent",
            hint="send fewer or shorter changes at once",
        )
    return tx


def send_and_confirm(
    rpc: RpcClient,
    instructions: Sequence[Instruction],
    payer: Keypair,
    *,
    signers: Sequence[Keypair] = (),
    programs: ProgramIds = DEFAULT_PROGRAM_IDS,
    timeout: float = 30.0,
) -> SentTransaction:
    """Send the instructions in one transaction and wait for ``confirmed``.

    Raises TransactionFailed (with logs, the custom code and its name) when preflight or execution fails.
    """
    blockhash, _ = rpc.get_latest_blockhash()
    tx = build_transaction(instructions, payer, signers, blockhash)
    try:
        signature = rpc.send_transaction(tx)
        slot = rpc.confirm_transaction(signature, timeout)
    except TransactionFailed as exc:
        raise name_failure(exc, programs) from exc
    record = rpc.get_transaction(signature)
    return SentTransaction(signature, slot, record.logs if record else [])
