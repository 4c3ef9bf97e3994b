"""Run-owner operations on a live run: set-future-epoch-rates, checkpoint, tick, treasurer-top-up-rewards."""

from __future__ import annotations

import json
import time

import click

from psyche.errors import ConfigError
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
    from psyche.chain import instructions as ix
    from psyche.chain.queries import fetch_run
    from psyche.manager.commands.format import to_base_units
    from psyche.manager.commands.runs import load_treasurer_view

    if earning_rate_total_shared is None and slashing_rate_per_client is None:
        raise ConfigError("give --earning-rate-total-shared and/or --slashing-rate-per-client")
    session = Session(app)
    programs = session.programs
    run = fetch_run(session.rpc, run_id, programs)
    view = load_treasurer_view(session, run_id, treasurer_index)
    decimals = 0 if view is None else view.decimals

    def native(text: str | None, flag: str) -> int | None:
        if text is None:
            return None
        value = to_base_units(text, decimals, flag)
        if view is None and to_base_units(text, 6, flag) != value * 10**6:
            raise ConfigError(
                f"{flag}: run {run_id!r} has no treasurer, so rates are whole points, got {text!r}"
            )
        return value

    earning = native(earning_rate_total_shared, "--earning-rate-total-shared")
    slashing = native(slashing_rate_per_client, "--slashing-rate-per-client")
    payer = session.payer.pubkey()
    accounts = (run.instance_address, run.coordinator_address)
    if view is not None:
        instruction = ix.run_update(
            payer,
            view.address,
            *accounts,
            epoch_earning_rate_total_shared=earning,
            epoch_slashing_rate_per_client=slashing,
            program_id=programs.treasurer,
            coordinator_program_id=programs.coordinator,
        )
    else:
        instruction = ix.set_future_epoch_rates(
            payer,
            *accounts,
            earning_rate_total_shared=earning,
            slashing_rate_per_client=slashing,
            program_id=programs.coordinator,
        )
    sent = session.send([instruction])
    rows: list[tuple[str, object]] = [
        ("Earning rate (points)", "unchanged" if earning is None else earning),
        ("Slashing rate (points)", "unchanged" if slashing is None else slashing),
    ]
    data = {
        "run_id": run_id,
        "signature": str(sent.signature),
        "earning_rate_total_shared": earning,
        "slashing_rate_per_client": slashing,
    }
    emit(
        app,
        as_json,
        data,
        [f"Set future epoch rates of {run_id} with transaction: {sent.signature}", *fields(rows)],
    )


@chain_command("checkpoint", wallet=True)
@run_id_option
@env_option("--repo", env="REPO", required=True, help="Hugging Face repo id of the new checkpoint.")
@env_option("--revision", env="REVISION", help="Revision (commit) of the repo.")
def checkpoint(app: App, as_json: bool, run_id: str, repo: str, revision: str | None) -> None:
    """Announce a new Hub checkpoint for the run (signed by a client of the current epoch)."""
    from psyche.chain import instructions as ix
    from psyche.chain.accounts.model import Checkpoint
    from psyche.chain.queries import fetch_run

    for flag, value in (("--repo", repo), ("--revision", revision)):
        if value is not None and len(value.encode("utf-8")) > 64:
            raise ConfigError(f"{flag} must be 64 bytes or less, got {len(value.encode('utf-8'))} bytes")
    session = Session(app)
    programs = session.programs
    run = fetch_run(session.rpc, run_id, programs)
    payer = session.payer.pubkey()
    if all(c.signer != payer for c in run.coordinator.epoch_state.clients):
        raise ConfigError(
            f"your wallet {payer} is not a client of run {run_id!r}'s current epoch; "
            "only an epoch client may announce a checkpoint"
        )
    sent = session.send(
        [
            ix.checkpoint(
                payer,
                run.instance_address,
                run.coordinator_address,
                Checkpoint.hub(repo, revision),
                program_id=programs.coordinator,
            )
        ]
    )
    where = repo if revision is None else f"{repo}@{revision}"
    data = {"run_id": run_id, "signature": str(sent.signature), "repo": repo, "revision": revision}
    emit(
        app,
        as_json,
        data,
        [f"Checkpoint {where} announced on run {run_id} with transaction: {sent.signature}"],
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
    from psyche.chain import instructions as ix
    from psyche.chain.queries import fetch_run

    session = Session(app)
    programs = session.programs
    run = fetch_run(session.rpc, run_id, programs)
    if run.state.halted:
        raise ConfigError(f"run {run_id!r} is halted ({run.state.display}): a halted run does not tick")
    payer = session.payer.pubkey()
    instruction = ix.tick(
        payer, run.instance_address, run.coordinator_address, program_id=programs.coordinator
    )
    sent_count = 0
    last = None
    while count is None or sent_count < count:
        if sent_count:
            time.sleep(ms_interval / 1000)
        sent = session.send([instruction], after=last)
        last = sent.blockhash
        sent_count += 1
        if as_json:
            record = {
                "tick": sent_count,
                "signature": str(sent.signature),
                "slot": sent.slot,
                "logs": sent.logs,
            }
            app.ui.data(json.dumps(record))
        else:
            app.ui.data(f"Tick {sent_count}: {sent.signature}")
            for line in session.explorer(sent.logs):
                app.ui.data(f"  {line}")


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
    from psyche.chain import instructions as ix
    from psyche.chain import pda
    from psyche.chain.accounts.token import TokenAccount
    from psyche.manager.commands.format import format_ui, to_base_units
    from psyche.manager.commands.runs import load_treasurer_view

    session = Session(app)
    view = load_treasurer_view(session, run_id, treasurer_index)
    if view is None:
        raise ConfigError(f"run {run_id!r} has no treasurer: only a treasurer-backed run holds rewards")
    amount = to_base_units(collateral_amount, view.decimals, "--collateral-amount")
    if amount == 0:
        raise ConfigError(
            f"--collateral-amount: {collateral_amount} is 0 base units (decimals {view.decimals})"
        )
    payer = session.payer.pubkey()
    mint = view.run.collateral_mint
    source = pda.associated_token_account(payer, mint)
    vault = pda.associated_token_account(view.address, mint)
    info = session.rpc.get_account_info(source)
    balance = 0 if info is None else TokenAccount.decode(info.data).amount
    if balance < amount:
        raise ConfigError(
            f"your token account {source} holds {format_ui(balance, view.decimals)} of mint {mint}, "
            f"less than {format_ui(amount, view.decimals)}"
        )
    sent = session.send([ix.token_transfer(source, vault, payer, amount)])
    total = view.vault_balance + amount
    rows: list[tuple[str, object]] = [
        ("Amount", f"{format_ui(amount, view.decimals)} ({amount} base units)"),
        ("Treasury", f"{vault} now holds {format_ui(total, view.decimals)}"),
    ]
    data = {
        "run_id": run_id,
        "signature": str(sent.signature),
        "amount": amount,
        "decimals": view.decimals,
        "treasury": str(vault),
        "treasury_balance": total,
    }
    emit(app, as_json, data, [f"Topped up run {run_id} with transaction: {sent.signature}", *fields(rows)])
