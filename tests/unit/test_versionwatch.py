"""WatchState: the version watch reports its own state changes once, not every endpoint's retries."""

from __future__ import annotations

from psyche.chain.ws import SubscriptionDown, SubscriptionUp, UpdateRejected, WatchEvent
from psyche.manager.versionwatch import WatchState

P, S = "ws://127.0.0.1:1/", "ws://127.0.0.1:2/"


def down(url: str, retry_in: float = 2.0) -> SubscriptionDown:
    return SubscriptionDown(url, "ConnectionRefusedError: [Errno 111] Connection refused", retry_in)


def reported(state: WatchState, events: list[WatchEvent]) -> list[WatchEvent]:
    return [change for change in map(state.feed, events) if change is not None]


def test_a_dead_primary_beside_a_subscribed_backup_reports_only_the_subscription() -> None:
    # What 45 s of a dead WS_RPC next to a healthy WS_RPC_2 look like (retries 2, 4, 6 ... s apart).
    events: list[WatchEvent] = [down(P), SubscriptionUp(S), *(down(P, 2.0 * n) for n in range(2, 9))]
    assert reported(WatchState(2), events) == [SubscriptionUp(S)]


def test_every_endpoint_failing_is_reported_once_and_the_first_subscription_once() -> None:
    state = WatchState(2)
    assert reported(state, [down(P), down(S), down(P), down(S), down(P)]) == [down(S)]
    assert reported(state, [SubscriptionUp(P), SubscriptionUp(S), down(S)]) == [SubscriptionUp(P)]
    assert reported(state, [down(P)]) == [down(P)]  # the last subscription dropped
    assert reported(state, [down(P), down(S), SubscriptionUp(S)]) == [SubscriptionUp(S)]


def test_one_endpoint_dropping_and_coming_back_is_reported_each_way_once() -> None:
    state = WatchState(1)
    assert reported(state, [SubscriptionUp(P), down(P), down(P, 4.0), SubscriptionUp(P)]) == [
        SubscriptionUp(P),
        down(P),
        SubscriptionUp(P),
    ]


def test_rejected_updates_pass_through() -> None:
    rejected = UpdateRejected(P, "ValueError: the account no longer exists")
    assert WatchState(1).feed(rejected) == rejected
