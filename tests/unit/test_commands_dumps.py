"""json-dump-run/-user shapes, update-config planning and join refusal reasons, from made-up accounts."""

from __future__ import annotations

import dataclasses

import pytest
from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import (
    ClientsState,
    ClientState,
    CoordinatorAccount,
    EpochClient,
    EpochRates,
    EpochState,
    LedgerClient,
    RunState,
)
from psyche.chain.accounts.instance import CoordinatorInstance
from psyche.chain.accounts.model import Checkpoint, CheckpointKind, CoordinatorConfig, HubRepo
from psyche.chain.accounts.treasurer import Participant, TreasurerRun
from psyche.chain.programs import PERMISSIONLESS_GRANTEE
from psyche.chain.queries import JoinCheck, Run
from psyche.errors import ConfigError
from psyche.manager.commands.dumps import dump_run, dump_user
from psyche.manager.operations.decisions import join_refusal
from psyche.manager.operations.plans import config_problems, plan_update, start_data_index, switch_to_hub
from psyche.manager.operations.runs import TreasurerView

A = Pubkey(bytes([1, 2, 3, 4]) + bytes(28))
B = Pubkey(bytes([9]) * 32)
OWNER = Pubkey(bytes([7]) * 32)
INSTANCE = Pubkey(bytes([5]) * 32)
ACCOUNT = Pubkey(bytes([6]) * 32)
MINT = Pubkey(bytes([8]) * 32)


def _account(state: RunState = RunState.RoundTrain) -> CoordinatorAccount:
    base = CoordinatorAccount.initial("r1", "v1")
    return dataclasses.replace(
        base,
        run_state=state,
        epoch_state=EpochState(
            clients=(EpochClient(A, A),), exited_clients=(EpochClient(B, B, ClientState.Dropped, 3),)
        ),
        clients_state=ClientsState(
            clients=(
                LedgerClient(A, A, earned=500, active=2),
                LedgerClient(B, B, earned=300, slashed=1, active=1),
            ),
            next_active=2,
            current_epoch_rates=EpochRates(1_000_000, 0),
            future_epoch_rates=EpochRates(2_000_000, 5),
        ),
        nonce=11,
    )


def _run(state: RunState = RunState.RoundTrain) -> Run:
    instance = CoordinatorInstance(
        bump=255, main_authority=OWNER, join_authority=OWNER, coordinator_account=ACCOUNT, run_id="r1"
    )
    return Run(INSTANCE, instance, _account(state))


def _treasurer(balance: int) -> TreasurerView:
    run = TreasurerRun(252, 7, OWNER, OWNER, ACCOUNT, INSTANCE, MINT, 100, 100)
    return TreasurerView(Pubkey(bytes([3]) * 32), run, 6, balance)


def test_dump_run_shape() -> None:
    dump = dump_run(_run(), _treasurer(2_000_000))
    assert list(dump) == ["coordinator_instance", "coordinator_account", "treasurer_run"]
    account = dump["coordinator_account"]
    assert list(account) == [
        "address",
        "run_id",
        "setup",
        "status",
        "epoch",
        "clients",
        "accounting",
        "nonce",
    ]
    assert list(account["setup"]) == ["client_version", "metadata", "model", "config"]
    assert account["status"] == {"next_active": 2, "state": "Training", "epoch": 0, "step": 0}
    assert account["epoch"]["clients"] == {
        "alive": {"01020304": "Healthy"},
        "exited": {"09090909": "Dropped"},
    }
    assert account["epoch"]["rates"] == {
        "current": {"earning": 1_000_000, "slashing": 0},
        "future": {"earning": 2_000_000, "slashing": 5},
    }
    assert account["clients"]["01020304"] == {"active": 2, "earned": 500, "slashed": 0}
    assert account["accounting"] == {"max_active": 2, "sum_earned": 800, "sum_slashed": 1}
    assert account["setup"]["model"]["LLM"]["checkpoint"] == "Ephemeral"
    assert dump["treasurer_run"] == {
        "address": str(Pubkey(bytes([3]) * 32)),
        "index": 7,
        "main_authority": str(OWNER),
        "join_authority": str(OWNER),
        "total_claimed_earned_points": 100,
        "total_claimable_earned_points": 800,
        "total_unclaimed_earned_points": 700,
        "collateral_mint": str(MINT),
        "funded_collateral_amount": 2.0,
        "total_missing_collateral_amount": 0.0,
        "total_surplus_collateral_amount": 1.9993,
        "burn_collateral_amount_per_epoch": 1.0,
        "estimated_funded_epochs_count": 1.9993,
    }


def test_dump_run_without_clients_or_burn() -> None:
    empty = dataclasses.replace(_run(), coordinator=CoordinatorAccount.initial("r1", "v1"))
    dump = dump_run(empty, _treasurer(0))
    assert dump["coordinator_account"]["accounting"] == {
        "max_active": None,
        "sum_earned": 0,
        "sum_slashed": 0,
    }
    # 0 / 0 and x / 0 are NaN and inf in Rust; serde_json writes both as null.
    assert dump["treasurer_run"]["estimated_funded_epochs_count"] is None
    assert dump_run(empty, None)["treasurer_run"] is None


