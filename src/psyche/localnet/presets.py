"""The small run config and model that the localnet demo and the tests start from, with keyword overrides."""

from __future__ import annotations

import dataclasses
from typing import Any

from psyche.chain.accounts.model import (
    LLM,
    Checkpoint,
    ConstantLR,
    CoordinatorConfig,
    DataLocation,
    DataLocationKind,
    Distro,
    LLMArchitecture,
    LLMTrainingDataType,
)

_SMALL_CONFIG = CoordinatorConfig(
    warmup_time=5,
    cooldown_time=5,
    max_round_train_time=10,
    round_witness_time=2,
    global_batch_size_warmup_tokens=0,
    epoch_time=40,
    total_steps=100,
    init_min_clients=2,
    min_clients=2,
    witness_nodes=0,
    global_batch_size_start=8,
    global_batch_size_end=8,
    verification_percent=0,
    waiting_for_members_extra_time=3,
)
_SMALL_MODEL = LLM(
    max_seq_len=16,
    cold_start_warmup_steps=0,
    architecture=LLMArchitecture.HfLlama,
    checkpoint=Checkpoint.hub("org/model"),
    data_type=LLMTrainingDataType.Pretraining,
    data_location=DataLocation(DataLocationKind.Server, "127.0.0.1:9000"),
    lr_schedule=ConstantLR(1e-4, 0.0, 10),
    optimizer=Distro(1.0, None, 0.5, 2, 64, False),  # f32-exact, so encode/decode round-trips
)


def small_config(**changes: int) -> CoordinatorConfig:
    """Two clients, 40 s epochs of 10 s rounds, 100 steps, batch 8; ``changes`` replace fields by name."""
    return dataclasses.replace(_SMALL_CONFIG, **changes)


def small_model(**changes: Any) -> LLM:
    """A 16-token HfLlama from hub ``org/model`` with a server data location; ``changes`` replace fields."""
    return dataclasses.replace(_SMALL_MODEL, **changes)
