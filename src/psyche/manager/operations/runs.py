"""Run-owner lifecycle operations: create a run, close it, update its config, pause or resume it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solders.pubkey import Pubkey

from psyche.chain.accounts.treasurer import TreasurerRun
from psyche.errors import AccountNotFound, ConfigError
from psyche.manager.operations import ChainAccess

if TYPE_CHECKING:
    from solders.instruction import Instruction

    from psyche.chain.accounts.coordinator import RunState
    from psyche.chain.programs import ProgramIds
    from psyche.chain.queries import Run
    from psyche.manager.operations.plans import UpdatePlan


@dataclass(frozen=True, slots=True)
class TreasurerView:
    """A treasurer run with what dumps and claims need beside it: address, mint decimals, vault balance."""

    address: Pubkey
    run: TreasurerRun
    decimals: int
    vault_balance: int


def load_treasurer_view(chain: ChainAccess, run_id: str, index: int | None) -> TreasurerView | None:
    """The run's treasurer with its mint decimals and vault balance, or None for a run without one.

    Raises:
        AccountNotFound: the treasurer's collateral mint is missing.
    """
    from psyche.chain import pda
    from psyche.chain.accounts.token import Mint, TokenAccount
    from psyche.chain.queries import fetch_treasurer

    found = fetch_treasurer(chain.reader, run_id, index, chain.programs)
    if found is None:
        return None
    address, run = found
    mint_info, vault_info = chain.reader.get_multiple_accounts(
        [run.collateral_mint, pda.associated_token_account(address, run.collateral_mint)]
    )
    if mint_info is None:
        raise AccountNotFound("collateral mint", str(run.collateral_mint))
    balance = 0 if vault_info is None else TokenAccount.decode(vault_info.data).amount
    return TreasurerView(address, run, Mint.decode(mint_info.data).decimals, balance)


def load_run(
    chain: ChainAccess, run_id: str, treasurer_index: int | None
) -> tuple[Run, TreasurerView | None]:
    """The run and, for a treasurer-backed one, its treasurer view (what json-dump-run prints).

    Raises:
        AccountNotFound: no such run, or its treasurer's mint is missing.
    """
    from psyche.chain.queries import fetch_run

    run = fetch_run(chain.reader, run_id, chain.programs)
    return run, load_treasurer_view(chain, run_id, treasurer_index)


@dataclass(frozen=True, slots=True)
class CreatedRun:
    """A run made by create_run: its two accounts, who may authorize joins, the rent locked, the treasurer."""

    run_id: str
    signature: str
    instance: Pubkey
    coordinator_account: Pubkey
    join_authority: Pubkey
    locked_lamports: int
    treasurer_run: Pubkey | None
    treasurer_index: int | None


def create_run(
    chain: ChainAccess,
    run_id: str,
    client_version: str,
    *,
    treasurer_index: int | None = None,
    treasurer_collateral_mint: Pubkey | None = None,
    join_authority: Pubkey | None = None,
) -> CreatedRun:
    """Create a run (Uninitialized): through the treasurer program when a collateral mint is given.

    The coordinator account is a fresh keypair created in the same transaction; the join authority
    defaults to the wallet.

    Raises:
        ConfigError: a run id over 32 bytes, a client version no manager would run, a treasurer index
            without a mint, or a run id already taken.
        TransactionFailed: the transaction failed.
    """
    from solders.keypair import Keypair

    from psyche.chain import instructions as ix
    from psyche.chain import pda
    from psyche.chain.accounts.coordinator import SIZE
    from psyche.manager.operations.plans import check_client_version

    pda.run_id_bytes(run_id)  # the reference's "run_id must be 32 bytes or less, got N bytes"
    check_client_version(client_version)
    if treasurer_index is not None and treasurer_collateral_mint is None:
        raise ConfigError(
            "--treasurer-index needs --treasurer-collateral-mint (a treasurer run needs a mint)"
        )
    programs = chain.programs
    payer = chain.sender.payer
    join = join_authority if join_authority is not None else payer
    instance = pda.coordinator_instance(run_id, program_id=programs.coordinator)
    if chain.reader.get_account_info(instance) is not None:
        raise ConfigError(f"run {run_id!r} already exists (instance account {instance})")
    account = Keypair()
    rent = chain.reader.get_minimum_balance_for_rent_exemption(SIZE)
    treasurer = None
    if treasurer_collateral_mint is not None:
        index = treasurer_index if treasurer_index is not None else pda.treasurer_index(run_id)
        treasurer = (pda.treasurer_run(index, program_id=programs.treasurer), index)
    init = _init_run(
        programs, payer, account.pubkey(), run_id, client_version, join, treasurer_collateral_mint, treasurer
    )
    instructions = [ix.system_create_account(payer, account.pubkey(), rent, SIZE, programs.coordinator), init]
    sent = chain.sender.send(instructions, signers=[account])
    return CreatedRun(
        run_id,
        str(sent.signature),
        instance,
        account.pubkey(),
        join,
        rent,
        None if treasurer is None else treasurer[0],
        None if treasurer is None else treasurer[1],
    )


def _init_run(
    programs: ProgramIds,
    payer: Pubkey,
    account: Pubkey,
    run_id: str,
    client_version: str,
    join: Pubkey,
    mint: Pubkey | None,
    treasurer: tuple[Pubkey, int] | None,
) -> Instruction:
    """The treasurer's run_create for a run with a collateral mint, else the coordinator's init."""
    from psyche.chain import instructions as ix

    if mint is not None and treasurer is not None:
        return ix.run_create(
            payer,
            account,
            mint,
            index=treasurer[1],
            run_id=run_id,
            client_version=client_version,
            main_authority=payer,
            join_authority=join,
            program_id=programs.treasurer,
            coordinator_program_id=programs.coordinator,
        )
    return ix.init_coordinator(
        payer,
        account,
        main_authority=payer,
        join_authority=join,
        run_id=run_id,
        client_version=client_version,
        program_id=programs.coordinator,
    )


@dataclass(frozen=True, slots=True)
class ClosedRun:
    """close_run's outcome: the transaction, the lamports recovered and the transaction's logs."""

    run_id: str
    signature: str
    recovered_lamports: int
    logs: list[str]


def close_run(chain: ChainAccess, run_id: str) -> ClosedRun:
    """Close a halted run's instance and coordinator accounts, the rent going back to the wallet.

    Raises:
        AccountNotFound: no such run.
        ConfigError: the wallet is not the run's main authority (or the run is treasurer-backed, which the
            treasurer program cannot close).
        TransactionFailed: the transaction failed (e.g. the run is not halted).
    """
    from psyche.chain import instructions as ix
    from psyche.chain.queries import fetch_run

    programs = chain.programs
    payer = chain.sender.payer
    run = fetch_run(chain.reader, run_id, programs)
    authority = run.instance.main_authority
    if authority != payer:
        owner = chain.reader.get_account_info(authority)
        if owner is not None and owner.owner == programs.treasurer:
            raise ConfigError(
                f"run {run_id!r} is treasurer-backed: its main authority is the treasurer run {authority}, "
                "and the treasurer program has no instruction to close it"
            )
        raise ConfigError(f"your wallet {payer} is not the main authority of run {run_id!r} ({authority})")
    infos = chain.reader.get_multiple_accounts([run.instance_address, run.coordinator_address])
    recovered = sum(info.lamports for info in infos if info is not None)
    sent = chain.sender.send(
        [
            ix.free_coordinator(
                payer, payer, run.instance_address, run.coordinator_address, program_id=programs.coordinator
            )
        ]
    )
    return ClosedRun(run_id, str(sent.signature), recovered, sent.logs)


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """What update-config asks to change; None leaves that part as it is on chain."""

    config_path: Path | None = None
    restart_from_step: int | None = None
    switch_to_hub: bool = False
    name: str | None = None
    description: str | None = None
    num_parameters: int | None = None
    vocab_size: int | None = None
    client_version: str | None = None


@dataclass(frozen=True, slots=True)
class UpdatedConfig:
    """update_config's outcome: the plan sent, in how many transactions, through which program."""

    run_id: str
    signatures: list[str]
    plan: UpdatePlan
    previous_client_version: str
    treasurer_run: Pubkey | None


