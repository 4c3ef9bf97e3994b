"""Ranks 1..n-1 of a multi-process client as local processes: a pipe each from rank 0, watched for crashes."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, cast

from psyche.client.rank_messages import Message, Shutdown
from psyche.errors import RunManagerError

log = logging.getLogger("psyche.client")

PARENT_CHECK_S = 0.5  # how often a worker checks that rank 0's process still exists
MONITOR_POLL_S = 0.2
SHUTDOWN_GRACE_S = 10.0  # after Shutdown; ranks leave a lockstep step together, so this is slack
KILL_GRACE_S = 3.0

# (rank, connection to rank 0, *args) -> exit code; importable at module level (the spawn start method).
WorkerMain = Callable[..., int]


def describe_exit(rank: int, exitcode: int | None) -> str:
    """How a worker ended, in words: 'training rank 1 exited with code 3' / 'was killed by SIGKILL'."""
    if exitcode is not None and exitcode < 0:
        try:
            how = signal.Signals(-exitcode).name
        except ValueError:
            how = f"signal {-exitcode}"
        return f"training rank {rank} was killed by {how}"
    return f"training rank {rank} exited with code {exitcode}"


def _watch_parent(parent: int) -> None:
    # Rank 0 killed outright closes our pipe, but a worker blocked in a collective would not read it.
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(PARENT_CHECK_S)


def _child(rank: int, conn: Connection, parent: int, target: WorkerMain, args: tuple[Any, ...]) -> None:
    # Ctrl+C in a terminal reaches the whole process group; rank 0 alone decides how the ranks stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()
    try:
        code = target(rank, conn, *args)
    except Exception as exc:  # any failure ends this rank; rank 0 sees the exit and stops the others
        print(f"[!] training rank {rank}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.exit(code)


class RankGroup:
    """Start ``target`` as ranks 1..world_size-1 (spawned processes), send them messages, stop them.

    A monitor thread watches the processes: one that ends before ``close()`` is a crash. The others are
    terminated at once and ``on_failure(message)`` is called (from the monitor thread) with one line such as
    'training rank 1 was killed by SIGKILL'."""

    def __init__(
        self,
        world_size: int,
        target: WorkerMain,
        args: Sequence[Any] = (),
        *,
        on_failure: Callable[[str], None],
    ) -> None:
        self.on_failure = on_failure
        self.failure: str | None = None
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        ctx = mp.get_context("spawn")  # fork would copy rank 0's threads and sockets
        try:
            for rank in range(1, world_size):
                theirs, ours = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_child,
                    args=(rank, theirs, os.getpid(), target, tuple(args)),
                    name=f"psyche-rank-{rank}",
                )
                proc.start()
                theirs.close()  # the worker holds the only read end: our exit is its EOF
                self.conns.append(ours)
                self.procs.append(proc)
        except BaseException:
            self._stop_processes(grace=0.0)
            raise
        self._monitor = threading.Thread(target=self._watch, daemon=True, name="rank-monitor")
        self._monitor.start()

    @property
    def pids(self) -> list[int | None]:
        """The workers' process ids, rank 1 first."""
        return [p.pid for p in self.procs]

    def broadcast(self, message: Message) -> None:
        """Send ``message`` to every worker; a worker that is gone is a RunManagerError."""
        for rank, conn in enumerate(self.conns, start=1):
            try:
                conn.send(message)
            except (OSError, ValueError) as exc:
                raise RunManagerError(
                    self.failure or f"training rank {rank} is gone ({type(exc).__name__})"
                ) from exc

    def _watch(self) -> None:
        sentinels = {p.sentinel: rank for rank, p in enumerate(self.procs, start=1)}
        while not self.closing.is_set():
            ready = wait(list(sentinels), timeout=MONITOR_POLL_S)
            if not ready:
                continue
            with self._lock:
                if self.closing.is_set():
                    return
                rank = sentinels[cast(int, ready[0])]
                proc = self.procs[rank - 1]
                proc.join()
                self.failure = describe_exit(rank, proc.exitcode)
            log.error("%s; stopping the other ranks", self.failure)
            self._stop_processes(grace=0.0)
            self.on_failure(self.failure)
            return

    def _stop_processes(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(KILL_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def close(self) -> None:
        """Tell every worker to shut down and wait for them (terminating stragglers); idempotent."""
        with self._lock:
            if self.closing.is_set():
                return
            self.closing.set()
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):  # already gone: the join below sees it
                conn.send(Shutdown())
            conn.close()
        self._stop_processes(grace=SHUTDOWN_GRACE_S)
        self._monitor.join()
