"""Run-owner lifecycle commands: create-run, update-config, set-paused, close-run, json-dump-run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from psyche.manager.app import App
from psyche.manager.commands.common import (
    Session,
    chain_command,
    emit,
    env_option,
    fields,
    parse_pubkey,
    pubkey_option,
    run_id_option,
    sent_in,
    treasurer_index_option,
)


@chain_command("create-run", wallet=True)
@run_id_option
@env_option("-c", "--client-version", env="CLIENT_VERSION", required=True, help="Client image tag or sha256.")
@treasurer_index_option
@pubkey_option(
    "--treasurer-collateral-mint",
    env="TREASURER_COLLATERAL_MINT",
    help="Create a treasurer-backed run that pays rewards in this token.",
)
@pubkey_option("--join-authority", help="Key that authorizes joins. [default: the wallet]")
def create_run(
    app: App,
    as_json: bool,
    run_id: str,
    client_version: str,
    treasurer_index: int | None,
    treasurer_collateral_mint: str | None,
    join_authority: str | None,
) -> None:
    """Create a run (Uninitialized), optionally backed by a treasurer holding collateral rewards."""
    from psyche.manager.commands.format import format_sol
    from psyche.manager.operations.runs import create_run as create

    created = create(
        Session(app),
        run_id,
        client_version,
        treasurer_index=treasurer_index,
        treasurer_collateral_mint=parse_pubkey(treasurer_collateral_mint)
        if treasurer_collateral_mint
        else None,
        join_authority=parse_pubkey(join_authority) if join_authority else None,
    )
    rows: list[tuple[str, object]] = [
        ("Instance account", created.instance),
        ("Coordinator account", created.coordinator_account),
        ("Join authority", created.join_authority),
        ("Locked for storage", f"{format_sol(created.locked_lamports)} SOL"),
    ]
    data: dict[str, object] = {
        "run_id": run_id,
        "signature": created.signature,
        "instance": str(created.instance),
        "coordinator_account": str(created.coordinator_account),
        "join_authority": str(created.join_authority),
        "locked_lamports": created.locked_lamports,
        "treasurer_run": None,
        "treasurer_index": None,
    }
    if created.treasurer_run is not None:
        rows.append(("Treasurer run", f"{created.treasurer_run} (index {created.treasurer_index})"))
        data.update(treasurer_run=str(created.treasurer_run), treasurer_index=created.treasurer_index)
    emit(app, as_json, data, [f"Created run {run_id} with transaction: {created.signature}", *fields(rows)])


@chain_command("close-run", wallet=True)
@run_id_option
def close_run(app: App, as_json: bool, run_id: str) -> None:
    """Close a halted run and recover the rent of its two accounts."""
    from psyche.manager.commands.format import format_sol
    from psyche.manager.operations.runs import close_run as close

    session = Session(app)
    closed = close(session, run_id)
    lines = [
        f"Closed run {run_id} with transaction: {closed.signature}",
        f"Recovered {format_sol(closed.recovered_lamports)} SOL",
        "===== Logs =====",
        *session.explorer(closed.logs),
    ]
    data = {
        "run_id": run_id,
        "signature": closed.signature,
        "recovered_lamports": closed.recovered_lamports,
        "logs": closed.logs,
    }
    emit(app, as_json, data, lines)


@chain_command("update-config", wallet=True)
@run_id_option
@treasurer_index_option
@env_option(
    "--config-path",
    env="CONFIG_PATH",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Run config TOML with [config] and [model] (docs/commands.md).",
)
@env_option(
    "--restart-from-step",
    env="RESTART_FROM_STEP",
    type=click.IntRange(1, 2**32 - 1),
    help="Restart training at this step (recomputes the epoch's start data index).",
)
@env_option(
    "--switch-to-hub",
    env="SWITCH_TO_HUB",
    is_flag=True,
    default=None,
    help="Turn a P2P or Dummy checkpoint into Hub.",
)
@click.option("--name", help="Run name (64 bytes at most).")
@click.option("--description", help="Run description (280 bytes at most).")
@click.option(
    "--num-parameters", type=click.IntRange(0, 2**64 - 1), help="Model parameter count shown to users."
)
@click.option("--vocab-size", type=click.IntRange(0, 2**64 - 1), help="Vocabulary size shown to users.")
@env_option(
    "--client-version",
    env="CLIENT_VERSION",
    help="New client version; clients restart onto it (exit code 10). As the reference, CLIENT_VERSION in "
    "the .env or the shell fills it too.",
)
def update_config(
    app: App,
    as_json: bool,
    run_id: str,
    treasurer_index: int | None,
    config_path: Path | None,
    restart_from_step: int | None,
    switch_to_hub: bool | None,
    name: str | None,
    description: str | None,
    num_parameters: int | None,
    vocab_size: int | None,
    client_version: str | None,
) -> None:
    """Change a run's config, model, progress, metadata or client version (most need a halted run)."""
    from psyche.manager.operations.runs import ConfigUpdate
    from psyche.manager.operations.runs import update_config as update

    asked = ConfigUpdate(
        config_path=config_path,
        restart_from_step=restart_from_step,
        switch_to_hub=bool(switch_to_hub),
        name=name,
        description=description,
        num_parameters=num_parameters,
        vocab_size=vocab_size,
        client_version=client_version,
    )
    updated = update(Session(app), run_id, asked, treasurer_index=treasurer_index)
    plan, signatures = updated.plan, updated.signatures
    changed = plan.parts()
    rows: list[tuple[str, object]] = [("Changed", ", ".join(changed))]
    if plan.client_version is not None:
        rows.append(("Client version", f"{updated.previous_client_version} -> {plan.client_version}"))
    if plan.progress is not None:
        rows.append(
            ("Restart from step", f"{plan.progress.step} (data index {plan.progress.epoch_start_data_index})")
        )
    data = {
        "run_id": run_id,
        "signature": signatures[-1],
        "signatures": signatures,
        "changed": changed,
        "client_version": plan.client_version,
        "treasurer_run": None if updated.treasurer_run is None else str(updated.treasurer_run),
    }
    emit(app, as_json, data, [f"Updated config of {run_id} with {sent_in(signatures)}", *fields(rows)])


