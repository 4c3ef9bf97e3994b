"""The local ledger's value types: an account (lamports, owner, data, executable), a processed transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature

from psyche.chain.programs import SYSTEM_PROGRAM_ID


@dataclass(slots=True)
class Account:
    """A mutable account; the executor works on copies and the ledger swaps them in on commit."""

    lamports: int = 0
    data: bytearray = field(default_factory=bytearray)
    owner: Pubkey = SYSTEM_PROGRAM_ID
    executable: bool = False

    @classmethod
    def from_parts(cls, lamports: int, owner: bytes, executable: bool, data: bytes) -> Account:
        """An account from its stored columns (the SQLite row)."""
        return cls(lamports, bytearray(data), Pubkey.from_bytes(owner), executable)

    def copy(self) -> Account:
        """A deep copy (the data too), for the executor to change."""
        return Account(self.lamports, bytearray(self.data), self.owner, self.executable)

    def same_as(self, other: Account) -> bool:
        """True when every field matches (a commit skips an unchanged account)."""
        return (
            self.lamports == other.lamports
            and self.owner == other.owner
            and self.executable == other.executable
            and self.data == other.data
        )


@dataclass(slots=True)
class TxRecord:
    """A transaction that landed (or failed): what getSignatureStatuses and getTransaction report."""

    signature: Signature
    slot: int
    block_time: int
    err: Any  # the TransactionError JSON, or None
    logs: list[str]
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    units: int
    raw: bytes  # the wire transaction as received

    def to_json(self) -> dict[str, Any]:
        """The record without ``raw``, as the store keeps it (``raw`` has its own column)."""
        return {
            "signature": str(self.signature),
            "slot": self.slot,
            "block_time": self.block_time,
            "err": self.err,
            "logs": self.logs,
            "fee": self.fee,
            "pre_balances": self.pre_balances,
            "post_balances": self.post_balances,
            "units": self.units,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], raw: bytes) -> TxRecord:
        """The record :meth:`to_json` stored, with its wire bytes."""
        return cls(
            signature=Signature.from_string(obj["signature"]),
            slot=int(obj["slot"]),
            block_time=int(obj["block_time"]),
            err=obj["err"],
            logs=list(obj["logs"]),
            fee=int(obj["fee"]),
            pre_balances=list(obj["pre_balances"]),
            post_balances=list(obj["post_balances"]),
            units=int(obj["units"]),
            raw=raw,
        )
