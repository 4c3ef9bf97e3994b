"""Queries over a fake account store built with our own encoders: run lookup, join decisions, rewards."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from solders.pubkey import Pubkey

from psyche.chain import pda, queries
from psyche.chain.accounts.authorization import Authorization
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.instance import CoordinatorInstance
from psyche.chain.accounts.model import LLM
from psyche.chain.accounts.state import ClientsState, EpochClient, EpochState, LedgerClient
from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.accounts.treasurer import Participant, TreasurerRun
from psyche.chain.programs import (
    AUTHORIZER_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    JOIN_RUN_AUTHORIZATION_SCOPE,
    PERMISSIONLESS_GRANTEE,
    TOKEN_PROGRAM_ID,
    TREASURER_PROGRAM_ID,
)
from psyche.chain.rpc import AccountInfo
from psyche.errors import AccountDecodeError, AccountNotFound, NotAuthorized

OWNER = Pubkey.new_unique()
USER = Pubkey.new_unique()
MASTER = Pubkey.new_unique()
COORD = Pubkey.new_unique()
MINT = Pubkey.new_unique()


class FakeChain:
    """Accounts by address; counts reads the way an RPC node would see them (one per call)."""

    current_endpoint = "https://rpc.fake/?api-key=***"  # what RpcClient.current_endpoint gives: redacted

    def __init__(self) -> None:
        self.accounts: dict[Pubkey, AccountInfo] = {}
        self.round_trips = 0

    def put(self, address: Pubkey, data: bytes, owner: Pubkey, lamports: int = 1_000_000) -> None:
        self.accounts[address] = AccountInfo(data, owner, lamports)

    def get_account_info(self, pubkey: Pubkey) -> AccountInfo | None:
        self.round_trips += 1
        return self.accounts.get(pubkey)

    def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountInfo | None]:
        self.round_trips += 1
        return [self.accounts.get(k) for k in pubkeys]

    def get_program_accounts(
        self, program: Pubkey, filters: Sequence[int | tuple[int, bytes]] = ()
    ) -> list[tuple[Pubkey, bytes]]:
        self.round_trips += 1
        out = []
        for key, info in self.accounts.items():
            if info.owner != program:
                continue
            ok = all(
                len(info.data) == f if isinstance(f, int) else info.data[f[0] : f[0] + len(f[1])] == f[1]
                for f in filters
            )
            if ok:
                out.append((key, info.data))
        return out


def seed_run(
    chain: FakeChain,
    run_id: str = "test",
    *,
    state: RunState = RunState.WaitingForMembers,
    coordinator: Pubkey = COORD,
    epoch_clients: tuple[Pubkey, ...] = (),
    ledger: tuple[tuple[Pubkey, int], ...] = (),
    model: LLM | None = None,
) -> None:
    address, bump = pda.find_coordinator_instance(run_id)
    instance = CoordinatorInstance(bump, OWNER, OWNER, coordinator, run_id)
    chain.put(address, instance.encode(), COORDINATOR_PROGRAM_ID)
    acc = dataclasses.replace(
        CoordinatorAccount.initial(run_id, "v1"),
        run_state=state,
        epoch_state=EpochState(clients=tuple(EpochClient(k, k) for k in epoch_clients)),
        clients_state=ClientsState(clients=tuple(LedgerClient(k, k, earned=e) for k, e in ledger)),
    )
    if model is not None:
        acc = dataclasses.replace(acc, model=model)
    chain.put(coordinator, acc.encode(), COORDINATOR_PROGRAM_ID)


def seed_authorization(
    chain: FakeChain, grantee: Pubkey, *, active: bool = True, delegates: tuple[Pubkey, ...] = ()
) -> Pubkey:
    address, bump = pda.find_authorization(OWNER, grantee)
    auth = Authorization(bump, OWNER, grantee, JOIN_RUN_AUTHORIZATION_SCOPE, active, delegates, 0)
    chain.put(address, auth.encode(), AUTHORIZER_PROGRAM_ID)
    return address


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
