"""Instruction builders for the treasurer program (collateral-backed runs and reward claims)."""

from __future__ import annotations

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.accounts.model import CoordinatorConfig, CoordinatorProgress, Model, RunMetadata
from psyche.chain.instructions._common import anchor_writer, build, discriminators, readonly, signer, writable
from psyche.chain.instructions.coordinator import write_run_update
from psyche.chain.layout import Writer
from psyche.chain.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    TREASURER_PROGRAM_ID,
)

DISCRIMINATORS = discriminators(("run_create", "run_update", "participant_create", "participant_claim"))


def run_create(
    payer: Pubkey,
    coordinator_account: Pubkey,
    collateral_mint: Pubkey,
    *,
    index: int,
    run_id: str,
    client_version: str,
    main_authority: Pubkey,
    join_authority: Pubkey,
    program_id: Pubkey = TREASURER_PROGRAM_ID,
    coordinator_program_id: Pubkey = COORDINATOR_PROGRAM_ID,
    token_program_id: Pubkey = TOKEN_PROGRAM_ID,
    associated_token_program_id: Pubkey = ASSOCIATED_TOKEN_PROGRAM_ID,
) -> Instruction:
    """Create the treasurer ``Run`` and its collateral vault, and initialize the coordinator through it.

    The coordinator's main authority becomes the Run PDA; ``main_authority`` owns the treasurer run.
    """
    run = pda.treasurer_run(index, program_id=program_id)
    run_collateral = pda.associated_token_account(
        run, collateral_mint, token_program_id=token_program_id, program_id=associated_token_program_id
    )
    instance = pda.coordinator_instance(run_id, program_id=coordinator_program_id)
    # Argument order differs from init_coordinator: index, run_id, client_version, then the two keys.
    data = (
        anchor_writer(DISCRIMINATORS["run_create"])
        .u64(index)
        .string(run_id)
        .string(client_version)
        .pubkey(main_authority)
        .pubkey(join_authority)
        .getvalue()
    )
    return build(
        program_id,
        data,
        [
            signer(payer, writable=True),
            writable(run),
            writable(run_collateral),
            readonly(collateral_mint),
            writable(instance),
            writable(coordinator_account),
            readonly(coordinator_program_id),
            readonly(associated_token_program_id),
            readonly(token_program_id),
            readonly(SYSTEM_PROGRAM_ID),
        ],
    )


def run_update(
    authority: Pubkey,
    run: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    metadata: RunMetadata | None = None,
    config: CoordinatorConfig | None = None,
    model: Model | None = None,
    progress: CoordinatorProgress | None = None,
    epoch_earning_rate_total_shared: int | None = None,
    epoch_slashing_rate_per_client: int | None = None,
    paused: bool | None = None,
    client_version: str | None = None,
    program_id: Pubkey = TREASURER_PROGRAM_ID,
    coordinator_program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Change a treasurer run; the program forwards each given part to the coordinator, signed by the Run PDA.

    In one instruction: ``update`` (first four), ``set_future_epoch_rates``, ``set_paused``,
    ``update_client_version``, in that order, each only when one of its arguments is given.
    """
    w = write_run_update(anchor_writer(DISCRIMINATORS["run_update"]), metadata, config, model, progress)
    data = (
        w.option(epoch_earning_rate_total_shared, Writer.u64)
        .option(epoch_slashing_rate_per_client, Writer.u64)
        .option(paused, Writer.boolean)
        .option(client_version, Writer.string)
        .getvalue()
    )
    return build(
        program_id,
        data,
        [
            signer(authority),
            readonly(run),
            readonly(coordinator_instance),
            writable(coordinator_account),
            readonly(coordinator_program_id),
        ],
    )


def participant_create(
    payer: Pubkey, user: Pubkey, run: Pubkey, *, program_id: Pubkey = TREASURER_PROGRAM_ID
) -> Instruction:
    """Create ``user``'s ``Participant`` PDA for ``run`` (zeroed claim counters)."""
    participant = pda.participant(run, user, program_id=program_id)
    return build(
        program_id,
        DISCRIMINATORS["participant_create"],
        [
            signer(payer, writable=True),
            signer(user),
            readonly(run),
            writable(participant),
            readonly(SYSTEM_PROGRAM_ID),
        ],
    )


def participant_claim(
    user: Pubkey,
    user_collateral: Pubkey,
    run: Pubkey,
    run_collateral: Pubkey,
    coordinator_account: Pubkey,
    claim_earned_points: int,
    *,
    program_id: Pubkey = TREASURER_PROGRAM_ID,
    token_program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """Claim ``claim_earned_points`` points as the same number of collateral base units."""
    participant = pda.participant(run, user, program_id=program_id)
    data = anchor_writer(DISCRIMINATORS["participant_claim"]).u64(claim_earned_points).getvalue()
    return build(
        program_id,
        data,
        [
            signer(user),
            writable(user_collateral),
            writable(run),
            writable(run_collateral),
            readonly(coordinator_account),
            writable(participant),
            readonly(token_program_id),
        ],
    )
