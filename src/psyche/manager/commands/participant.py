"""Participant commands: can-join, treasurer-claim-rewards, list-runs and json-dump-user."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from psyche.errors import WalletError
from psyche.manager.app import App
from psyche.manager.commands.common import (
    Session,
    chain_command,
    emit,
    fields,
    parse_pubkey,
    pubkey_option,
    run_id_option,
    treasurer_index_option,
)
from psyche.manager.constants import EnvVars

if TYPE_CHECKING:
    from solders.pubkey import Pubkey

    from psyche.manager.operations.participant import Claim, RunListing

F = TypeVar("F", bound=Callable[..., Any])


def _address_option(required: bool, help_text: str) -> Callable[[F], F]:
    return pubkey_option(
        "--address", "--wallet", "--user", "address", env="ADDRESS", required=required, help=help_text
    )


@chain_command("can-join", wallet=True)
@run_id_option
@pubkey_option(
    "--authorizer",
    env="AUTHORIZER",
    help="The grantee the run owner authorized (your master key if you are a delegate). "
    "[default: 111…1, a permissionless run]",
)
@_address_option(False, "The key to check. [default: the wallet's public key]")
def can_join(app: App, as_json: bool, run_id: str, authorizer: str | None, address: str | None) -> None:
    """Check that a key may join a run (exit 0) or say why not (exit 1); at most 2 RPC round trips."""
    from psyche.manager.operations.decisions import grantee_label
    from psyche.manager.operations.participant import can_join as decide

    session = Session(app)
    if address is None:
        try:
            address = app.wallet.pubkey
        except WalletError as exc:
            raise WalletError(
                exc.message, hint="pass --address <PUBKEY> to check a key without a wallet"
            ) from exc
    user = parse_pubkey(address)
    decision = decide(session, run_id, user, parse_pubkey(authorizer) if authorizer else None)
    check, refusal, chosen = decision.check, decision.refusal, decision.chosen
    data = {
        "run_id": run_id,
        "address": str(user),
        "can_join": refusal is None,
        "reason": refusal,
        "state": check.run.state.display,
        "join_authority": str(check.run.instance.join_authority),
        "grantee": None if chosen is None else str(chosen[0]),
        "authorization": None if chosen is None else str(chosen[1]),
        "tried": [{"grantee": str(g), "authorization": str(a), "outcome": o} for g, a, o in check.tried],
        "rpc_round_trips": session.reader.round_trips,
    }
    refused = decision.error()
    if refused is not None:
        if as_json:
            emit(app, True, data, [])
        raise refused
    assert chosen is not None
    lines = [
        f"✓ Can join run {run_id} as {user}",
        *fields(
            [
                ("Authorization", f"{chosen[1]} (grantee {grantee_label(chosen[0])})"),
                ("Join authority", check.run.instance.join_authority),
                ("Run state", check.run.state.display),
                ("Client version", check.run.client_version),
            ]
        ),
        "Predownload the model: psyche-solana-client predownload "
        f"--run-id {run_id} --model --eval-tasks <TASKS>",
    ]
    emit(app, as_json, data, lines)


@chain_command("treasurer-claim-rewards", wallet=True)
@run_id_option
@treasurer_index_option
def treasurer_claim_rewards(app: App, as_json: bool, run_id: str, treasurer_index: int | None) -> None:
    """Claim earned points as collateral tokens (creates your token account and participant if missing)."""
    from psyche.manager.operations.participant import claim_rewards

    claim = claim_rewards(Session(app), run_id, treasurer_index=treasurer_index)
    emit(app, as_json, *_claim_output(run_id, claim))


def _claim_output(run_id: str, claim: Claim) -> tuple[dict[str, object], list[str]]:
    from psyche.manager.operations.amounts import format_ui
    from psyche.manager.operations.decisions import nothing_to_claim

    rewards, plan = claim.rewards, claim.plan
    decimals = rewards.mint.decimals
    data: dict[str, object] = {
        "run_id": run_id,
        "address": str(rewards.user),
        "treasurer_run": str(rewards.treasurer_address),
        "collateral_mint": str(rewards.treasurer.collateral_mint),
        "decimals": decimals,
        "earned_points": rewards.earned,
        "claimed_points": rewards.claimed,
        "claimable_points": rewards.claimable,
        "treasury_balance": rewards.treasury_balance,
        "paid_points": 0,
        "signature": None,
    }
    rows: list[tuple[str, object]] = [
        ("Treasurer run", rewards.treasurer_address),
        ("Earned points", rewards.earned),
        ("Already claimed", rewards.claimed),
        (
            "Claimable now",
            f"{rewards.claimable} (treasury holds {format_ui(rewards.treasury_balance, decimals)})",
        ),
    ]
    if claim.signature is None:
        rows.append(("Paid", 0))
        return {**data, "message": nothing_to_claim(rewards)}, [*fields(rows), nothing_to_claim(rewards)]
    rows += [
        (
            "Paid",
            f"{plan.amount} points = {format_ui(plan.amount, decimals)} tokens "
            f"to {rewards.user_token_account}",
        ),
        ("Transaction", claim.signature),
    ]
    if plan.create_token_account:
        rows.append(("Created token account", rewards.user_token_account))
    if plan.create_participant:
        rows.append(("Created participant", claim.participant))
    data.update(paid_points=plan.amount, signature=claim.signature)
    return data, fields(rows)


@chain_command("list-runs", wallet=True)
@click.option(
    "--coordinator-program-id",
    type=click.UNPROCESSED,
    expose_value=False,
    callback=lambda ctx, _p, v: _override_program(ctx, v),
    help="Coordinator program. [env var: COORDINATOR_PROGRAM_ID, also read from the .env]",
)
@pubkey_option("--authorizer", help="Only runs whose join authority is this key.")
@_address_option(
    False,
    "Whose joinable runs to list (through its own, anyone's or AUTHORIZER's authorization). "
    "[default: the wallet's public key; with --all and no wallet flag: only permissionless runs count]",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List every run (joinable ones first) instead of only the runs the key can join; needs no wallet.",
)
def list_runs(app: App, as_json: bool, authorizer: str | None, address: str | None, show_all: bool) -> None:
    """List the runs the wallet can join (the reference's table); --all lists every run, joinable first."""
    from psyche.manager.commands.format import run_table_row
    from psyche.manager.operations.participant import list_runs as listing

    session = Session(app)
    programs = session.programs
    if address is None and not show_all:
        try:
            address = app.wallet.pubkey  # as the reference: joinable for the wallet that would join
        except WalletError as exc:
            raise WalletError(
                exc.message, hint="pass --address <PUBKEY>, or --all to list every run without a wallet"
            ) from exc
    user = parse_pubkey(address) if address else None
    found = listing(
        session,
        user=user,
        extra_grantee=parse_pubkey(app.settings.authorizer) if app.settings.authorizer else None,
        join_authority=authorizer,
        every_run=show_all,
        warn=app.ui.warning,
    )
    now = int(time.time())
    rows = [
        run_table_row(
            r.run_id, r.state, r.num_clients, r.min_clients, r.epoch_time, r.epoch_start_timestamp, now
        )
        for r in found.listed
    ]
    if as_json:
        app.ui.data(json.dumps(_run_records(found, rows), indent=2))
        return
    for line in _listing_lines(found, rows, programs.coordinator, user, show_all):
        app.ui.data(line)


def _run_records(found: RunListing, rows: Sequence[Sequence[str]]) -> list[dict[str, object]]:
    return [
        {
            "run_id": r.run_id,
            "state": r.state.display,
            "clients": row[2],
            "num_clients": r.num_clients,
            "min_clients": r.min_clients,
            "epoch_time": r.epoch_time,
            "epoch_start_timestamp": r.epoch_start_timestamp,
            "time_left": row[4],
            "joinable": found.is_joinable(r),
            "join_authority": str(r.instance.join_authority),
            "client_version": r.client_version,
            "instance": str(r.instance_address),
            "coordinator_account": str(r.coordinator_address),
        }
        for r, row in zip(found.listed, rows, strict=True)
    ]


def _listing_lines(
    found: RunListing, rows: Sequence[Sequence[str]], coordinator: Pubkey, user: Pubkey | None, show_all: bool
) -> list[str]:
    from psyche.manager.commands.format import RUN_TABLE_HEADER, format_table

    if not found.scanned_any:
        return [f"No runs found on coordinator program {coordinator}"]
    by = f" by {user}" if user is not None else " by anyone"
    if show_all:
        head = f"Found {len(found.runs)} run(s), {len(found.joinable)} joinable{by}:"
    elif not found.listed:
        return ["No available runs to join"]  # the reference's words
    else:
        head = f"Found {len(found.listed)} joinable run(s){by}:"
    return [head, *format_table(RUN_TABLE_HEADER, rows)]


def _override_program(ctx: click.Context, value: str | None) -> None:
    app = ctx.find_object(App)
    if value is not None and app is not None:
        app.overrides[EnvVars.COORDINATOR_PROGRAM_ID] = (value, "--coordinator-program-id")


@chain_command("json-dump-user", wallet=False)
@run_id_option
@treasurer_index_option
@_address_option(True, "The user's public key.")
def json_dump_user(app: App, as_json: bool, run_id: str, treasurer_index: int | None, address: str) -> None:
    """Print a user's ledger entry, epoch state, balance and treasurer claims as JSON."""
    from psyche.manager.commands.dumps import dump_user
    from psyche.manager.operations.participant import load_user

    del as_json  # the output is JSON either way
    user = parse_pubkey(address)
    seen = load_user(Session(app), run_id, user, treasurer_index=treasurer_index)
    dump = dump_user(
        user, seen.lamports, seen.run.coordinator, seen.treasurer, seen.participant, seen.token_balance
    )
    app.ui.data(json.dumps(dump, indent=2))
