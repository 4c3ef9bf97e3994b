"""Clocks a test controls: a fake one that only moves when told (or slept on), and a fast real one."""

from __future__ import annotations

import time


class FakeClock:
    """A clock that moves only by ``advance`` or ``sleep``: call it for the time, or use ``monotonic``.

    It stands in for both shapes the code injects: a ``Callable[[], float]`` (wall or monotonic seconds)
    and an object with ``monotonic()`` and ``sleep()`` (the supervisor's). ``sleeps`` lists every sleep,
    ``slept`` sums them.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        self.sleeps.append(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FastClock:
    """Wall time running ``speed`` times faster from the moment it is made (a chain and a client share it)."""

    def __init__(self, speed: float) -> None:
        self.start = time.time()
        self.speed = speed

    def __call__(self) -> float:
        return self.start + (time.time() - self.start) * self.speed
