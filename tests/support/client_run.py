"""The run the reference-client tests put on the local chain: a tiny dummy-checkpoint model, short rounds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain.accounts.model import (
    LLM,
    AdamW,
    Checkpoint,
    CheckpointKind,
    ConstantLR,
    CoordinatorConfig,
    DataLocation,
    DataLocationKind,
    HubRepo,
    LLMArchitecture,
    LLMTrainingDataType,
)
from psyche.chain.programs import PERMISSIONLESS_GRANTEE
from psyche.chain.rpc import RpcClient
from psyche.localnet.world import World

SPEED = 4.0  # chain seconds per real second: the chain and the client share this clock
TOTAL_STEPS = 6
EARNING_RATE = 1_000_000
CONFIG = CoordinatorConfig(
    warmup_time=4,
    cooldown_time=2,
    max_round_train_time=8,
    round_witness_time=1,
    global_batch_size_warmup_tokens=0,
    epoch_time=120,
    total_steps=TOTAL_STEPS,
    init_min_clients=1,
    min_clients=1,
    witness_nodes=0,
    global_batch_size_start=16,
    global_batch_size_end=16,
    verification_percent=0,
    waiting_for_members_extra_time=1,
)
MODEL = LLM(
    max_seq_len=32,
    cold_start_warmup_steps=0,
    architecture=LLMArchitecture.HfLlama,
    checkpoint=Checkpoint(CheckpointKind.Dummy, HubRepo("")),
    data_type=LLMTrainingDataType.Pretraining,
    data_location=DataLocation(DataLocationKind.Dummy),
    lr_schedule=ConstantLR(1e-2, 1e-2, 0),
    optimizer=AdamW((0.9, 0.95), 0.0, 1e-8, None),
)
# The same model read from its peers (a P2P checkpoint is read as Dummy until one exists).
P2P_MODEL = dataclasses.replace(MODEL, checkpoint=Checkpoint(CheckpointKind.P2P, HubRepo("")))


async def permissionless_run(
    client: RpcClient,
    run_id: str,
    participants: Sequence[Pubkey],
    config: CoordinatorConfig = CONFIG,
    model: LLM = MODEL,
    earning_rate: int = EARNING_RATE,
) -> None:
    """A run anyone may join, configured and open, with each participant funded with 1 SOL.

    A fresh owner (funded with 100 SOL) creates it, authorizes everyone and sets ``config`` and ``model``.
    """
    owner = Keypair()
    world = World(client, owner)
    await world.airdrop(owner.pubkey(), 100 * 10**9)
    for participant in participants:
        await world.airdrop(participant, 10**9)
    handle = await world.create_run(run_id)
    await world.authorize(PERMISSIONLESS_GRANTEE)
    await world.configure(handle, config, model, earning_rate=earning_rate)
