"""The Psyche treasurer program (spec 6): run create/update (CPI to the coordinator), participants, claims."""

from __future__ import annotations

import dataclasses
import struct

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.model import CoordinatorConfig, CoordinatorProgress, Model, RunMetadata
from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.accounts.treasurer import Participant, TreasurerRun
from psyche.chain.anchor import instruction_discriminator
from psyche.chain.instructions import coordinator as coordinator_ix
from psyche.chain.layout import Reader
from psyche.chain.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    TREASURER_PROGRAM_ID,
)
from psyche.localnet.programs.anchor import (
    CONSTRAINT_ASSOCIATED,
    Accounts,
    Handler,
    decode_args,
    handler_for,
    program_error,
)
from psyche.localnet.programs.base import Context

INVALID_PARAMETER = 6000
RUN_ID_INVALID_LENGTH = 6001
RUN_SEED = b"Run"
PARTICIPANT_SEED = b"Participant"


def _run_seeds(index: int) -> list[bytes]:
    return [RUN_SEED, index.to_bytes(8, "little")]


def _load_run(acc: Accounts, name: str = "run") -> TreasurerRun:
    return acc.load(name, TREASURER_PROGRAM_ID, TreasurerRun.DISCRIMINATOR, TreasurerRun.decode)


def _ata(acc: Accounts, wallet: str, mint: bytes) -> bytes:
    seeds = [bytes(acc.key(wallet)), bytes(TOKEN_PROGRAM_ID), mint]
    return bytes(Pubkey.find_program_address(seeds, ASSOCIATED_TOKEN_PROGRAM_ID)[0])


def _run_create(ctx: Context) -> None:
    index, run_id, client_version, main, join = decode_args(
        ctx, lambda r: (r.u64(), r.string(), r.string(), r.pubkey(), r.pubkey())
    )
    names = (
        "payer",
        "run",
        "run_collateral",
        "collateral_mint",
        "coordinator_instance",
        "coordinator_account",
        "coordinator_program",
        "associated_token_program",
        "token_program",
        "system_program",
    )
    acc = Accounts(ctx, names)
    acc.signer("payer")
    acc.mut("payer")
    acc.program("coordinator_program", COORDINATOR_PROGRAM_ID)
    acc.program("associated_token_program", ASSOCIATED_TOKEN_PROGRAM_ID)
    acc.program("token_program", TOKEN_PROGRAM_ID)
    acc.program("system_program", SYSTEM_PROGRAM_ID)
    acc.load("collateral_mint", TOKEN_PROGRAM_ID, b"", Mint.decode)
    if len(run_id.encode()) > 32:
        raise program_error(ctx, RUN_ID_INVALID_LENGTH, "RunIdInvalidLength")
    bump = acc.init("run", "payer", _run_seeds(index), TreasurerRun.SIZE)
    # associated_token::mint/authority with init: the ATA program creates the vault by CPI.
    acc.mut("run_collateral")
    acc.require(
        bytes(acc.key("run_collateral")) == _ata(acc, "run", bytes(acc.key("collateral_mint"))),
        "run_collateral",
        CONSTRAINT_ASSOCIATED,
    )
    create_ata = Instruction(
        ASSOCIATED_TOKEN_PROGRAM_ID,
        b"",
        [
            AccountMeta(acc.key("payer"), True, True),
            AccountMeta(acc.key("run_collateral"), False, True),
            AccountMeta(acc.key("run"), False, False),
            AccountMeta(acc.key("collateral_mint"), False, False),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
            AccountMeta(TOKEN_PROGRAM_ID, False, False),
        ],
    )
    ctx.invoke(create_ata)
    run = TreasurerRun(
        bump=bump,
        index=index,
        main_authority=main,
        join_authority=join,
        coordinator_account=acc.key("coordinator_account"),
        coordinator_instance=acc.key("coordinator_instance"),
        collateral_mint=acc.key("collateral_mint"),
        total_claimed_collateral_amount=0,
        total_claimed_earned_points=0,
    )
    acc["run"].account.data[:] = run.encode()
    init = coordinator_ix.init_coordinator(
        acc.key("payer"),
        acc.key("coordinator_account"),
        main_authority=acc.key("run"),
        join_authority=join,
        run_id=run_id,
        client_version=client_version,
    )
    ctx.invoke(init, [[*_run_seeds(index), bytes([bump])]])


_RunUpdate = tuple[
    RunMetadata | None,
    CoordinatorConfig | None,
    Model | None,
    CoordinatorProgress | None,
    int | None,
    int | None,
    bool | None,
    str | None,
]


def _run_update_args(r: Reader) -> _RunUpdate:
    return (
        r.option(RunMetadata.from_borsh),
        r.option(CoordinatorConfig.from_borsh),
        r.option(Model.from_borsh),
        r.option(CoordinatorProgress.from_borsh),
        r.option(Reader.u64),
        r.option(Reader.u64),
        r.option(Reader.boolean),
        r.option(Reader.string),
    )