def update_config(
    chain: ChainAccess, run_id: str, update: ConfigUpdate, *, treasurer_index: int | None = None
) -> UpdatedConfig:
    """Change a run's config, model, progress, metadata or client version.

    A treasurer-backed run (its main authority is the treasurer run) changes through the treasurer's
    run_update, split into as many instructions as the 1232-byte limit needs; any other run through the
    coordinator's update and update_client_version. The instructions go in as few transactions as fit.

    Raises:
        AccountNotFound: no such run.
        ConfigError: a bad client version or run config file, or nothing to change.
        TransactionFailed: a transaction failed (most changes need a halted run).
    """
    from psyche.chain.queries import fetch_run, fetch_treasurer
    from psyche.chain.runconfig import load_run_config
    from psyche.chain.transactions import pack
    from psyche.manager.operations.plans import (
        check_client_version,
        cold_start_problem,
        config_problems,
        plan_update,
    )

    if update.client_version is not None:
        check_client_version(update.client_version)  # before any chain call, even when it equals the chain's
    config = model = None
    if update.config_path is not None:
        config, model = load_run_config(update.config_path)
        problems = config_problems(config)
        cold = cold_start_problem(config, model)
        if problems or cold:
            listed = "; ".join([*problems, *([cold] if cold else [])])
            raise ConfigError(
                f"{update.config_path}: [config] fails the coordinator's sanity check: {listed}"
            )
    programs = chain.programs
    run = fetch_run(chain.reader, run_id, programs)
    plan = plan_update(
        run.coordinator,
        config=config,
        model=model,
        restart_from_step=update.restart_from_step,
        to_hub=update.switch_to_hub,
        name=update.name,
        description=update.description,
        num_parameters=update.num_parameters,
        vocab_size=update.vocab_size,
        client_version=update.client_version,
    )
    if plan.empty:
        raise ConfigError("this invocation would not update anything, bailing.")
    sender = chain.sender
    payer = sender.payer
    treasurer = fetch_treasurer(chain.reader, run_id, treasurer_index, programs)
    if treasurer is not None:
        instructions = _treasurer_updates(chain, run, treasurer[0], plan)
    else:
        instructions = _coordinator_updates(chain, run, plan, payer)
    signatures = [str(sender.send(batch).signature) for batch in pack(instructions, sender.size)]
    return UpdatedConfig(
        run_id, signatures, plan, run.client_version, None if treasurer is None else treasurer[0]
    )


