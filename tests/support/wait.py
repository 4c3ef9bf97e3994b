"""Waiting on a condition with a deadline, in threads and in asyncio (a test never sleeps a guessed time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float = 5.0,
    what: str = "it",
    interval: float = 0.02,
) -> None:
    """Poll ``condition`` until it holds.

    Raises:
        AssertionError: it still does not hold after ``timeout`` seconds (the message names ``what``).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], bool],
    *,
    timeout: float = 5.0,
    what: str = "it",
    interval: float = 0.005,
) -> None:
    """Poll ``condition`` on the running event loop until it holds, letting other tasks run in between.

    Raises:
        AssertionError: it still does not hold after ``timeout`` seconds (the message names ``what``).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(interval)
