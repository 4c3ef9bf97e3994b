"""Instruction builders for the coordinator program (run lifecycle, joining, ticking, witnessing)."""

from __future__ import annotations

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.accounts.model import Checkpoint, CoordinatorConfig, CoordinatorProgress, Model, RunMetadata
from psyche.chain.accounts.state import NodeIdentity
from psyche.chain.instructions._common import (
    BorshEncodable,
    anchor_writer,
    borsh_of,
    build,
    discriminators,
    fixed_bytes,
    readonly,
    signer,
    writable,
)
from psyche.chain.instructions.args import WitnessMetadata
from psyche.chain.layout import Writer
from psyche.chain.programs import COORDINATOR_PROGRAM_ID, SYSTEM_PROGRAM_ID

DISCRIMINATORS = discriminators(
    (
        "init_coordinator",
        "free_coordinator",
        "update",
        "update_client_version",
        "set_future_epoch_rates",
        "join_run",
        "set_paused",
        "tick",
        "witness",
        "warmup_witness",
        "health_check",
        "checkpoint",
    )
)

WITNESS_PROOF_SIZE = 17
BLOOM_SIZE = 192
MERKLE_ROOT_SIZE = 32


def _run_accounts(
    user: Pubkey, coordinator_instance: Pubkey, coordinator_account: Pubkey
) -> list[AccountMeta]:
    # OwnerCoordinatorAccounts and PermissionlessCoordinatorAccounts share this shape.
    return [signer(user), readonly(coordinator_instance), writable(coordinator_account)]


def _encoded(value: BorshEncodable | bytes, size: int, what: str) -> bytes:
    # Proofs and blooms come as psyche.chain.accounts.state objects, or as raw bytes from a test or tool.
    if isinstance(value, bytes | bytearray):
        return fixed_bytes(value, size, what)
    return borsh_of(value, size, what)


