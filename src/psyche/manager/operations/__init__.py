"""The run-manager's chain operations as plain functions: read the chain, decide, send, return a result.

Each operation takes a ``ChainReader`` (RpcClient, or a fake in unit tests), a ``Sender`` (the commands'
reporting TransactionSender, or a recording fake), the program ids and typed arguments, and returns a
frozen result dataclass. Which instruction, which accounts and when to refuse are decided here; the click
commands in ``manager/commands/`` only parse options, call one operation and print its result (text or
``--json``). Modules: ``runs`` (create, close, update-config, pause), ``admin`` (rates, checkpoint, tick,
top-up), ``participant`` (can-join, claim, list-runs, user dump), ``authorization`` (join authorizations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from psyche.chain.queries import AccountReader

if TYPE_CHECKING:
    from solders.instruction import Instruction
    from solders.keypair import Keypair
    from solders.pubkey import Pubkey

    from psyche.chain.programs import ProgramIds
    from psyche.chain.transactions import SentTransaction


class ChainReader(AccountReader, Protocol):
    """The reads the operations make: accounts (AccountReader), balances and rent."""

    def get_balance(self, pubkey: Pubkey) -> int:
        """Lamports held by ``pubkey`` (0 for an account that does not exist)."""

    def get_minimum_balance_for_rent_exemption(self, size: int) -> int:
        """Lamports an account of ``size`` bytes needs to be rent-exempt."""


class Sender(Protocol):
    """Sends transactions paid by one wallet (psyche.chain.transactions.TransactionSender's interface)."""

    @property
    def payer(self) -> Pubkey:
        """The paying (and first signing) wallet's public key."""
        ...

    def size(self, instructions: Sequence[Instruction], signers: Sequence[Keypair] = ()) -> int:
        """Bytes of the signed transaction these instructions would make."""
        ...

    def send(
        self, instructions: Sequence[Instruction], *, signers: Sequence[Keypair] = ()
    ) -> SentTransaction:
        """Send one transaction and wait for it to be confirmed (TransactionFailed otherwise)."""
        ...


class ChainAccess(Protocol):
    """What an operation works with: the program ids, a chain reader and a sender.

    Properties, so each is resolved when first used: an operation checks its arguments before touching
    the chain, and one that sends nothing never loads the wallet (the commands' Session resolves them
    from the App's settings, RPC pool and wallet; unit tests pass a plain dataclass of fakes).
    """

    @property
    def programs(self) -> ProgramIds:
        """The coordinator, authorizer and treasurer program ids."""
        ...

    @property
    def reader(self) -> ChainReader:
        """Reads accounts."""
        ...

    @property
    def sender(self) -> Sender:
        """Sends transactions paid by the wallet."""
        ...
