"""Run-owner operations on a live run: set-future-epoch-rates, checkpoint, tick, treasurer-top-up-rewards."""

from __future__ import annotations

import json
import time

import click

from psyche.manager.app import App
from psyche.manager.commands.common import (
    Session,
    chain_command,
    emit,
    env_option,
    fields,
    run_id_option,
    treasurer_index_option,
)


@chain_command("set-future-epoch-rates", wallet=True)
@run_id_option
@treasurer_index_option
@env_option(
    "--earning-rate-total-shared",
    env="EARNING_RATE_TOTAL_SHARED",
    help="Points shared by the clients finishing an epoch: a token UI amount for a treasurer-backed run, "
    "else whole points.",
)
@env_option(
    "--slashing-rate-per-client",
    env="SLASHING_RATE_PER_CLIENT",
    help="Points slashed per ejected client (same units as the earning rate).",
)
def set_future_epoch_rates(
    app: App,
    as_json: bool,
    run_id: str,
    treasurer_index: int | None,
    earning_rate_total_shared: str | None,
    slashing_rate_per_client: str | None,
) -> None:
    """Set the reward rates that apply from the next epoch's warmup."""
    from psyche.manager.operations.admin import set_future_epoch_rates as set_rates

    rates = set_rates(
        Session(app),
        run_id,
        earning_rate_total_shared=earning_rate_total_shared,
        slashing_rate_per_client=slashing_rate_per_client,
        treasurer_index=treasurer_index,
    )
    earning, slashing = rates.earning_rate_total_shared, rates.slashing_rate_per_client
    rows: list[tuple[str, object]] = [
        ("Earning rate (points)", "unchanged" if earning is None else earning),
        ("Slashing rate (points)", "unchanged" if slashing is None else slashing),
    ]
    data = {
        "run_id": run_id,
        "signature": rates.signature,
        "earning_rate_total_shared": earning,
        "slashing_rate_per_client": slashing,
    }
    emit(
        app,
        as_json,
        data,
        [f"Set future epoch rates of {run_id} with transaction: {rates.signature}", *fields(rows)],
    )


@chain_command("checkpoint", wallet=True)
@run_id_option
@env_option("--repo", env="REPO", required=True, help="Hugging Face repo id of the new checkpoint.")
@env_option("--revision", env="REVISION", help="Revision (commit) of the repo.")
def checkpoint(app: App, as_json: bool, run_id: str, repo: str, revision: str | None) -> None:
    """Announce a new Hub checkpoint for the run (signed by a client of the current epoch)."""
    from psyche.manager.operations.admin import announce_checkpoint

    signature = announce_checkpoint(Session(app), run_id, repo, revision)
    where = repo if revision is None else f"{repo}@{revision}"
    data = {"run_id": run_id, "signature": signature, "repo": repo, "revision": revision}
    emit(
        app,
        as_json,
        data,
        [f"Checkpoint {where} announced on run {run_id} with transaction: {signature}"],
    )


_MAX_MS_INTERVAL = 86_400_000  # one day


@chain_command("tick", wallet=True)
@run_id_option
@env_option(
    "--ms-interval",
    env="MS_INTERVAL",
    # Bounded so a typo fails before the first tick is sent, not in time.sleep after it.
    type=click.IntRange(0, _MAX_MS_INTERVAL),
    default=1000,
    show_default=True,
    help="Milliseconds between ticks (at most one day).",
)
@env_option("--count", env="COUNT", type=click.IntRange(1), help="Number of ticks. [default: until Ctrl-C]")
def tick(app: App, as_json: bool, run_id: str, ms_interval: int, count: int | None) -> None:
    """Send tick transactions (the first at once), printing each signature and its logs."""
    from psyche.chain.transactions import SentTransaction
    from psyche.manager.operations.admin import tick as send_ticks

    session = Session(app)

    def show(number: int, sent: SentTransaction) -> None:
        if as_json:
            record = {"tick": number, "signature": str(sent.signature), "slot": sent.slot, "logs": sent.logs}
            app.ui.data(json.dumps(record))
            return
        app.ui.data(f"Tick {number}: {sent.signature}")
        for line in session.explorer(sent.logs):
            app.ui.data(f"  {line}")

    send_ticks(session, run_id, count=count, interval_s=ms_interval / 1000, on_tick=show, sleep=time.sleep)


@chain_command("treasurer-top-up-rewards", wallet=True)
@run_id_option
@treasurer_index_option
@env_option(
    "--collateral-amount",
    env="COLLATERAL_AMOUNT",
    required=True,
    help="Token amount (UI units, e.g. 12.5) moved from your token account to the run's treasury.",
)
def treasurer_top_up_rewards(
    app: App, as_json: bool, run_id: str, treasurer_index: int | None, collateral_amount: str
) -> None:
    """Move collateral tokens from your wallet into the run's treasury (paid out as rewards)."""
    from psyche.manager.operations.admin import top_up_rewards
    from psyche.manager.operations.amounts import format_ui

    top_up = top_up_rewards(Session(app), run_id, collateral_amount, treasurer_index=treasurer_index)
    amount, decimals, total = top_up.amount, top_up.decimals, top_up.treasury_balance
    rows: list[tuple[str, object]] = [
        ("Amount", f"{format_ui(amount, decimals)} ({amount} base units)"),
        ("Treasury", f"{top_up.treasury} now holds {format_ui(total, decimals)}"),
    ]
    data = {
        "run_id": run_id,
        "signature": top_up.signature,
        "amount": amount,
        "decimals": decimals,
        "treasury": str(top_up.treasury),
        "treasury_balance": total,
    }
    emit(app, as_json, data, [f"Topped up run {run_id} with transaction: {top_up.signature}", *fields(rows)])
