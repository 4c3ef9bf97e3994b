"""RpcClient fallback against real loopback HTTP servers: refusing, hanging, 429/500, garbage, healthy."""

from __future__ import annotations

import itertools
import time

import pytest
from solders.pubkey import Pubkey

from psyche.chain.rpc import RpcClient
from psyche.errors import RpcResponseError, RpcUnavailable
from tests.support.loopback_rpc import ACCOUNT_DATA, JsonRpcServer, RawSocketServer, servers
from tests.support.net import dead_url

KEY = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
TIMEOUT = 0.3


def no_sleep(_seconds: float) -> None:
    pass


def test_every_kind_of_broken_endpoint_falls_through_to_the_healthy_one_and_sticks() -> None:
    refusing = dead_url("/")
    with servers("hang", "429", "500", "garbage", "garbage-200", "healthy") as started:
        hang, s429, s500, garbage, garbage200, healthy = started
        assert isinstance(healthy, JsonRpcServer)
        urls = [refusing, *(s.url for s in started)]
        events: list[tuple[str, str, str]] = []
        with RpcClient(
            urls, timeout=TIMEOUT, sleep=no_sleep, on_fallback=lambda *e: events.append(e)
        ) as client:
            began = time.monotonic()
            info = client.get_account_info(KEY)
            first = time.monotonic() - began
            assert info is not None and info.data == ACCOUNT_DATA
            assert client.current_endpoint == healthy.url
            assert client.round_trips == 7
            # Exactly one client timeout was paid (the hanging server), not one per broken endpoint.
            assert TIMEOUT <= first < TIMEOUT + 1.0
            reasons = [reason for _, _, reason in events]
            assert reasons[0].startswith("ConnectError")
            assert reasons[1] == f"timed out after {TIMEOUT:g}s (ReadTimeout)"
            assert reasons[2:4] == ["HTTP 429 Too Many Requests", "HTTP 500 Internal Server Error"]
            assert reasons[4].startswith("RemoteProtocolError")
            assert reasons[5] == "HTTP 200 OK but the body is not a JSON-RPC response"
            assert [(a, b) for a, b, _ in events] == list(itertools.pairwise(urls))

            began = time.monotonic()
            for _ in range(3):
                assert client.get_account_info(KEY) is not None
            assert time.monotonic() - began < TIMEOUT  # sticky: no more timeouts
            assert client.round_trips == 10
        assert healthy.requests == 4
        assert isinstance(hang, RawSocketServer) and hang.connections == 1
        assert [s.requests for s in (s429, s500, garbage200) if isinstance(s, JsonRpcServer)] == [1, 1, 1]
        assert isinstance(garbage, RawSocketServer) and garbage.connections == 1


def test_sticky_endpoint_failing_moves_back_to_the_first_in_order() -> None:
    with servers("healthy", "healthy") as (primary, backup):
        assert isinstance(primary, JsonRpcServer) and isinstance(backup, JsonRpcServer)
        primary.mode = "503"
        with RpcClient([primary.url, backup.url], timeout=TIMEOUT, sleep=no_sleep) as client:
            assert client.call("getSlot") == 1234
            assert client.current_endpoint == backup.url
            primary.mode, backup.mode = "healthy", "500"
            assert client.call("getSlot") == 1234
            assert client.current_endpoint == primary.url
        assert (primary.requests, backup.requests) == (2, 2)


def test_all_failing_lists_each_endpoint_with_its_error_and_no_api_key() -> None:
    refusing = dead_url("/").rstrip("/") + "/?api-key=sup3r-secret-key"
    delays: list[float] = []
    with servers("hang", "429", "garbage") as (hang, s429, garbage):
        keyed_429 = s429.url + "0123456789abcdef0123456789abcdef"
        urls = [refusing, hang.url, keyed_429, garbage.url]
        with RpcClient(urls, timeout=TIMEOUT, sleep=delays.append, max_rounds=2) as client:
            with pytest.raises(RpcUnavailable) as info:
                client.get_account_info(KEY)
            assert client.round_trips == 8
        message = str(info.value)
        assert "sup3r-secret-key" not in message and "0123456789abcdef" not in message
        failures = info.value.failures
        assert list(failures) == [
            refusing.split("?")[0] + "?api-key=***",
            hang.url,
            s429.url + "***",
            garbage.url,
        ]
        assert "Connect" in failures[refusing.split("?")[0] + "?api-key=***"]
        assert failures[hang.url] == f"timed out after {TIMEOUT:g}s (ReadTimeout)"
        assert failures[s429.url + "***"] == "HTTP 429 Too Many Requests"
        assert failures[garbage.url].startswith("RemoteProtocolError")
        assert message.startswith("all RPC endpoints failed: ")
        assert delays == [0.1]
        assert isinstance(hang, RawSocketServer) and hang.connections == 2


def test_jsonrpc_error_is_not_retried_on_other_endpoints() -> None:
    with servers("jsonrpc-error", "healthy") as (answering_error, healthy):
        assert isinstance(answering_error, JsonRpcServer) and isinstance(healthy, JsonRpcServer)
        with RpcClient([answering_error.url, healthy.url], timeout=TIMEOUT, sleep=no_sleep) as client:
            with pytest.raises(RpcResponseError) as info:
                client.get_account_info(KEY)
            assert info.value.code == -32602
        assert (answering_error.requests, healthy.requests) == (1, 0)


def test_batch_is_one_round_trip_on_a_real_server() -> None:
    with servers("healthy") as (healthy,):
        assert isinstance(healthy, JsonRpcServer)
        with RpcClient([healthy.url], timeout=TIMEOUT) as client:
            assert client.batch([("getSlot", None), ("getHealth", None)]) == [1234, "ok"]
            assert client.round_trips == 1
        assert healthy.requests == 1
