"""Bench: what endpoint fallback costs one getAccountInfo (primary refusing, primary hanging) over healthy.

Run from the repository root: ``.venv/bin/python bench/bench_rpc_fallback.py [--samples N] [--timeout S]``.
Servers are real HTTP servers on 127.0.0.1 (tests/support/loopback_rpc.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# The loopback servers live with the tests; the bench is a script, so make the repo root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from solders.pubkey import Pubkey
from tests.support.loopback_rpc import servers
from tests.support.net import dead_url

from psyche.chain.rpc import RpcClient

KEY = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def first_call(urls: list[str], timeout: float) -> tuple[float, RpcClient]:
    """Latency of the first getAccountInfo on a fresh client (new connections, no sticky state)."""
    client = RpcClient(urls, timeout=timeout)
    return timed(lambda: client.get_account_info(KEY)), client


def cold_median(urls: list[str], timeout: float, samples: int) -> float:
    times = []
    for _ in range(samples):
        elapsed, client = first_call(urls, timeout)
        client.close()
        times.append(elapsed)
    return statistics.median(times)


def warm_median(client: RpcClient, samples: int) -> float:
    return statistics.median(timed(lambda: client.get_account_info(KEY)) for _ in range(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=0.5, help="client timeout, seconds")
    parser.add_argument("--hang-samples", type=int, default=3, help="each costs one timeout")
    args = parser.parse_args()

    with servers("healthy", "hang") as (healthy, hanging):
        refusing = dead_url("/")
        healthy_cold = cold_median([healthy.url], args.timeout, args.samples)
        with RpcClient([healthy.url], timeout=args.timeout) as client:
            client.get_account_info(KEY)
            healthy_warm = warm_median(client, args.samples)
        refusing_cold = cold_median([refusing, healthy.url], args.timeout, args.samples)

        hang_first, sticky = [], []
        for _ in range(args.hang_samples):
            elapsed, client = first_call([hanging.url, healthy.url], args.timeout)
            hang_first.append(elapsed)
            sticky.append(warm_median(client, args.samples))
            assert client.current_endpoint == healthy.url
            client.close()

    print(f"getAccountInfo on 127.0.0.1, median of {args.samples} calls, client timeout {ms(args.timeout)}")
    print(f"healthy: first call on a fresh client {ms(healthy_cold)}, warm {ms(healthy_warm)}")
    added = refusing_cold - healthy_cold
    verdict = "ok" if added < 0.050 else "MISSED"
    print(f"fallback (primary refusing): {added * 1000:+.1f} ms over healthy (target < 50 ms) [{verdict}]")
    first = statistics.median(hang_first)
    sticky_warm = statistics.median(sticky)
    timeouts = first / args.timeout
    verdict = "ok" if 1.0 <= timeouts < 2.0 and sticky_warm - healthy_warm < 0.050 else "MISSED"
    print(
        f"fallback (primary hanging): first call {ms(first)} = {timeouts:.2f} timeouts (target: one), "
        f"then sticky {ms(sticky_warm)} ({(sticky_warm - healthy_warm) * 1000:+.1f} ms over healthy warm) "
        f"[{verdict}]"
    )


if __name__ == "__main__":
    main()
