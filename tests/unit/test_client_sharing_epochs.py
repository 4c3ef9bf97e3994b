"""Which epoch a coordinator account's rounds belong to, as the result exchange keys them."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("torch")

from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.client.sharing import rounds_epoch
from tests.support.coordinator import configured


def at(state: RunState, epoch: int) -> CoordinatorAccount:
    acc = configured().acc
    return dataclasses.replace(acc, run_state=state, progress=dataclasses.replace(acc.progress, epoch=epoch))


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (RunState.Warmup, 3),
        (RunState.RoundTrain, 3),
        (RunState.RoundWitness, 3),
        (RunState.Cooldown, 3),
        # The end of Cooldown moves the epoch number on; the rounds stay the last epoch's until Warmup.
        (RunState.WaitingForMembers, 2),
        (RunState.Paused, 2),
        (RunState.Finished, 2),
    ],
)
def test_rounds_belong_to_the_epoch_before_the_number_once_the_cooldown_is_over(
    state: RunState, expected: int
) -> None:
    assert rounds_epoch(at(state, 3)) == expected


def test_a_run_that_never_trained_has_its_rounds_in_epoch_zero() -> None:
    assert rounds_epoch(at(RunState.WaitingForMembers, 0)) == 0