def _treasurer_updates(
    chain: ChainAccess, run: Run, treasurer_run: Pubkey, plan: UpdatePlan
) -> list[Instruction]:
    from psyche.chain import instructions as ix
    from psyche.chain.transactions import PACKET_DATA_SIZE

    programs = chain.programs
    payer = chain.sender.payer

    def run_update(part: dict[str, Any]) -> Instruction:
        return ix.run_update(
            payer,
            treasurer_run,
            run.instance_address,
            run.coordinator_address,
            **part,
            program_id=programs.treasurer,
            coordinator_program_id=programs.coordinator,
        )

    def fits(part: dict[str, Any]) -> bool:
        return chain.sender.size([run_update(part)]) <= PACKET_DATA_SIZE

    return [run_update(part) for part in plan.split(fits)]


def _coordinator_updates(chain: ChainAccess, run: Run, plan: UpdatePlan, payer: Pubkey) -> list[Instruction]:
    from psyche.chain import instructions as ix

    program = chain.programs.coordinator
    accounts = (run.instance_address, run.coordinator_address)
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
                program_id=program,
            )
        )
    if plan.client_version is not None:
        instructions.append(
            ix.update_client_version(payer, *accounts, plan.client_version, program_id=program)
        )
    return instructions


@dataclass(frozen=True, slots=True)
class PauseOutcome:
    """set_paused's outcome; ``signature`` None: the run already was in the asked state, nothing was sent."""

    run_id: str
    paused: bool
    state_before: RunState
    signature: str | None = None
    state_after: RunState | None = None
    pending_pause: bool | None = None


def set_paused(
    chain: ChainAccess, run_id: str, *, paused: bool, treasurer_index: int | None = None
) -> PauseOutcome:
    """Pause a run (at the end of the epoch if one is training) or resume it; nothing when already so.

    Through the treasurer's run_update for a treasurer-backed run, else the coordinator's set_paused.

    Raises:
        AccountNotFound: no such run.
        ConfigError: resuming a finished run, or a run with no config yet.
        TransactionFailed: the transaction failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain.accounts.coordinator import RunState
    from psyche.chain.queries import fetch_coordinator, fetch_run, fetch_treasurer

    programs = chain.programs
    run = fetch_run(chain.reader, run_id, programs)
    state = run.state
    if (paused and state.halted) or (not paused and not state.halted):
        return PauseOutcome(run_id, paused, state)
    if not paused and state == RunState.Finished:
        raise ConfigError(f"run {run_id!r} is finished and cannot be resumed")
    if not paused and run.coordinator.config.epoch_time == 0:
        raise ConfigError(
            f"run {run_id!r} has no config yet: run update-config --config-path <run.toml> before resuming"
        )
    payer = chain.sender.payer
    treasurer = fetch_treasurer(chain.reader, run_id, treasurer_index, programs)
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
    sent = chain.sender.send([instruction])
    after = fetch_coordinator(chain.reader, run.coordinator_address, run_id)
    return PauseOutcome(run_id, paused, state, str(sent.signature), after.run_state, after.pending_pause)
