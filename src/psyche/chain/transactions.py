"""The one way this code sends a transaction: fresh blockhash, sign, send, confirm, name the program error.

``TransactionSender`` is used by the run-manager's commands (through a reporting wrapper), the client's
chain actions (``send_and_confirm``) and the local chain's seeding (``localnet/world.py``). Its clock and
sleep are injected, so the wait for a fresh blockhash is tested on a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from psyche.chain.program_errors import name_failure
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, ProgramIds
from psyche.chain.rpc import TransactionRecord
from psyche.errors import TransactionFailed

# Solana's packet payload: the most a serialized transaction, signatures included, may take.
PACKET_DATA_SIZE = 1232


@dataclass(frozen=True, slots=True)
class SentTransaction:
    """A confirmed transaction: its signature, slot, program logs and the blockhash it was signed with."""

    signature: Signature
    slot: int
    logs: list[str]
    blockhash: Hash


class SendingRpc(Protocol):
    """The RPC calls sending needs (RpcClient has them; unit tests pass a scripted fake)."""

    def get_latest_blockhash(self) -> tuple[Hash, int]:
        """The latest blockhash and the last block height at which it is valid."""

    def send_transaction(self, tx: Transaction) -> Signature:
        """Submit a signed transaction (after the node's preflight); its signature."""

    def confirm_transaction(
        self, signature: Signature, timeout: float = ..., *, poll_interval: float = ...
    ) -> int:
        """Wait until ``signature`` is confirmed; the slot it landed in (TransactionFailed if it failed)."""

    def get_transaction(self, signature: Signature) -> TransactionRecord | None:
        """The landed transaction's status and logs, or None while the node does not know it."""


# How many sent signatures a sender remembers to refuse resending one (see TransactionSender.send).
_REMEMBERED = 1024


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
    instructions: Sequence[Instruction], size: Callable[[Sequence[Instruction]], int]
) -> list[list[Instruction]]:
    """The instructions, in order, in as few transactions of at most PACKET_DATA_SIZE bytes as they fit.

    ``size`` measures a candidate transaction (TransactionSender.size, or transaction_size with a payer).
    An instruction too large for a transaction of its own stays alone (build_transaction then refuses it).
    """
    batches: list[list[Instruction]] = []
    for instruction in instructions:
        if batches and size([*batches[-1], instruction]) <= PACKET_DATA_SIZE:
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


class TransactionSender:
    """Sends instructions as one transaction paid (and signed) by ``payer`` and waits for ``confirmed``.

    A transaction identical to one this sender already sent (the same instructions under the same
    blockhash, e.g. a second tick) would be refused by the node as already processed, so ``send`` first
    waits, polling every ``blockhash_poll`` seconds for at most ``blockhash_wait``, for a fresh blockhash.
    """

    def __init__(
        self,
        rpc: SendingRpc,
        payer: Keypair,
        programs: ProgramIds = DEFAULT_PROGRAM_IDS,
        *,
        confirm_timeout: float = 30.0,
        confirm_poll: float = 0.5,
        blockhash_poll: float = 0.05,
        blockhash_wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpc = rpc
        self.keypair = payer
        self.programs = programs
        self._confirm_timeout = confirm_timeout
        self._confirm_poll = confirm_poll
        self._blockhash_poll = blockhash_poll
        self._blockhash_wait = blockhash_wait
        self._sleep = sleep
        self._monotonic = monotonic
        self._sent: dict[Signature, None] = {}  # insertion-ordered: the oldest is forgotten first

    @property
    def payer(self) -> Pubkey:
        """The fee payer's public key (the first signer of every transaction)."""
        return self.keypair.pubkey()

    def size(self, instructions: Sequence[Instruction], signers: Sequence[Keypair] = ()) -> int:
        """Bytes of these instructions as one of this sender's transactions (Solana's limit: 1232)."""
        return transaction_size(instructions, self.keypair, signers)

    def _fresh(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair]
    ) -> tuple[Transaction, Hash]:
        deadline = self._monotonic() + self._blockhash_wait
        while True:
            blockhash, _ = self.rpc.get_latest_blockhash()
            tx = build_transaction(instructions, self.keypair, signers, blockhash)
            if tx.signatures[0] not in self._sent:
                return tx, blockhash
            if self._monotonic() >= deadline:
                raise TransactionFailed(
                    f"the chain produced no new blockhash for {self._blockhash_wait:g} s; "
                    "the same transaction under the same blockhash would be a duplicate, so nothing was sent"
                )
            self._sleep(self._blockhash_poll)

    def send(
        self, instructions: Sequence[Instruction], *, signers: Sequence[Keypair] = ()
    ) -> SentTransaction:
        """Sign with the payer and ``signers``, send (with preflight), wait for ``confirmed``.

        Raises:
            TransactionFailed: too large (nothing sent), no fresh blockhash in time, preflight or execution
                failed (with the logs, the custom code and its name), or not confirmed in time.
        """
        tx, blockhash = self._fresh(instructions, signers)
        try:
            signature = self.rpc.send_transaction(tx)
            self._remember(signature)
            slot = self.rpc.confirm_transaction(
                signature, self._confirm_timeout, poll_interval=self._confirm_poll
            )
        except TransactionFailed as exc:
            raise name_failure(exc, self.programs) from exc
        record = self.rpc.get_transaction(signature)
        return SentTransaction(signature, slot, record.logs if record else [], blockhash)

    def _remember(self, signature: Signature) -> None:
        self._sent[signature] = None
        if len(self._sent) > _REMEMBERED:
            del self._sent[next(iter(self._sent))]


def send_and_confirm(
    rpc: SendingRpc,
    instructions: Sequence[Instruction],
    payer: Keypair,
    *,
    signers: Sequence[Keypair] = (),
    programs: ProgramIds = DEFAULT_PROGRAM_IDS,
    timeout: float = 30.0,
) -> SentTransaction:
    """One transaction through a new TransactionSender (the client's chain actions, test helpers).

    Raises:
        TransactionFailed: as TransactionSender.send.
    """
    return TransactionSender(rpc, payer, programs, confirm_timeout=timeout).send(
        instructions, signers=signers
    )