@chain_command("set-paused", wallet=True)
@run_id_option
@treasurer_index_option
@env_option(
    "--resume", env="RESUME", is_flag=True, default=None, help="Resume the run instead of pausing it."
)
def set_paused(
    app: App, as_json: bool, run_id: str, treasurer_index: int | None, resume: bool | None
) -> None:
    """Pause a run (at the end of the epoch if one is training) or resume it."""
    from psyche.chain.accounts.coordinator import RunState
    from psyche.manager.operations.runs import set_paused as pause

    paused = not resume
    outcome = pause(Session(app), run_id, paused=paused, treasurer_index=treasurer_index)
    state = outcome.state_before
    data: dict[str, object] = {"run_id": run_id, "paused": paused, "signature": None, "state": state.display}
    if outcome.signature is None and paused:
        why = "never started" if state == RunState.Uninitialized else state.display.lower()
        emit(app, as_json, data, [f"Run {run_id} is already halted ({why}); nothing to pause"])
        return
    if outcome.signature is None:
        emit(app, as_json, data, [f"Run {run_id} is already running ({state.display}); nothing to resume"])
        return
    assert outcome.state_after is not None
    if paused and outcome.pending_pause and not outcome.state_after.halted:
        said = "pause pending: the run finishes this epoch through Cooldown, then pauses"
    else:
        said = f"run is now {outcome.state_after.display}"
    data.update(
        signature=outcome.signature, state=outcome.state_after.display, pending_pause=outcome.pending_pause
    )
    lines = [
        f"Set pause state to {str(paused).lower()} on run {run_id} with transaction: {outcome.signature}",
        said,
    ]
    emit(app, as_json, data, lines)


@chain_command("json-dump-run", wallet=False)
@run_id_option
@treasurer_index_option
def json_dump_run(app: App, as_json: bool, run_id: str, treasurer_index: int | None) -> None:
    """Print the run's instance, coordinator state, clients and treasurer funding as JSON."""
    from psyche.manager.commands.dumps import dump_run
    from psyche.manager.operations.runs import load_run

    del as_json  # the output is JSON either way
    run, view = load_run(Session(app), run_id, treasurer_index)
    app.ui.data(json.dumps(dump_run(run, view), indent=2))
