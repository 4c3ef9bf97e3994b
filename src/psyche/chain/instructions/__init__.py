"""Pure instruction builders for the Psyche programs and the Solana programs the CLI uses."""

from __future__ import annotations

from psyche.chain.instructions.args import Committee, WitnessMetadata
from psyche.chain.instructions.authorizer import (
    authorization_close,
    authorization_create,
    authorization_grantee_update,
    authorization_grantor_update,
)
from psyche.chain.instructions.coordinator import (
    checkpoint,
    free_coordinator,
    health_check,
    init_coordinator,
    join_run,
    set_future_epoch_rates,
    set_paused,
    tick,
    update,
    update_client_version,
    warmup_witness,
    witness,
)
from psyche.chain.instructions.system import (
    create_associated_token_account,
    create_associated_token_account_idempotent,
    system_create_account,
    system_transfer,
    token_transfer,
    token_transfer_checked,
)
from psyche.chain.instructions.treasurer import participant_claim, participant_create, run_create, run_update

__all__ = [
    "Committee",
    "WitnessMetadata",
    "authorization_close",
    "authorization_create",
    "authorization_grantee_update",
    "authorization_grantor_update",
    "checkpoint",
    "create_associated_token_account",
    "create_associated_token_account_idempotent",
    "free_coordinator",
    "health_check",
    "init_coordinator",
    "join_run",
    "participant_claim",
    "participant_create",
    "run_create",
    "run_update",
    "set_future_epoch_rates",
    "set_paused",
    "system_create_account",
    "system_transfer",
    "tick",
    "token_transfer",
    "token_transfer_checked",
    "update",
    "update_client_version",
    "warmup_witness",
    "witness",
]
