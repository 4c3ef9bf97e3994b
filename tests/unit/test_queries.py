"""Queries over a fake account store built with our own encoders: run lookup, join decisions, rewards."""

from __future__ import annotations

import pytest
from solders.pubkey import Pubkey

from psyche.chain import pda, queries
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.accounts.treasurer import Participant, TreasurerRun
from psyche.chain.programs import (
    COORDINATOR_PROGRAM_ID,
    PERMISSIONLESS_GRANTEE,
    TOKEN_PROGRAM_ID,
    TREASURER_PROGRAM_ID,
)
from psyche.chain.rpc import AccountInfo
from psyche.errors import AccountDecodeError, AccountNotFound, NotAuthorized
from tests.support.fake_chain import COORD, MASTER, MINT, OWNER, USER, FakeChain, seed_authorization, seed_run


def test_fetch_run_reads_instance_then_coordinator() -> None:
    chain = FakeChain()
    seed_run(chain)
    run = queries.fetch_run(chain, "test")
    assert (run.run_id, run.state, run.client_version) == ("test", RunState.WaitingForMembers, "v1")
    assert run.coordinator_address == COORD
    assert chain.round_trips == 2


def test_fetch_run_missing_names_the_account_the_run_and_the_endpoint() -> None:
    address = pda.coordinator_instance("nope")
    with pytest.raises(AccountNotFound) as info:
        queries.fetch_run(FakeChain(), "nope")
    assert info.value.message == (
        f"RPC error: failed to get account {address} (run 'nope', endpoint https://rpc.fake/?api-key=***): "
        "no coordinator instance account at this address"
    )
    assert info.value.hint is not None and "list-runs --all" in info.value.hint


def test_fetch_run_unreadable_coordinator_says_why() -> None:
    chain = FakeChain()
    seed_run(chain)
    chain.put(COORD, b"\0" * 100, COORDINATOR_PROGRAM_ID)
    with pytest.raises(
        AccountDecodeError, match=rf"^RPC error: failed to get account {COORD} \(run 'test', "
    ):
        queries.fetch_run(chain, "test")


def test_permissionless_authorization_wins_first_in_two_round_trips() -> None:
    chain = FakeChain()
    seed_run(chain)
    seed_authorization(chain, PERMISSIONLESS_GRANTEE)
    seed_authorization(chain, USER)
    check = queries.check_join(chain, "test", USER)
    assert check.grantee == PERMISSIONLESS_GRANTEE
    assert check.can_join
    assert chain.round_trips == 2


def test_delegate_is_admitted_through_the_authorizer_key() -> None:
    chain = FakeChain()
    seed_run(chain)
    seed_authorization(chain, MASTER, delegates=(USER,))
    check = queries.check_join(chain, "test", USER, authorizer=MASTER)
    assert check.grantee == MASTER
    assert [outcome for _, _, outcome in check.tried] == [
        "no authorization account",
        "no authorization account",
        "valid",
    ]


def test_inactive_and_missing_authorizations_are_not_authorized_with_reasons() -> None:
    chain = FakeChain()
    seed_run(chain)
    seed_authorization(chain, USER, active=False)
    check = queries.check_join(chain, "test", USER)
    assert not check.authorized
    with pytest.raises(NotAuthorized) as info:
        queries.require_authorized(check)
    message = str(info.value)
    assert f"{USER} is not authorized to join run 'test'" in message
    assert "authorization inactive" in message
    assert "no authorization account" in message


def test_authorization_owned_by_another_program_is_refused() -> None:
    chain = FakeChain()
    seed_run(chain)
    address = seed_authorization(chain, PERMISSIONLESS_GRANTEE)
    info = chain.accounts[address]
    chain.accounts[address] = AccountInfo(info.data, Pubkey.new_unique(), info.lamports)
    assert not queries.check_join(chain, "test", USER).authorized


def test_user_already_in_the_epoch_cannot_join_again() -> None:
    chain = FakeChain()
    seed_run(chain, state=RunState.RoundTrain, epoch_clients=(USER,))
    seed_authorization(chain, PERMISSIONLESS_GRANTEE)
    check = queries.check_join(chain, "test", USER)
    assert check.authorized and check.already_in_epoch and not check.can_join


def test_list_runs_skips_undecodable_coordinators() -> None:
    chain = FakeChain()
    seed_run(chain, "good")
    seed_run(chain, "broken", coordinator=Pubkey.new_unique())
    broken_coord = queries.fetch_run(chain, "broken").coordinator_address
    chain.accounts[broken_coord] = AccountInfo(b"\x00" * 10, COORDINATOR_PROGRAM_ID, 1)
    assert [r.run_id for r in queries.list_runs(chain)] == ["good"]
    scan = queries.scan_runs(chain)
    assert [r.run_id for r in scan.runs] == ["good"]
    [(address, reason)] = scan.unreadable
    assert address == broken_coord and reason.startswith("run 'broken': ")


def test_rewards_claimable_is_capped_by_the_treasury() -> None:
    chain = FakeChain()
    seed_run(chain, ledger=((USER, 700),))
    index = pda.treasurer_index("test")
    run_address, bump = pda.find_treasurer_run(index)
    treasurer = TreasurerRun(
        bump, index, OWNER, OWNER, COORD, pda.coordinator_instance("test"), MINT, 100, 100
    )
    chain.put(run_address, treasurer.encode(), TREASURER_PROGRAM_ID)
    chain.put(MINT, Mint(OWNER, 10_000, 6).encode(), TOKEN_PROGRAM_ID)
    part_address, part_bump = pda.find_participant(run_address, USER)
    chain.put(part_address, Participant(part_bump, 100, 100).encode(), TREASURER_PROGRAM_ID)
    chain.put(
        pda.associated_token_account(run_address, MINT),
        TokenAccount(MINT, run_address, 450).encode(),
        TOKEN_PROGRAM_ID,
    )
    rewards = queries.fetch_rewards(chain, "test", USER)
    assert (rewards.earned, rewards.claimed, rewards.unclaimed) == (700, 100, 600)
    assert rewards.claimable == 450
    assert rewards.user_token_balance is None
    assert rewards.participant_exists


def test_rewards_without_treasurer_is_a_clear_error() -> None:
    chain = FakeChain()
    seed_run(chain)
    with pytest.raises(AccountNotFound, match="run 'test' has no treasurer"):
        queries.fetch_rewards(chain, "test", USER)