def _run_update(ctx: Context) -> None:
    metadata, config, model, progress, earning, slashing, paused, version = decode_args(ctx, _run_update_args)
    acc = Accounts(
        ctx, ("authority", "run", "coordinator_instance", "coordinator_account", "coordinator_program")
    )
    acc.signer("authority")
    run = _load_run(acc)
    acc.mut("coordinator_account")
    acc.program("coordinator_program", COORDINATOR_PROGRAM_ID)
    acc.require(run.main_authority == acc.key("authority"), "run")
    acc.require(run.coordinator_instance == acc.key("coordinator_instance"), "run")
    acc.require(run.coordinator_account == acc.key("coordinator_account"), "run")
    keys = (acc.key("run"), acc.key("coordinator_instance"), acc.key("coordinator_account"))
    seeds = [[*_run_seeds(run.index), bytes([run.bump])]]
    calls = []
    if any(x is not None for x in (metadata, config, model, progress)):
        calls.append(
            coordinator_ix.update(*keys, metadata=metadata, config=config, model=model, progress=progress)
        )
    if earning is not None or slashing is not None:
        calls.append(
            coordinator_ix.set_future_epoch_rates(
                *keys,
                earning_rate_total_shared=earning,
                slashing_rate_per_client=slashing,
            )
        )
    if paused is not None:
        calls.append(coordinator_ix.set_paused(*keys, bool(paused)))
    if version is not None:
        calls.append(coordinator_ix.update_client_version(*keys, str(version)))
    for call in calls:
        ctx.invoke(call, seeds)


def _participant_create(ctx: Context) -> None:
    decode_args(ctx, lambda r: None)
    acc = Accounts(ctx, ("payer", "user", "run", "participant", "system_program"))
    acc.signer("payer")
    acc.mut("payer")
    acc.signer("user")
    _load_run(acc)
    acc.program("system_program", SYSTEM_PROGRAM_ID)
    seeds = [PARTICIPANT_SEED, bytes(acc.key("run")), bytes(acc.key("user"))]
    bump = acc.init("participant", "payer", seeds, Participant.SIZE)
    acc["participant"].account.data[:] = Participant(bump, 0, 0).encode()


def _participant_claim(ctx: Context) -> None:
    (amount,) = decode_args(ctx, lambda r: (r.u64(),))
    names = (
        "user",
        "user_collateral",
        "run",
        "run_collateral",
        "coordinator_account",
        "participant",
        "token_program",
    )
    acc = Accounts(ctx, names)
    user = acc.signer("user").key
    user_collateral = acc.load("user_collateral", TOKEN_PROGRAM_ID, b"", TokenAccount.decode)
    run = _load_run(acc)
    run_collateral = acc.load("run_collateral", TOKEN_PROGRAM_ID, b"", TokenAccount.decode)
    acc.load("coordinator_account", COORDINATOR_PROGRAM_ID, CoordinatorAccount.DISCRIMINATOR, lambda d: None)
    participant = acc.load("participant", TREASURER_PROGRAM_ID, Participant.DISCRIMINATOR, Participant.decode)
    acc.program("token_program", TOKEN_PROGRAM_ID)
    for name in ("user_collateral", "run", "run_collateral", "participant"):
        acc.mut(name)
    acc.require(user_collateral.mint == run.collateral_mint, "user_collateral")
    acc.require(user_collateral.owner == user, "user_collateral")
    acc.require(user_collateral.delegate is None, "user_collateral")
    acc.require(run.coordinator_account == acc.key("coordinator_account"), "run")
    vault_ok = run_collateral.mint == run.collateral_mint and run_collateral.owner == acc.key("run")
    vault_ok = vault_ok and bytes(acc.key("run_collateral")) == _ata(acc, "run", bytes(run.collateral_mint))
    acc.require(vault_ok, "run_collateral", CONSTRAINT_ASSOCIATED)
    data = bytes(acc["coordinator_account"].account.data)
    acc.require(len(data) >= 16 and struct.unpack_from("<Q", data, 8)[0] == 1, "coordinator_account")
    acc.seeds("participant", [PARTICIPANT_SEED, bytes(acc.key("run")), bytes(user)], participant.bump)
    coordinator = CoordinatorAccount.decode(data)
    earned = next((c.earned for c in coordinator.clients_state.clients if c.signer == user), 0)
    unclaimed = earned - participant.claimed_earned_points
    if amount > unclaimed:
        raise program_error(ctx, INVALID_PARAMETER, "InvalidParameter")
    transfer = Instruction(
        TOKEN_PROGRAM_ID,
        bytes([3]) + struct.pack("<Q", amount),
        [
            AccountMeta(acc.key("run_collateral"), False, True),
            AccountMeta(acc.key("user_collateral"), False, True),
            AccountMeta(acc.key("run"), True, False),
        ],
    )
    ctx.invoke(transfer, [[*_run_seeds(run.index), bytes([run.bump])]])
    acc["participant"].account.data[:] = dataclasses.replace(
        participant,
        claimed_collateral_amount=participant.claimed_collateral_amount + amount,
        claimed_earned_points=participant.claimed_earned_points + amount,
    ).encode()
    acc["run"].account.data[:] = dataclasses.replace(
        run,
        total_claimed_collateral_amount=run.total_claimed_collateral_amount + amount,
        total_claimed_earned_points=run.total_claimed_earned_points + amount,
    ).encode()


_HANDLERS: dict[bytes, tuple[str, Handler]] = {
    instruction_discriminator(name): (name.title().replace("_", ""), fn)
    for name, fn in (
        ("run_create", _run_create),
        ("run_update", _run_update),
        ("participant_create", _participant_create),
        ("participant_claim", _participant_claim),
    )
}


class TreasurerProgram:
    """``EnU7…``: a run whose rewards are paid in an SPL token, 1 point = 1 base unit."""

    program_id = TREASURER_PROGRAM_ID
    native = False

    def process(self, ctx: Context) -> None:
        """Run the instruction named by the 8-byte Anchor discriminator."""
        handler_for(ctx, _HANDLERS)(ctx)
