"""Backoff, the one retry-delay policy, and each caller's own numbers as fixed vectors through the caller."""

from __future__ import annotations

import asyncio
import math
import socket

import httpx
import pytest
from solders.pubkey import Pubkey

from psyche.backoff import Backoff
from psyche.chain.rpc import RpcClient
from psyche.chain.ws import AccountWatcher
from psyche.client.data import FETCH_ATTEMPTS, HttpFiles
from psyche.errors import RpcUnavailable, RunManagerError
from psyche.manager.launch import RestartPolicy


def test_exponential_doubles_from_first_up_to_the_cap() -> None:
    policy = Backoff(0.5, cap=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_exponential_takes_its_factor() -> None:
    assert [Backoff(1.0, factor=3.0).delay(n) for n in (1, 2, 3)] == [1.0, 3.0, 9.0]


def test_linear_adds_first_each_retry_up_to_the_cap() -> None:
    policy = Backoff(2.0, cap=5.0, growth="linear")
    assert [policy.delay(n) for n in range(1, 5)] == [2.0, 4.0, 5.0, 5.0]


def test_a_retry_number_below_one_waits_the_first_delay() -> None:
    assert Backoff(0.5, cap=3.0).delay(0) == 0.5
    assert Backoff(2.0, growth="linear").delay(0) == 2.0


def test_attempts_bound_the_retries_and_none_retries_forever() -> None:
    three = Backoff(1.0, attempts=3)
    assert [three.retries_after(n) for n in (1, 2, 3)] == [True, True, False]
    assert Backoff(1.0).retries_after(10**6)


# -- each caller's numbers, observed through the caller ------------------------------------------


def test_rpc_passes_wait_0_1_doubling_to_2_s() -> None:
    delays: list[float] = []
    client = RpcClient(
        ["http://127.0.0.1:1/"],
        transport=httpx.MockTransport(lambda _request: httpx.Response(503)),
        sleep=delays.append,
        max_rounds=8,
    )
    with client, pytest.raises(RpcUnavailable):
        client.call("getSlot")
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_ws_reconnects_wait_2_s_more_each_time_up_to_30_s() -> None:
    delays: list[float] = []

    class Enough(Exception):
        pass

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 17:
            raise Enough

    with socket.socket() as probe:  # a port nothing listens on: every connect is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    watcher = AccountWatcher([f"ws://127.0.0.1:{port}"], Pubkey.default(), nonce_of=len, sleep=sleep)
    with pytest.raises(Enough):
        asyncio.run(watcher.run(lambda _update: None))
    assert delays == [2.0 * n for n in range(1, 16)] + [30.0, 30.0]


def test_data_fetch_retries_wait_2_s_more_each_time_for_eight_tries() -> None:
    delays: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda _request: httpx.Response(503)))
    files = HttpFiles(["http://127.0.0.1:1/a.bin"], 2, client, sleep=delays.append)
    with client, pytest.raises(RunManagerError, match=f"after {FETCH_ATTEMPTS} attempts"):
        files.sizes()
    assert delays == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]


def test_restart_waits_5_s_doubling_to_60_s() -> None:
    assert [RestartPolicy().backoff(n) for n in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_chain_wait_retries_1_s_doubling_to_10_s() -> None:
    assert [RestartPolicy().chain_retry(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_image_pull_waits_2_then_4_s_uncapped_for_three_tries() -> None:
    pull = RestartPolicy().pull_retry
    assert [pull.delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert pull.cap == math.inf
    assert [pull.retries_after(n) for n in (1, 2, 3)] == [True, True, False]
