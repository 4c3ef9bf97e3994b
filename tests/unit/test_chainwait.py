"""ChainWait: which failures are waited out, the backoff between tries, one line down and one back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from psyche.errors import (
    AccountDecodeError,
    AccountNotFound,
    NotAuthorized,
    RpcResponseError,
    RpcUnavailable,
    RunManagerError,
)
from psyche.manager import events as ev
from psyche.manager.chainwait import ChainWait, WaitStopped, is_transient
from psyche.manager.launch import RestartPolicy
from tests.support.clock import FakeClock

DOWN = RpcUnavailable({"http://127.0.0.1:8899": "ConnectError: [Errno 111] Connection refused"})
BEHIND = RpcUnavailable(
    {"http://a": "RPC error -32005: Node is behind by 42 slots", "http://b": "HTTP 429 Too Many Requests"}
)


class Rig:
    def __init__(self, *, stop_after: int | None = None) -> None:
        self.clock = FakeClock()
        self.delays: list[float] = []
        self.events: list[ev.Event] = []
        self._stop_after = stop_after
        self.wait = ChainWait(
            RestartPolicy().chain_retry, self.sleep, self.events.append, monotonic=self.clock.monotonic
        )

    def sleep(self, delay: float) -> bool:
        if self._stop_after is not None and len(self.delays) >= self._stop_after:
            return False
        self.delays.append(delay)
        self.clock.sleep(delay)
        return True


def failing(errors: list[RunManagerError], answer: str = "v1") -> Callable[[], str]:
    """A read raising ``errors`` in turn, then answering."""

    def read() -> str:
        if errors:
            raise errors.pop(0)
        return answer

    return read


def test_an_answer_at_once_says_nothing() -> None:
    r = Rig()
    assert r.wait.read(lambda: "v1") == "v1"
    assert (r.delays, r.events) == ([], [])


def test_an_outage_is_waited_out_with_backoff_and_reported_once_each_way() -> None:
    r = Rig()
    assert r.wait.read(failing([DOWN] * 7)) == "v1"
    assert r.delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]  # the restart formula, capped at 10 s
    assert r.events == [ev.ChainUnreachable(str(DOWN), 1.0), ev.ChainReachable(45.0)]


def test_node_behind_or_rate_limited_everywhere_is_waited_out_too() -> None:
    r = Rig()
    assert r.wait.read(failing([BEHIND, DOWN])) == "v1"
    assert r.events == [ev.ChainUnreachable(str(BEHIND), 1.0), ev.ChainReachable(3.0)]


@pytest.mark.parametrize(
    "error",
    [
        AccountNotFound("coordinator", "Coord1111"),
        NotAuthorized("not authorized to join run 'x'"),
        AccountDecodeError("coordinator: expected >= 100 bytes, got 3"),
        RpcResponseError(-32602, "Invalid params"),
        RpcUnavailable({"http://a": "HTTP 401 Unauthorized"}, transient=False),
    ],
    ids=["run-gone", "not-authorized", "bad-data", "invalid-request", "key-refused"],
)
def test_answers_that_cannot_change_end_the_wait_at_once(error: RunManagerError) -> None:
    r = Rig()
    with pytest.raises(type(error)) as caught:
        r.wait.read(failing([error]))
    assert caught.value is error
    assert (r.delays, r.events) == ([], [])
    assert not is_transient(error)


def test_the_chain_back_with_a_final_answer_says_back_then_raises_it() -> None:
    r = Rig()
    gone = AccountNotFound("coordinator", "Coord1111")
    with pytest.raises(AccountNotFound):
        r.wait.read(failing([DOWN, DOWN, gone]))
    assert r.events == [ev.ChainUnreachable(str(DOWN), 1.0), ev.ChainReachable(3.0)]


def test_a_stop_request_ends_the_wait() -> None:
    r = Rig(stop_after=2)
    with pytest.raises(WaitStopped):
        r.wait.read(failing([DOWN] * 10))
    assert r.delays == [1.0, 2.0]
    assert r.events == [ev.ChainUnreachable(str(DOWN), 1.0)]
