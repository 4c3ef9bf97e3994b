"""The one exponential backoff formula: the RPC pool, the restart policy and the chain wait use it (pure)."""

from __future__ import annotations


def exponential(attempt: int, base: float, cap: float) -> float:
    """Delay before retry ``attempt`` (1-based): base, 2*base, 4*base, ... never above ``cap``."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))
