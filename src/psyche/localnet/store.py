"""Durable storage for the local ledger: SQLite in WAL mode, one SQLite transaction per chain transaction.

Why SQLite with WAL rather than a hand-written write-ahead log: it ships with Python, every commit is
atomic (a kill -9 at any instant leaves either the old or the new state, never a torn file), readers of the
file never see half a commit, and recovery on open is SQLite's job, not ours. ``synchronous=NORMAL`` keeps
commits fast; it can lose the last commits on power loss but never corrupts the database, and a process kill
loses nothing that was committed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from psyche.localnet.records import Account, TxRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    pubkey BLOB PRIMARY KEY, lamports INTEGER NOT NULL, owner BLOB NOT NULL,
    executable INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    signature BLOB PRIMARY KEY, slot INTEGER NOT NULL, record TEXT NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blockhashes (slot INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store(Protocol):
    """Where the ledger's state lives between restarts."""

    def load_accounts(self) -> Iterator[tuple[bytes, Account]]:
        """Every stored account, keyed by its address bytes."""

    def load_transactions(self) -> Iterator[TxRecord]:
        """Every stored transaction record."""

    def load_blockhashes(self) -> list[tuple[int, bytes]]:
        """The recent blockhashes as ``(slot, hash)``, oldest first."""

    def load_meta(self) -> dict[str, str]:
        """The ledger's counters (slot, clock offset, transaction count), as strings."""

    def commit(
        self,
        accounts: Iterable[tuple[bytes, Account | None]],
        tx: TxRecord | None,
        meta: dict[str, str],
        blockhash: tuple[int, bytes] | None = None,
        prune_blockhashes_below: int | None = None,
    ) -> None:
        """Apply one change atomically: account changes (None deletes), a transaction record, counters, a new
        blockhash, and dropping the blockhashes below a slot."""

    def close(self) -> None:
        """Release the storage."""


class MemoryStore:
    """No persistence: the ledger's in-memory maps are the only copy (the default without ``--ledger``)."""

    def load_accounts(self) -> Iterator[tuple[bytes, Account]]:
        return iter(())

    def load_transactions(self) -> Iterator[TxRecord]:
        return iter(())

    def load_blockhashes(self) -> list[tuple[int, bytes]]:
        return []

    def load_meta(self) -> dict[str, str]:
        return {}

    def commit(
        self,
        accounts: Iterable[tuple[bytes, Account | None]],
        tx: TxRecord | None,
        meta: dict[str, str],
        blockhash: tuple[int, bytes] | None = None,
        prune_blockhashes_below: int | None = None,
    ) -> None:
        return None

    def close(self) -> None:
        return None


class SqliteStore:
    """The ledger in ``<dir>/ledger.sqlite3``; ``reset`` deletes what was there."""

    FILENAME = "ledger.sqlite3"

    def __init__(self, directory: Path, *, reset: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / self.FILENAME
        if reset:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one chain tx is one SQLite tx.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def load_accounts(self) -> Iterator[tuple[bytes, Account]]:
        rows = self._db.execute("SELECT pubkey, lamports, owner, executable, data FROM accounts")
        for key, lamports, owner, executable, data in rows:
            yield bytes(key), Account.from_parts(lamports, bytes(owner), bool(executable), bytes(data))

    def load_transactions(self) -> Iterator[TxRecord]:
        for record, raw in self._db.execute("SELECT record, raw FROM transactions"):
            yield TxRecord.from_json(json.loads(record), bytes(raw))

    def load_blockhashes(self) -> list[tuple[int, bytes]]:
        rows = self._db.execute("SELECT slot, hash FROM blockhashes ORDER BY slot")
        return [(int(slot), bytes(h)) for slot, h in rows]

    def load_meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def commit(
        self,
        accounts: Iterable[tuple[bytes, Account | None]],
        tx: TxRecord | None,
        meta: dict[str, str],
        blockhash: tuple[int, bytes] | None = None,
        prune_blockhashes_below: int | None = None,
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for key, account in accounts:
                if account is None:
                    db.execute("DELETE FROM accounts WHERE pubkey = ?", (key,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?)",
                        (
                            key,
                            account.lamports,
                            bytes(account.owner),
                            int(account.executable),
                            bytes(account.data),
                        ),
                    )
            if tx is not None:
                db.execute(
                    "INSERT OR REPLACE INTO transactions VALUES (?, ?, ?, ?)",
                    (bytes(tx.signature), tx.slot, json.dumps(tx.to_json()), tx.raw),
                )
            if blockhash is not None:
                db.execute("INSERT OR REPLACE INTO blockhashes VALUES (?, ?)", blockhash)
            if prune_blockhashes_below is not None:
                db.execute("DELETE FROM blockhashes WHERE slot < ?", (prune_blockhashes_below,))
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
