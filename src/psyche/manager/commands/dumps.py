"""The exact JSON shapes of json-dump-run and json-dump-user (spec onchain.md 7.4) from decoded accounts."""

from __future__ import annotations

import math
from typing import Any

from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import CoordinatorAccount, EpochClient
from psyche.chain.accounts.treasurer import Participant
from psyche.chain.queries import Run
from psyche.manager.commands.format import node_id8
from psyche.manager.operations.amounts import ui_amount
from psyche.manager.operations.runs import TreasurerView


def _finite_or_none(value: float) -> float | None:
    # serde_json writes non-finite floats as null.
    return value if math.isfinite(value) else None


def _epoch_clients(clients: tuple[EpochClient, ...]) -> dict[str, str]:
    return {node_id8(c.signer): c.state.name for c in clients}


def coordinator_json(address: Pubkey, account: CoordinatorAccount) -> dict[str, Any]:
    """The ``coordinator_account`` object of json-dump-run."""
    state = account.clients_state
    ledger = state.clients
    return {
        "address": str(address),
        "run_id": account.run_id,
        "setup": {
            "client_version": account.client_version,
            "metadata": account.metadata.to_serde(),
            "model": account.model.to_serde(),
            "config": account.config.to_serde(),
        },
        "status": {
            "next_active": state.next_active,
            "state": account.run_state.display,
            "epoch": account.progress.epoch,
            "step": account.progress.step,
        },
        "epoch": {
            "clients": {
                "alive": _epoch_clients(account.epoch_state.clients),
                "exited": _epoch_clients(account.epoch_state.exited_clients),
            },
            "rates": {
                "current": {
                    "earning": state.current_epoch_rates.earning_rate_total_shared,
                    "slashing": state.current_epoch_rates.slashing_rate_per_client,
                },
                "future": {
                    "earning": state.future_epoch_rates.earning_rate_total_shared,
                    "slashing": state.future_epoch_rates.slashing_rate_per_client,
                },
            },
        },
        "clients": {
            node_id8(c.signer): {"active": c.active, "earned": c.earned, "slashed": c.slashed} for c in ledger
        },
        "accounting": {
            "max_active": max((c.active for c in ledger), default=None),
            "sum_earned": sum(c.earned for c in ledger),
            "sum_slashed": sum(c.slashed for c in ledger),
        },
        "nonce": account.nonce,
    }


def treasurer_json(view: TreasurerView, account: CoordinatorAccount) -> dict[str, Any]:
    """The ``treasurer_run`` funding summary of json-dump-run."""
    run = view.run
    sum_earned = sum(c.earned for c in account.clients_state.clients)
    unclaimed = max(sum_earned - run.total_claimed_earned_points, 0)
    balance = view.vault_balance
    surplus = max(balance - unclaimed, 0)
    burn = account.clients_state.current_epoch_rates.earning_rate_total_shared

    def ui(base: int) -> float:
        return ui_amount(base, view.decimals)

    estimated = ui(surplus) / ui(burn) if burn else (math.nan if surplus == 0 else math.inf)
    return {
        "address": str(view.address),
        "index": run.index,
        "main_authority": str(run.main_authority),
        "join_authority": str(run.join_authority),
        "total_claimed_earned_points": run.total_claimed_earned_points,
        "total_claimable_earned_points": sum_earned,
        "total_unclaimed_earned_points": unclaimed,
        "collateral_mint": str(run.collateral_mint),
        "funded_collateral_amount": ui(balance),
        "total_missing_collateral_amount": ui(max(unclaimed - balance, 0)),
        "total_surplus_collateral_amount": ui(surplus),
        "burn_collateral_amount_per_epoch": ui(burn),
        "estimated_funded_epochs_count": _finite_or_none(estimated),
    }


def dump_run(run: Run, treasurer: TreasurerView | None) -> dict[str, Any]:
    """The whole json-dump-run document."""
    return {
        "coordinator_instance": {
            "address": str(run.instance_address),
            "join_authority": str(run.instance.join_authority),
            "main_authority": str(run.instance.main_authority),
        },
        "coordinator_account": coordinator_json(run.coordinator_address, run.coordinator),
        "treasurer_run": None if treasurer is None else treasurer_json(treasurer, run.coordinator),
    }


def _epoch_entry(clients: tuple[EpochClient, ...], user: Pubkey) -> dict[str, Any] | None:
    for client in clients:
        if client.signer == user:
            return {"state": client.state.name, "exited_height": client.exited_height}
    return None


def dump_user(
    user: Pubkey,
    lamports: int,
    account: CoordinatorAccount,
    treasurer: TreasurerView | None,
    participant: Participant | None,
    token_balance: int | None,
) -> dict[str, Any]:
    """The whole json-dump-user document (``token_balance`` None: the user has no token account)."""
    ledger = next((c for c in account.clients_state.clients if c.signer == user), None)
    participant_json: dict[str, Any] | None = None
    if treasurer is not None:
        decimals = treasurer.decimals
        participant_json = {
            "collateral_mint": str(treasurer.run.collateral_mint),
            "collateral_amount": ui_amount(token_balance or 0, decimals),
            "claimed_earned_points": None if participant is None else participant.claimed_earned_points,
            "claimed_collateral_amount": None
            if participant is None
            else ui_amount(participant.claimed_collateral_amount, decimals),
        }
    return {
        "address": str(user),
        "lamports": lamports,
        "coordinator_account": {
            "client": None
            if ledger is None
            else {"active": ledger.active, "earned": ledger.earned, "slashed": ledger.slashed},
            "epoch_alive": _epoch_entry(account.epoch_state.clients, user),
            "epoch_exited": _epoch_entry(account.epoch_state.exited_clients, user),
        },
        "treasurer_participant": participant_json,
    }
