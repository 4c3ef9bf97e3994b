"""The local chain's state: accounts, slots, blockhashes, clock, processed transactions, persistence."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from psyche.localnet.records import Account, TxRecord
from psyche.localnet.store import MemoryStore, Store

LAMPORTS_PER_SOL = 1_000_000_000
LAMPORTS_PER_SIGNATURE = 5_000
# Solana's default rent: 3480 lamports per byte-year, exempt at 2 years, 128 bytes of account overhead.
RENT_LAMPORTS_PER_BYTE = 3_480 * 2
ACCOUNT_STORAGE_OVERHEAD = 128
# A blockhash is usable for 150 blocks after the one that produced it (MAX_PROCESSING_AGE).
MAX_PROCESSING_AGE = 150
# Slots of blockhashes kept (and persisted) so isBlockhashValid can answer false for recently expired ones.
BLOCKHASH_HISTORY = 300
SLOTS_PER_EPOCH = 432_000
FAUCET_LAMPORTS = 500_000_000 * LAMPORTS_PER_SOL
# A fixed, public faucet key: this chain is for local development only and anyone may airdrop anyway.
FAUCET = Keypair.from_seed(hashlib.sha256(b"psyche-localnet-faucet").digest())
NATIVE_LOADER_ID = Pubkey.from_string("NativeLoader1111111111111111111111111111111")
BPF_LOADER_ID = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")

CommitListener = Callable[[list[Pubkey], "TxRecord | None"], None]


def rent_exempt_minimum(size: int) -> int:
    """Lamports an account of ``size`` data bytes needs to be rent-exempt."""
    return (size + ACCOUNT_STORAGE_OVERHEAD) * RENT_LAMPORTS_PER_BYTE


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """What a new slot is: its number, its parent and its blockhash (for slot notifications)."""

    slot: int
    parent: int
    blockhash: Hash


class Ledger:
    """All state, kept in memory and mirrored to a :class:`Store`; single-threaded (the event loop)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Callable[[], float] = time.time,
        program_ids: tuple[Pubkey, ...] = (),
        native_program_ids: tuple[Pubkey, ...] = (),
    ) -> None:
        self.store: Store = store or MemoryStore()
        self._clock = clock
        self.accounts: dict[Pubkey, Account] = {}
        self._by_owner: dict[Pubkey, set[Pubkey]] = {}
        self.transactions: dict[Signature, TxRecord] = {}
        self._blockhashes: OrderedDict[Hash, int] = OrderedDict()
        self.listeners: list[CommitListener] = []
        meta = self.store.load_meta()
        self.slot = int(meta.get("slot", "0"))
        self.clock_offset = int(meta.get("clock_offset", "0"))
        self.transaction_count = int(meta.get("transaction_count", "0"))
        for key, account in self.store.load_accounts():
            self._put(Pubkey.from_bytes(key), account)
        for record in self.store.load_transactions():
            self.transactions[record.signature] = record
            self.slot = max(self.slot, record.slot)
        for slot, raw in self.store.load_blockhashes():
            self._blockhashes[Hash(raw)] = slot
            self.slot = max(self.slot, slot)
        self._genesis(program_ids, native_program_ids)
        # A restart opens a new slot so nothing committed before shares a slot with what comes next.
        self.advance_slot()

    # -- accounts -------------------------------------------------------------------------------------------

    def get(self, key: Pubkey) -> Account | None:
        """The account at ``key``, or None if it does not exist (the ledger's own object: do not mutate
        it)."""
        return self.accounts.get(key)

    def program_accounts(self, owner: Pubkey) -> Iterator[tuple[Pubkey, Account]]:
        """Accounts owned by ``owner``, sorted by address."""
        for key in sorted(self._by_owner.get(owner, ()), key=bytes):
            yield key, self.accounts[key]

    def _put(self, key: Pubkey, account: Account) -> None:
        old = self.accounts.get(key)
        if old is not None and old.owner != account.owner:
            self._by_owner[old.owner].discard(key)
        self.accounts[key] = account
        self._by_owner.setdefault(account.owner, set()).add(key)

    def _delete(self, key: Pubkey) -> None:
        old = self.accounts.pop(key, None)
        if old is not None:
            self._by_owner[old.owner].discard(key)

    def _genesis(self, program_ids: tuple[Pubkey, ...], native_ids: tuple[Pubkey, ...]) -> None:
        created: dict[Pubkey, Account | None] = {}
        for pid in (*native_ids, *program_ids):
            if pid not in self.accounts:
                loader = NATIVE_LOADER_ID if pid in native_ids else BPF_LOADER_ID
                created[pid] = Account(1, bytearray(b"program:" + bytes(pid)[:8]), loader, True)
        if FAUCET.pubkey() not in self.accounts:
            created[FAUCET.pubkey()] = Account(FAUCET_LAMPORTS)
        if created:
            self.commit(created, None)

    # -- slots, blockhashes, clock --------------------------------------------------------------------------

    @property
    def block_height(self) -> int:
        # No skipped slots here, so the height equals the slot.
        return self.slot

    @property
    def latest_blockhash(self) -> Hash:
        return next(reversed(self._blockhashes))

    @property
    def last_valid_block_height(self) -> int:
        return self.block_height + MAX_PROCESSING_AGE

    def unix_timestamp(self) -> int:
        """The chain clock: the injected clock plus what ``advance_clock`` added."""
        return int(self._clock()) + self.clock_offset

    def advance_clock(self, seconds: int) -> int:
        """Move the chain clock forward (tests and demos; only reachable through an opt-in RPC method)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.clock_offset += seconds
        self.store.commit((), None, {"clock_offset": str(self.clock_offset)})
        return self.unix_timestamp()

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        """True when ``blockhash`` was made at most MAX_PROCESSING_AGE slots ago."""
        made_at = self._blockhashes.get(blockhash)
        return made_at is not None and self.slot - made_at <= MAX_PROCESSING_AGE

    def advance_slot(self) -> SlotInfo:
        """Open the next slot with a fresh blockhash (the server calls this on its slot timer)."""
        parent = self.slot
        prev = bytes(self.latest_blockhash) if self._blockhashes else b"psyche-localnet-genesis"
        self.slot += 1
        blockhash = Hash(hashlib.sha256(prev + self.slot.to_bytes(8, "little")).digest())
        self._blockhashes[blockhash] = self.slot
        floor = self.slot - BLOCKHASH_HISTORY
        while self._blockhashes and next(iter(self._blockhashes.values())) < floor:
            self._blockhashes.popitem(last=False)
        self.store.commit((), None, {"slot": str(self.slot)}, (self.slot, bytes(blockhash)), floor)
        return SlotInfo(self.slot, parent, blockhash)

    # -- commits --------------------------------------------------------------------------------------------

    def commit(self, changes: dict[Pubkey, Account | None], record: TxRecord | None) -> list[Pubkey]:
        """Apply a transaction's account changes (zero lamports = deleted) and its record, durably."""
        persisted: list[tuple[bytes, Account | None]] = []
        changed: list[Pubkey] = []
        for key, account in changes.items():
            old = self.accounts.get(key)
            if account is None or account.lamports == 0:
                if old is None:
                    continue
                persisted.append((bytes(key), None))
            else:
                if old is not None and old.same_as(account):
                    continue
                persisted.append((bytes(key), account))
            changed.append(key)
        meta: dict[str, str] = {}
        if record is not None:
            self.transaction_count += 1
            meta["transaction_count"] = str(self.transaction_count)
        self.store.commit(persisted, record, meta)
        for raw_key, account in persisted:
            key = Pubkey.from_bytes(raw_key)
            if account is None:
                self._delete(key)
            else:
                self._put(key, account.copy())
        if record is not None:
            self.transactions[record.signature] = record
        for listener in list(self.listeners):
            listener(changed, record)
        return changed

    def close(self) -> None:
        """Close the store."""
        self.store.close()
