"""Outlast chain trouble: retry a chain read with backoff while its failure may pass, one line down, one back.

The RPC client already moves to the next endpoint on every transient failure (docs/rpc.md); what reaches
this module is ``RpcUnavailable(transient=True)``: no endpoint answered right now. The main job's reads that
decide whether the client can run (the run lookup and authorization at start-up, the client_version at every
restart) go through ``ChainWait.read``, so a chain or network blip delays the client instead of ending the
job. Answers that cannot change (run gone, not authorized, bad data, a refused API key) are raised at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from psyche.errors import RpcUnavailable, RunManagerError
from psyche.manager import events as ev

T = TypeVar("T")


class WaitStopped(Exception):
    """A stop request ended the wait before the chain answered (not a RunManagerError: nothing failed)."""


def is_transient(exc: BaseException) -> bool:
    """True when no endpoint answered but a later try may: the chain, the network or the node is away."""
    return isinstance(exc, RpcUnavailable) and exc.transient


class ChainWait:
    """Calls a chain read until it answers or fails for good, sleeping ``backoff(n)`` between tries.

    Args:
        backoff: delay before retry ``n`` (1-based), e.g. ``RestartPolicy.chain_retry``.
        sleep: waits; returns False when a stop request cut the wait short (then ``read`` raises WaitStopped).
        on_event: gets ``ChainUnreachable`` once when a read first fails transiently, and ``ChainReachable``
            once when it answers again; nothing for the retries in between.
        monotonic: the clock for the outage's length.
    """

    def __init__(
        self,
        backoff: Callable[[int], float],
        sleep: Callable[[float], bool],
        on_event: Callable[[ev.Event], None],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff = backoff
        self._sleep = sleep
        self._emit = on_event
        self._monotonic = monotonic

    def read(self, read: Callable[[], T]) -> T:
        """``read()``'s answer, waiting out transient failures; its other errors propagate unchanged.

        Raises:
            WaitStopped: a stop request ended the wait.
        """
        down_since: float | None = None
        attempt = 0
        while True:
            try:
                value = read()
            except RunManagerError as exc:
                if not is_transient(exc):
                    self._back(down_since)  # the chain answered, if only to say no
                    raise
                attempt += 1
                delay = self._backoff(attempt)
                if down_since is None:
                    down_since = self._monotonic()
                    self._emit(ev.ChainUnreachable(str(exc), delay))
                if not self._sleep(delay):
                    raise WaitStopped from exc
                continue
            self._back(down_since)
            return value

    def _back(self, down_since: float | None) -> None:
        if down_since is not None:
            self._emit(ev.ChainReachable(self._monotonic() - down_since))


def sleep_through(delay: float) -> bool:
    """A ``ChainWait`` sleep that nothing interrupts but the process's own signals (start-up)."""
    time.sleep(delay)
    return True
