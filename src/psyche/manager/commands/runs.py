"""Run-owner lifecycle commands: create-run, update-config, set-paused, close-run, json-dump-run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from psyche.errors import ConfigError
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
    treasurer_index_option,
)
from psyche.manager.commands.dumps import TreasurerView


def load_treasurer_view(session: Session, run_id: str, index: int | None) -> TreasurerView | None:
    """The run's treasurer with its mint decimals and vault balance, or None for a run without one."""
    from psyche.chain import pda
    from psyche.chain.accounts.token import Mint, TokenAccount
    from psyche.chain.queries import fetch_treasurer
    from psyche.errors import AccountNotFound

    found = fetch_treasurer(session.rpc, run_id, index, session.programs)
    if found is None:
        return None
    address, run = found
    mint_info, vault_info = session.rpc.get_multiple_accounts(
        [run.collateral_mint, pda.associated_token_account(address, run.collateral_mint)]
    )
    if mint_info is None:
        raise AccountNotFound("collateral mint", str(run.collateral_mint))
    balance = 0 if vault_info is None else TokenAccount.decode(vault_info.data).amount
    return TreasurerView(address, run, Mint.decode(mint_info.data).decimals, balance)


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
    from solders.keypair import Keypair

    from psyche.chain import instructions as ix
    from psyche.chain import pda
    from psyche.chain.accounts.coordinator import SIZE
    from psyche.manager.commands.format import format_sol
    from psyche.manager.commands.plans import check_client_version

    pda.run_id_bytes(run_id)  # the reference's "run_id must be 32 bytes or less, got N bytes"
    check_client_version(client_version)
    if treasurer_index is not None and treasurer_collateral_mint is None:
        raise ConfigError(
            "--treasurer-index needs --treasurer-collateral-mint (a treasurer run needs a mint)"
        )
    session = Session(app)
    programs = session.programs
    payer = session.payer.pubkey()
    join = parse_pubkey(join_authority) if join_authority else payer
    instance = pda.coordinator_instance(run_id, program_id=programs.coordinator)
    if session.rpc.get_account_info(instance) is not None:
        raise ConfigError(f"run {run_id!r} already exists (instance account {instance})")
    account = Keypair()
    rent = session.rpc.get_minimum_balance_for_rent_exemption(SIZE)
    instructions = [ix.system_create_account(payer, account.pubkey(), rent, SIZE, programs.coordinator)]
    treasurer = None
    if treasurer_collateral_mint is not None:
        index = treasurer_index if treasurer_index is not None else pda.treasurer_index(run_id)
        treasurer = (pda.treasurer_run(index, program_id=programs.treasurer), index)
        instructions.append(
            ix.run_create(
                payer,
                account.pubkey(),
                parse_pubkey(treasurer_collateral_mint),
                index=index,
                run_id=run_id,
                client_version=client_version,
                main_authority=payer,
                join_authority=join,
                program_id=programs.treasurer,
                coordinator_program_id=programs.coordinator,
            )
        )
    else:
        instructions.append(
            ix.init_coordinator(
                payer,
                account.pubkey(),
                main_authority=payer,
                join_authority=join,
                run_id=run_id,
                client_version=client_version,
                program_id=programs.coordinator,
            )
        )
    sent = session.send(instructions, signers=[account])
    rows: list[tuple[str, object]] = [
        ("Instance account", instance),
        ("Coordinator account", account.pubkey()),
        ("Join authority", join),
        ("Locked for storage", f"{format_sol(rent)} SOL"),
    ]
    data: dict[str, object] = {
        "run_id": run_id,
        "signature": str(sent.signature),
        "instance": str(instance),
        "coordinator_account": str(account.pubkey()),
        "join_authority": str(join),
        "locked_lamports": rent,
        "treasurer_run": None,
        "treasurer_index": None,
    }
    if treasurer is not None:
        rows.append(("Treasurer run", f"{treasurer[0]} (index {treasurer[1]})"))
        data.update(treasurer_run=str(treasurer[0]), treasurer_index=treasurer[1])
    emit(app, as_json, data, [f"Created run {run_id} with transaction: {sent.signature}", *fields(rows)])


