"""Worker targets for RankGroup tests: torch-free and importable, as spawned processes need."""

from __future__ import annotations

import os
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from psyche.client.rank_messages import Build, WorkerTrainer, serve


class FileTrainer(WorkerTrainer):
    """Appends one line per call to a file, so the test can read what each rank did."""

    def __init__(self, path: Path, crash_code: int | None = None, raise_on_step: bool = False) -> None:
        self.path = path
        self.crash_code = crash_code
        self.raise_on_step = raise_on_step

    def _note(self, line: str) -> None:
        with self.path.open("a") as f:
            f.write(line + "\n")

    def train_step(self, sample_indices: Sequence[int], *, step: int | None = None) -> None:
        if self.crash_code is not None:
            os._exit(self.crash_code)  # a hard crash: no cleanup, no message
        if self.raise_on_step:
            raise ValueError("bad batch")
        self._note(f"step {list(sample_indices)}")

    def save_checkpoint(self, root: Path, epoch: int, step: int) -> None:
        self._note(f"save {root.name} {epoch} {step}")

    def apply_results(self, results: Sequence[Sequence[object]], step: int) -> None:
        self._note(f"apply {len(results)} {step}")

    def round_to_bf16(self) -> None:
        self._note("round_to_bf16")

    def reset_errors(self) -> None:
        self._note("reset_errors")


def recording_worker(rank: int, conn: Connection, out: str, crash_code: int | None = None) -> int:
    def build(message: Build) -> FileTrainer:
        trainer = FileTrainer(Path(out) / f"rank{rank}.log", crash_code)
        trainer._note(f"build {message.resume}")
        return trainer

    return serve(conn.recv, build)


def raising_worker(rank: int, conn: Connection) -> int:
    return serve(conn.recv, lambda message: FileTrainer(Path(os.devnull), raise_on_step=True))
