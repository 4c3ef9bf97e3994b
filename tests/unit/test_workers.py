"""Workers: output batches keep the order of the supervisor's messages."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from psyche.manager import workers as w
from psyche.manager.logs import Stream
from psyche.manager.runtime import ContainerHandle
from tests.support.wait import wait_until

HANDLE = ContainerHandle("c1", "client")


class ScriptedLogs:
    """Just enough of a ContainerRuntime for Workers.follow: fixed output, an exit the test releases."""

    def __init__(self, output: list[tuple[Stream, bytes]]) -> None:
        self.output = output
        self.exit = threading.Event()

    def logs(self, handle: ContainerHandle, *, timestamps: bool = False) -> Iterator[tuple[Stream, bytes]]:
        yield from self.output

    def wait(self, handle: ContainerHandle) -> int:
        self.exit.wait(5)
        return 3


def queued(workers: w.Workers, count: int) -> None:
    wait_until(lambda: workers._queue.qsize() >= count, what="the helper threads' reports", interval=0.001)


def test_a_batch_takes_the_queued_output_and_leaves_the_next_message_in_place() -> None:
    runtime = ScriptedLogs([("stdout", b"a\n"), ("stderr", b"b\n"), ("stdout", b"c")])
    workers = w.Workers(runtime)  # type: ignore[arg-type]  # a partial fake: only logs()
    task = workers.follow(HANDLE)
    queued(workers, 4)  # three Output and the OutputEnd; the exit is still held back
    runtime.exit.set()
    queued(workers, 5)

    first = workers.next(1)
    assert isinstance(first, w.Output)
    assert [(m.stream, m.data) for m in workers.batch(first)] == runtime.output
    assert workers.next(1) == w.OutputEnd(task, None)  # it stopped the batch and was not lost
    assert workers.next(1) == w.Exit(task, 3, None)
    assert workers.next(0.01) is None