def init_coordinator(
    payer: Pubkey,
    coordinator_account: Pubkey,
    *,
    main_authority: Pubkey,
    join_authority: Pubkey,
    run_id: str,
    client_version: str,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Create the run's instance PDA and initialize the pre-allocated 119 160-byte coordinator account."""
    instance = pda.coordinator_instance(run_id, program_id=program_id)
    data = (
        anchor_writer(DISCRIMINATORS["init_coordinator"])
        .pubkey(main_authority)
        .pubkey(join_authority)
        .string(run_id)
        .string(client_version)
        .getvalue()
    )
    return build(
        program_id,
        data,
        [
            signer(payer, writable=True),
            writable(instance),
            writable(coordinator_account),
            readonly(SYSTEM_PROGRAM_ID),
        ],
    )


def free_coordinator(
    authority: Pubkey,
    spill: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Close a halted run's two accounts, sending their lamports to ``spill``."""
    return build(
        program_id,
        DISCRIMINATORS["free_coordinator"],
        [signer(authority), writable(spill), writable(coordinator_instance), writable(coordinator_account)],
    )


def write_run_update(
    w: Writer,
    metadata: RunMetadata | None,
    config: CoordinatorConfig | None,
    model: Model | None,
    progress: CoordinatorProgress | None,
) -> Writer:
    """Append ``update``'s four ``Option`` args (the treasurer's ``run_update`` starts with the same four)."""
    parts: tuple[BorshEncodable | None, ...] = (metadata, config, model, progress)
    for part in parts:
        w.option(part, _write_borsh)
    return w


def _write_borsh(w: Writer, value: BorshEncodable) -> Writer:
    return w.raw(value.to_borsh())


def update(
    authority: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    metadata: RunMetadata | None = None,
    config: CoordinatorConfig | None = None,
    model: Model | None = None,
    progress: CoordinatorProgress | None = None,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Replace the given parts of the run's setup (config/model/progress only while halted)."""
    data = write_run_update(
        anchor_writer(DISCRIMINATORS["update"]), metadata, config, model, progress
    ).getvalue()
    return build(program_id, data, _run_accounts(authority, coordinator_instance, coordinator_account))


def update_client_version(
    authority: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    new_version: str,
    *,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Set the run's ``client_version`` (only while halted)."""
    data = anchor_writer(DISCRIMINATORS["update_client_version"]).string(new_version).getvalue()
    return build(program_id, data, _run_accounts(authority, coordinator_instance, coordinator_account))


def set_future_epoch_rates(
    authority: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    earning_rate_total_shared: int | None = None,
    slashing_rate_per_client: int | None = None,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Set the rates that apply from the next epoch's warmup (``None`` leaves a rate unchanged)."""
    data = (
        anchor_writer(DISCRIMINATORS["set_future_epoch_rates"])
        .option(earning_rate_total_shared, Writer.u64)
        .option(slashing_rate_per_client, Writer.u64)
        .getvalue()
    )
    return build(program_id, data, _run_accounts(authority, coordinator_instance, coordinator_account))


def join_run(
    user: Pubkey,
    authorization: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    p2p_identity: bytes | Pubkey,
    *,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Register ``user`` (with its P2P identity) for the next epoch, proven by ``authorization``."""
    data = (
        anchor_writer(DISCRIMINATORS["join_run"])
        .pubkey(user)
        .raw(fixed_bytes(p2p_identity, 32, "p2p_identity"))
        .getvalue()
    )
    return build(
        program_id,
        data,
        [
            signer(user),
            readonly(authorization),
            readonly(coordinator_instance),
            writable(coordinator_account),
        ],
    )


def set_paused(
    authority: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    paused: bool,
    *,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Pause (at the end of the epoch if one is active) or resume the run."""
    data = anchor_writer(DISCRIMINATORS["set_paused"]).boolean(paused).getvalue()
    return build(program_id, data, _run_accounts(authority, coordinator_instance, coordinator_account))


def tick(
    user: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Advance the run's state machine if a timeout has passed (anyone may send it)."""
    return build(
        program_id, DISCRIMINATORS["tick"], _run_accounts(user, coordinator_instance, coordinator_account)
    )


def _witness_writer(
    name: str,
    proof: BorshEncodable | bytes,
    participant_bloom: BorshEncodable | bytes,
    broadcast_bloom: BorshEncodable | bytes,
    broadcast_merkle: bytes,
) -> Writer:
    return (
        anchor_writer(DISCRIMINATORS[name])
        .raw(_encoded(proof, WITNESS_PROOF_SIZE, "witness proof"))
        .raw(_encoded(participant_bloom, BLOOM_SIZE, "participant bloom"))
        .raw(_encoded(broadcast_bloom, BLOOM_SIZE, "broadcast bloom"))
        .raw(fixed_bytes(broadcast_merkle, MERKLE_ROOT_SIZE, "broadcast merkle root"))
    )


def witness(
    user: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    proof: BorshEncodable | bytes,
    participant_bloom: BorshEncodable | bytes,
    broadcast_bloom: BorshEncodable | bytes,
    broadcast_merkle: bytes,
    metadata: WitnessMetadata | None = None,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Witness the current training round (830 bytes of data; ``metadata`` defaults to zeros)."""
    data = (
        _witness_writer("witness", proof, participant_bloom, broadcast_bloom, broadcast_merkle)
        .raw(borsh_of(metadata or WitnessMetadata(), WitnessMetadata.SIZE, "witness metadata"))
        .getvalue()
    )
    return build(program_id, data, _run_accounts(user, coordinator_instance, coordinator_account))


def warmup_witness(
    user: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    proof: BorshEncodable | bytes,
    participant_bloom: BorshEncodable | bytes,
    broadcast_bloom: BorshEncodable | bytes,
    broadcast_merkle: bytes,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Report readiness during warmup (441 bytes of data, no metadata)."""
    data = _witness_writer(
        "warmup_witness", proof, participant_bloom, broadcast_bloom, broadcast_merkle
    ).getvalue()
    return build(program_id, data, _run_accounts(user, coordinator_instance, coordinator_account))


def health_check(
    user: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    *,
    accused: NodeIdentity,
    committee: int,
    position: int,
    index: int,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Report the client ``accused`` as unhealthy (89 bytes of data)."""
    data = (
        anchor_writer(DISCRIMINATORS["health_check"])
        .raw(borsh_of(accused, 64, "node identity"))
        .u8(committee)
        .u64(position)
        .u64(index)
        .getvalue()
    )
    return build(program_id, data, _run_accounts(user, coordinator_instance, coordinator_account))


def checkpoint(
    user: Pubkey,
    coordinator_instance: Pubkey,
    coordinator_account: Pubkey,
    repo: Checkpoint,
    *,
    program_id: Pubkey = COORDINATOR_PROGRAM_ID,
) -> Instruction:
    """Announce a new model checkpoint (the run-manager sends ``Checkpoint.hub(repo_id, revision)``)."""
    data = anchor_writer(DISCRIMINATORS["checkpoint"]).raw(repo.to_borsh()).getvalue()
    return build(program_id, data, _run_accounts(user, coordinator_instance, coordinator_account))
