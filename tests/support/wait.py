"""Waiting on a condition with a deadline, in threads and in asyncio (a test never sleeps a guessed time).

Both waits raise AssertionError naming ``what`` when ``condition`` still does not hold after ``timeout``
seconds; they poll every ``interval`` seconds (the async one yields to the event loop in between).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.end = time.monotonic() + timeout
        self.message = f"{what} did not hold within {timeout} s"

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(self.message)


def wait_until(
    condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "it", interval: float = 0.02
) -> None:
    """Poll ``condition`` until it holds.

    Raises:
        AssertionError: it still does not hold after ``timeout`` seconds.
    """
    deadline = _Deadline(timeout, what)
    while not condition():
        deadline.check()
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "it", interval: float = 0.005
) -> None:
    """Poll ``condition`` on the running event loop until it holds.

    Raises:
        AssertionError: it still does not hold after ``timeout`` seconds.
    """
    deadline = _Deadline(timeout, what)
    while not condition():
        deadline.check()
        await asyncio.sleep(interval)
