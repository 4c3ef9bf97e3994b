"""The supervisor's helper threads: each runs one blocking runtime call and reports through one queue."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from psyche.errors import RunManagerError
from psyche.manager import events as ev
from psyche.manager.images import ImageRef
from psyche.manager.logs import Stream
from psyche.manager.runtime import ContainerHandle, ContainerRuntime

# Messages, not bytes: a log Output holds one read of the engine's response (enginestream.READ_SIZE at
# most), so the queue holds at most about 256 x 64 KiB = 16 MiB of client output.
QUEUE_LIMIT = 256
# Output already queued behind the one being handled joins its batch, up to this many bytes, so a
# flood costs one decode call, one event and one write per batch rather than per read.
BATCH_BYTES = 1 << 20


# ``task`` numbers each unit of work, so the supervisor can tell a stale message from a current one.
@dataclass(frozen=True, slots=True)
class Output:
    """Bytes the client wrote to ``stream``: any piece of it (the supervisor splits lines)."""

    task: int
    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class OutputEnd:
    """Both output streams ended (``error`` set when reading them failed)."""

    task: int
    error: RunManagerError | None


@dataclass(frozen=True, slots=True)
class Exit:
    """The client exited with ``code``; -1 and ``error`` set when waiting for it failed."""

    task: int
    code: int
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class Progress:
    """Progress of the image pull of ``task``."""

    task: int
    progress: ev.PullProgress


@dataclass(frozen=True, slots=True)
class Done:
    """A pull finished, or a stop request failed (``error`` set)."""

    task: int
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class Wake:
    """Nothing to report: only ends the supervisor's wait early (a version notice arrived)."""


Message = Output | OutputEnd | Exit | Progress | Done | Wake


class Workers:
    """Starts daemon threads around runtime calls; their results arrive, in order per thread, via next()."""

    def __init__(self, runtime: ContainerRuntime, *, timestamps: bool = False) -> None:
        self._runtime = runtime
        self._timestamps = timestamps
        # Bounded: a client printing faster than we render blocks the log reader (Docker buffers the
        # rest) instead of growing this queue without limit.
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._tasks = 0
        self._held: Message | None = None  # taken off the queue by batch(), not yet handed out

    def next(self, timeout: float) -> Message | None:
        """The next message, or None after ``timeout`` seconds (real time) without one."""
        if self._held is not None:
            held, self._held = self._held, None
            return held
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def batch(self, first: Output) -> list[Output]:
        """``first`` and the output of its task already queued right behind it (never waits).

        Like next(), for the deciding thread only; a message of another kind stops the batch and is
        the next one next() returns, so the order of messages is kept.
        """
        batch, size = [first], len(first.data)
        while size < BATCH_BYTES and self._held is None:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(msg, Output) and msg.task == first.task:
                batch.append(msg)
                size += len(msg.data)
            else:
                self._held = msg
        return batch

    def wake(self) -> None:
        """Make a pending ``next()`` return now (thread-safe, never blocks: a full queue wakes it anyway)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(Wake())

    def pull(self, image: ImageRef) -> int:
        """Pull in the background: Progress messages, then one Done."""
        task = self._new_task()
        self._spawn(self._pull, task, image)
        return task

    def follow(self, handle: ContainerHandle) -> int:
        """Read both output streams (Output..., one OutputEnd) and wait for the exit (one Exit)."""
        task = self._new_task()
        self._spawn(self._read, task, handle)
        self._spawn(self._wait, task, handle)
        return task

    def stop(self, task: int, handle: ContainerHandle, grace: float) -> None:
        """Stop in the background; only a failure is reported (Done with an error)."""
        self._spawn(self._stop, task, handle, grace)

    def _new_task(self) -> int:
        self._tasks += 1
        return self._tasks

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True, name=f"supervisor{target.__name__}").start()

    def _pull(self, task: int, image: ImageRef) -> None:
        try:
            self._runtime.pull(image, lambda progress: self._queue.put(Progress(task, progress)))
        except BaseException as exc:  # handed to the deciding thread, which re-raises what it cannot handle
            self._queue.put(Done(task, exc))
        else:
            self._queue.put(Done(task, None))

    def _read(self, task: int, handle: ContainerHandle) -> None:
        error: RunManagerError | None = None
        try:
            for stream, data in self._runtime.logs(handle, timestamps=self._timestamps):
                self._queue.put(Output(task, stream, data))
        except RunManagerError as exc:
            error = exc
        self._queue.put(OutputEnd(task, error))

    def _wait(self, task: int, handle: ContainerHandle) -> None:
        try:
            self._queue.put(Exit(task, self._runtime.wait(handle), None))
        except BaseException as exc:
            self._queue.put(Exit(task, -1, exc))

    def _stop(self, task: int, handle: ContainerHandle, grace: float) -> None:
        try:
            self._runtime.stop(handle, grace)
        except RunManagerError as exc:
            self._queue.put(Done(task, exc))