@chain_command("close-run", wallet=True)
@run_id_option
def close_run(app: App, as_json: bool, run_id: str) -> None:
    """Close a halted run and recover the rent of its two accounts."""
    from psyche.chain import instructions as ix
    from psyche.chain.queries import fetch_run
    from psyche.manager.commands.format import format_sol

    session = Session(app)
    programs = session.programs
    payer = session.payer.pubkey()
    run = fetch_run(session.rpc, run_id, programs)
    authority = run.instance.main_authority
    if authority != payer:
        owner = session.rpc.get_account_info(authority)
        if owner is not None and owner.owner == programs.treasurer:
            raise ConfigError(
                f"run {run_id!r} is treasurer-backed: its main authority is the treasurer run {authority}, "
                "and the treasurer program has no instruction to close it"
            )
        raise ConfigError(f"your wallet {payer} is not the main authority of run {run_id!r} ({authority})")
    infos = session.rpc.get_multiple_accounts([run.instance_address, run.coordinator_address])
    recovered = sum(info.lamports for info in infos if info is not None)
    sent = session.send(
        [
            ix.free_coordinator(
                payer, payer, run.instance_address, run.coordinator_address, program_id=programs.coordinator
            )
        ]
    )
    lines = [
        f"Closed run {run_id} with transaction: {sent.signature}",
        f"Recovered {format_sol(recovered)} SOL",
        "===== Logs =====",
        *session.explorer(sent.logs),
    ]
    data = {
        "run_id": run_id,
        "signature": str(sent.signature),
        "recovered_lamports": recovered,
        "logs": sent.logs,
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
    from typing import Any

    from solders.instruction import Instruction

    from psyche.chain import instructions as ix
    from psyche.chain.queries import fetch_run, fetch_treasurer
    from psyche.chain.runconfig import load_run_config
    from psyche.chain.transactions import PACKET_DATA_SIZE, pack, transaction_size
    from psyche.manager.commands.plans import (
        check_client_version,
        cold_start_problem,
        config_problems,
        plan_update,
    )

    if client_version is not None:
        check_client_version(client_version)  # before any chain call, even when it equals the chain's
    config = model = None
    if config_path is not None:
        config, model = load_run_config(config_path)
        problems = config_problems(config)
        cold = cold_start_problem(config, model)
        if problems or cold:
            listed = "; ".join([*problems, *([cold] if cold else [])])
            raise ConfigError(f"{config_path}: [config] fails the coordinator's sanity check: {listed}")
    session = Session(app)
    programs = session.programs
    run = fetch_run(session.rpc, run_id, programs)
    plan = plan_update(
        run.coordinator,
        config=config,
        model=model,
        restart_from_step=restart_from_step,
        to_hub=bool(switch_to_hub),
        name=name,
        description=description,
        num_parameters=num_parameters,
        vocab_size=vocab_size,
        client_version=client_version,
    )
    if plan.empty:
        raise ConfigError("this invocation would not update anything, bailing.")
    payer = session.payer.pubkey()
    treasurer = fetch_treasurer(session.rpc, run_id, treasurer_index, programs)
    accounts = (run.instance_address, run.coordinator_address)
    if treasurer is not None:

        def run_update(part: dict[str, Any]) -> Instruction:
            return ix.run_update(
                payer,
                treasurer[0],
                *accounts,
                **part,
                program_id=programs.treasurer,
                coordinator_program_id=programs.coordinator,
            )

        def fits(part: dict[str, Any]) -> bool:
            return transaction_size([run_update(part)], session.payer) <= PACKET_DATA_SIZE

        instructions = [run_update(part) for part in plan.split(fits)]
    else:
        instructions = []
        if plan.setup_changed:
            instructions.append(
                ix.update(
                    payer,
                    *accounts,
                    metadata=plan.metadata,
                    config=plan.config,
                    model=plan.model,
                    progress=plan.progress,
                    program_id=programs.coordinator,
                )
            )
        if plan.client_version is not None:
            instructions.append(
                ix.update_client_version(
                    payer, *accounts, plan.client_version, program_id=programs.coordinator
                )
            )
    signatures = [str(session.send(batch).signature) for batch in pack(instructions, session.payer)]
    changed = plan.parts()
    rows: list[tuple[str, object]] = [("Changed", ", ".join(changed))]
    if plan.client_version is not None:
        rows.append(("Client version", f"{run.client_version} -> {plan.client_version}"))
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
        "treasurer_run": None if treasurer is None else str(treasurer[0]),
    }
    sent_in = (
        f"transaction: {signatures[0]}" if len(signatures) == 1 else f"transactions: {', '.join(signatures)}"
    )
    emit(app, as_json, data, [f"Updated config of {run_id} with {sent_in}", *fields(rows)])


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
    from psyche.chain import instructions as ix
    from psyche.chain.accounts.coordinator import RunState
    from psyche.chain.queries import fetch_coordinator, fetch_run, fetch_treasurer

    session = Session(app)
    programs = session.programs
    run = fetch_run(session.rpc, run_id, programs)
    paused = not resume
    state = run.state
    data: dict[str, object] = {"run_id": run_id, "paused": paused, "signature": None, "state": state.display}
    if paused and state.halted:
        why = "never started" if state == RunState.Uninitialized else state.display.lower()
        emit(app, as_json, data, [f"Run {run_id} is already halted ({why}); nothing to pause"])
        return
    if not paused and not state.halted:
        emit(app, as_json, data, [f"Run {run_id} is already running ({state.display}); nothing to resume"])
        return
    if not paused and state == RunState.Finished:
        raise ConfigError(f"run {run_id!r} is finished and cannot be resumed")
    if not paused and run.coordinator.config.epoch_time == 0:
        raise ConfigError(
            f"run {run_id!r} has no config yet: run update-config --config-path <run.toml> before resuming"
        )
    payer = session.payer.pubkey()
    treasurer = fetch_treasurer(session.rpc, run_id, treasurer_index, programs)
    accounts = (run.instance_address, run.coordinator_address)
    if treasurer is not None:
        instruction = ix.run_update(
            payer,
            treasurer[0],
            *accounts,
            paused=paused,
            program_id=programs.treasurer,
            coordinator_program_id=programs.coordinator,
        )
    else:
        instruction = ix.set_paused(payer, *accounts, paused, program_id=programs.coordinator)
    sent = session.send([instruction])
    after = fetch_coordinator(session.rpc, run.coordinator_address, run_id)
    if paused and after.pending_pause and not after.run_state.halted:
        outcome = "pause pending: the run finishes this epoch through Cooldown, then pauses"
    else:
        outcome = f"run is now {after.run_state.display}"
    data.update(
        signature=str(sent.signature), state=after.run_state.display, pending_pause=after.pending_pause
    )
    lines = [
        f"Set pause state to {str(paused).lower()} on run {run_id} with transaction: {sent.signature}",
        outcome,
    ]
    emit(app, as_json, data, lines)


@chain_command("json-dump-run", wallet=False)
@run_id_option
@treasurer_index_option
def json_dump_run(app: App, as_json: bool, run_id: str, treasurer_index: int | None) -> None:
    """Print the run's instance, coordinator state, clients and treasurer funding as JSON."""
    from psyche.chain.queries import fetch_run
    from psyche.manager.commands.dumps import dump_run

    del as_json  # the output is JSON either way
    session = Session(app)
    run = fetch_run(session.rpc, run_id, session.programs)
    view = load_treasurer_view(session, run_id, treasurer_index)
    app.ui.data(json.dumps(dump_run(run, view), indent=2))
