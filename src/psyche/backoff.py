"""The one retry-delay policy (pure): every caller that waits before trying again describes its wait here.

Each caller keeps its own numbers (docs/architecture.md lists them):

====================================  ===================================================
caller                                policy
====================================  ===================================================
RPC pool pass (chain/rpc.py)          exponential 0.1 s, cap 2 s, ``max_rounds`` passes
WS reconnect (chain/ws.py)            linear 2 s, 4 s, 6 s ..., cap 30 s, forever
data fetch (client/data.py)           linear 2 s, 4 s ..., ``FETCH_ATTEMPTS`` tries
image pull (manager/supervisor.py)    exponential 2 s, 4 s ..., uncapped, 3 tries
client restart (manager/launch.py)    exponential 5 s, cap 60 s
chain wait (manager/launch.py)        exponential 1 s, cap 10 s
rundown transfer (rundown_client.py)  exponential ``retry_delay``, cap 10 s
====================================  ===================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Growth = Literal["exponential", "linear"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before each retry, and how many tries there are in all.

    ``delay(n)`` for retry ``n`` (1-based: the wait after the first failed try is ``delay(1)``) is
    ``first * factor ** (n - 1)`` when ``growth`` is exponential, ``first * n`` when linear, never above
    ``cap``. ``attempts`` counts every try, the first included; None retries forever.
    """

    first: float
    cap: float = math.inf
    factor: float = 2.0
    growth: Growth = "exponential"
    attempts: int | None = None

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry ``retry`` (1-based; 0 or less counts as 1)."""
        n = max(1, retry)
        grown = self.first * self.factor ** (n - 1) if self.growth == "exponential" else self.first * n
        return float(min(self.cap, grown))

    def retries_after(self, attempt: int) -> bool:
        """Whether another try follows try ``attempt`` (1-based)."""
        return self.attempts is None or attempt < self.attempts