def test_dump_user_shape() -> None:
    user = dump_user(A, 42, _account(), _treasurer(0), Participant(255, 250_000, 250), 1_500_000)
    assert user == {
        "address": str(A),
        "lamports": 42,
        "coordinator_account": {
            "client": {"active": 2, "earned": 500, "slashed": 0},
            "epoch_alive": {"state": "Healthy", "exited_height": 0},
            "epoch_exited": None,
        },
        "treasurer_participant": {
            "collateral_mint": str(MINT),
            "collateral_amount": 1.5,
            "claimed_earned_points": 250,
            "claimed_collateral_amount": 0.25,
        },
    }
    stranger = dump_user(OWNER, 0, _account(), _treasurer(0), None, None)
    assert stranger["coordinator_account"] == {"client": None, "epoch_alive": None, "epoch_exited": None}
    assert stranger["treasurer_participant"]["claimed_earned_points"] is None
    assert stranger["treasurer_participant"]["collateral_amount"] == 0
    assert dump_user(B, 0, _account(), None, None, None)["coordinator_account"]["epoch_exited"] == {
        "state": "Dropped",
        "exited_height": 3,
    }


CONFIG = CoordinatorConfig(5, 5, 10, 2, 0, 40, 3, 2, 2, 0, 8, 8, 0, 3)


def test_plan_update_sends_only_what_changes() -> None:
    current = dataclasses.replace(_account(RunState.Paused), config=CONFIG)
    assert plan_update(current).empty
    assert plan_update(current, client_version="v1").empty  # same as on chain
    bump = plan_update(current, client_version="v2")
    assert bump.parts() == ["client_version"] and not bump.setup_changed
    meta = plan_update(current, name="n", vocab_size=32000)
    assert meta.parts() == ["metadata"] and meta.metadata is not None and meta.metadata.vocab_size == 32000
    restart = plan_update(current, restart_from_step=3)
    assert restart.progress is not None and restart.progress.epoch_start_data_index == 16
    with pytest.raises(ConfigError, match=r"^--name must be 64 bytes or less, got 65 bytes$"):
        plan_update(current, name="x" * 65)


def test_start_data_index_sums_batch_sizes() -> None:
    assert start_data_index(CONFIG, 16, 1) == 0
    assert start_data_index(CONFIG, 16, 3) == 16
    assert start_data_index(CONFIG, 16, 4) == 0  # beyond total_steps
    ramp = dataclasses.replace(
        CONFIG, global_batch_size_warmup_tokens=1000, global_batch_size_start=2, total_steps=10
    )
    assert start_data_index(ramp, 100, 3) == 2 + 3


def test_switch_to_hub_and_config_problems() -> None:
    model = _account().model
    p2p = dataclasses.replace(model, checkpoint=Checkpoint(CheckpointKind.P2P, HubRepo("org/m", "r")))
    assert switch_to_hub(p2p).checkpoint == Checkpoint(CheckpointKind.Hub, HubRepo("org/m", "r"))
    assert switch_to_hub(model) == model
    assert config_problems(CONFIG) == []
    broken = dataclasses.replace(CONFIG, warmup_time=50, waiting_for_members_extra_time=0)
    assert config_problems(broken) == [
        "warmup_time (50) must be < epoch_time (40)",
        "waiting_for_members_extra_time must be > 0",
    ]


def _check(state: RunState, outcomes: list[tuple[Pubkey, str]], in_epoch: bool = False) -> JoinCheck:
    tried = tuple((g, INSTANCE, o) for g, o in outcomes)
    grantee = next((g for g, o in outcomes if o == "valid"), None)
    return JoinCheck(_run(state), A, grantee, tried, in_epoch)


def test_join_refusal_reasons() -> None:
    prefix = f"{A} cannot join run 'r1': "
    none = _check(
        RunState.RoundTrain,
        [(PERMISSIONLESS_GRANTEE, "no authorization account"), (A, "no authorization account")],
    )
    assert join_refusal(none, B) == (
        f"{prefix}no authorization from join authority {OWNER} for grantee {PERMISSIONLESS_GRANTEE} (anyone);"
        f" no authorization from join authority {OWNER} for grantee {A}"
    )
    with_b = _check(
        RunState.RoundTrain,
        [
            (PERMISSIONLESS_GRANTEE, "no authorization account"),
            (A, "no authorization account"),
            (B, "authorization inactive"),
        ],
    )
    assert join_refusal(with_b, B) == prefix + f"the authorization for grantee {B} is inactive"
    ok = [(PERMISSIONLESS_GRANTEE, "valid")]
    assert join_refusal(_check(RunState.Paused, ok), None) == prefix + "the run is paused"
    assert (
        join_refusal(_check(RunState.Uninitialized, ok), None)
        == prefix + "the run is not started yet (Uninitialized)"
    )
    assert join_refusal(_check(RunState.Finished, ok), None) == prefix + "the run is finished"
    assert "in the current epoch" in str(join_refusal(_check(RunState.RoundTrain, ok, in_epoch=True), None))
    assert join_refusal(_check(RunState.WaitingForMembers, ok), None) is None
