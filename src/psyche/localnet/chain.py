"""Assembles a local chain: the ledger (in memory or on disk), the registered programs and the executor."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from psyche.chain.programs import SYSTEM_PROGRAM_ID
from psyche.localnet.executor import Executor
from psyche.localnet.ledger import Ledger
from psyche.localnet.programs import default_programs
from psyche.localnet.programs.base import ProgramRegistry
from psyche.localnet.store import MemoryStore, SqliteStore, Store


class Chain:
    """The ledger plus what executes transactions on it; the server and the tests drive this."""

    def __init__(self, store: Store | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = ProgramRegistry()
        for program in default_programs():
            self.registry.add(program)
        ids = tuple(pid for pid in self.registry.programs if pid != SYSTEM_PROGRAM_ID)
        self.ledger = Ledger(
            store or MemoryStore(), clock=clock, program_ids=ids, native_program_ids=(SYSTEM_PROGRAM_ID,)
        )
        self.executor = Executor(self.ledger, self.registry)

    @classmethod
    def open(
        cls, ledger_dir: Path | None, *, reset: bool = False, clock: Callable[[], float] = time.time
    ) -> Chain:
        """Memory only without a directory; else SQLite under ``ledger_dir`` (``reset`` starts afresh)."""
        store: Store = MemoryStore() if ledger_dir is None else SqliteStore(ledger_dir, reset=reset)
        return cls(store, clock=clock)

    def close(self) -> None:
        """Close the ledger's store (the SQLite file, when there is one)."""
        self.ledger.close()
