"""Pure planning of update-config: which setup parts change, restart progress, and readable sanity checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.model import (
    LLM,
    Checkpoint,
    CheckpointKind,
    CoordinatorConfig,
    CoordinatorProgress,
    HubRepo,
    RunMetadata,
)
from psyche.chain.data_selection import batch_size
from psyche.errors import ConfigError

NAME_MAX_BYTES = 64
DESCRIPTION_MAX_BYTES = 280
CLIENT_VERSION_MAX_BYTES = 96


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """What update-config sends; None = that part is left as it is on chain."""

    metadata: RunMetadata | None = None
    config: CoordinatorConfig | None = None
    model: LLM | None = None
    progress: CoordinatorProgress | None = None
    client_version: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))

    @property
    def setup_changed(self) -> bool:
        """Any of the four parts the coordinator's ``update`` instruction carries."""
        return any(p is not None for p in (self.metadata, self.config, self.model, self.progress))

    def parts(self) -> list[str]:
        """The names of the parts that change, in instruction order."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def split(self, fits: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The plan as keyword groups, each small enough for one instruction that ``fits`` a transaction.

        All in one group when it fits; else metadata, then config/model/progress, then the client version,
        each merged with the next while the merged group still fits (docs/commands.md, update-config).
        """
        groups: list[dict[str, Any]] = [
            {"metadata": self.metadata},
            {"config": self.config, "model": self.model, "progress": self.progress},
            {"client_version": self.client_version},
        ]
        out: list[dict[str, Any]] = []
        for group in (g for g in groups if any(v is not None for v in g.values())):
            if out and fits(merged := {**out[-1], **group}):
                out[-1] = merged
            else:
                out.append(group)
        return out


def switch_to_hub(model: LLM) -> LLM:
    """The model with a P2P or Dummy checkpoint turned into Hub (same repo); others unchanged."""
    checkpoint = model.checkpoint
    if checkpoint.kind in (CheckpointKind.P2P, CheckpointKind.Dummy) and isinstance(checkpoint.repo, HubRepo):
        return dataclasses.replace(model, checkpoint=Checkpoint(CheckpointKind.Hub, checkpoint.repo))
    return model


def start_data_index(config: CoordinatorConfig, max_seq_len: int, step: int) -> int:
    """The data index step ``step`` starts at: the batch sizes of steps 1..step-1 summed (0 out of range)."""
    if step <= 1 or step > config.total_steps:
        return 0
    index = 0
    for _ in range(1, step):
        index += batch_size(config, index, max_seq_len)
    return index


def check_client_version(value: str) -> str:
    """``--client-version``: at most 96 bytes (the account's field) and a tag or digest a manager will run."""
    from psyche.manager.images import check_client_version_option

    return check_client_version_option(_check_bytes(value, CLIENT_VERSION_MAX_BYTES, "--client-version"))


def _check_bytes(value: str, limit: int, flag: str) -> str:
    size = len(value.encode("utf-8"))
    if size > limit:
        raise ConfigError(f"{flag} must be {limit} bytes or less, got {size} bytes")
    return value


def plan_update(
    current: CoordinatorAccount,
    *,
    config: CoordinatorConfig | None = None,
    model: LLM | None = None,
    restart_from_step: int | None = None,
    to_hub: bool = False,
    name: str | None = None,
    description: str | None = None,
    num_parameters: int | None = None,
    vocab_size: int | None = None,
    client_version: str | None = None,
) -> UpdatePlan:
    """Decide the update; metadata and client version are sent only when they differ from the chain's."""
    base = model or current.model
    switched = switch_to_hub(base) if to_hub else base
    new_model = switched if model is not None or switched != base else None
    progress = None
    if restart_from_step is not None:
        effective_config = config or current.config
        seq_len = (new_model or current.model).max_seq_len
        progress = CoordinatorProgress(
            current.progress.epoch,
            restart_from_step,
            start_data_index(effective_config, seq_len, restart_from_step),
        )
    old = current.metadata
    metadata = RunMetadata(
        _check_bytes(name, NAME_MAX_BYTES, "--name") if name is not None else old.name,
        _check_bytes(description, DESCRIPTION_MAX_BYTES, "--description")
        if description is not None
        else old.description,
        num_parameters if num_parameters is not None else old.num_parameters,
        vocab_size if vocab_size is not None else old.vocab_size,
    )
    version = None
    if client_version is not None and client_version != current.client_version:
        version = check_client_version(client_version)
    return UpdatePlan(
        metadata=metadata if metadata != old else None,
        config=config,
        model=new_model,
        progress=progress,
        client_version=version,
    )


def config_problems(c: CoordinatorConfig) -> list[str]:
    """Each rule of the coordinator's ``CoordinatorConfig::check`` that ``c`` breaks, in words."""
    rules = [
        (c.epoch_time > 0, "epoch_time must be > 0"),
        (
            c.warmup_time < c.epoch_time,
            f"warmup_time ({c.warmup_time}) must be < epoch_time ({c.epoch_time})",
        ),
        (
            0 < c.max_round_train_time < c.epoch_time,
            f"max_round_train_time ({c.max_round_train_time}) must be > 0 and < epoch_time ({c.epoch_time})",
        ),
        (c.round_witness_time > 0, "round_witness_time must be > 0"),
        (c.min_clients > 0, "min_clients must be > 0"),
        (
            c.min_clients <= c.init_min_clients <= 256,
            f"init_min_clients ({c.init_min_clients}) must be >= min_clients ({c.min_clients}) and <= 256",
        ),
        (c.global_batch_size_start > 0, "global_batch_size_start must be > 0"),
        (
            c.global_batch_size_start <= c.global_batch_size_end,
            f"global_batch_size_end ({c.global_batch_size_end}) must be >= global_batch_size_start "
            f"({c.global_batch_size_start})",
        ),
        (c.total_steps > 0, "total_steps must be > 0"),
        (
            c.witness_nodes <= c.min_clients and c.witness_nodes <= 32,
            f"witness_nodes ({c.witness_nodes}) must be <= min_clients ({c.min_clients}) and <= 32",
        ),
        (c.cooldown_time > 0, "cooldown_time must be > 0"),
        (c.waiting_for_members_extra_time > 0, "waiting_for_members_extra_time must be > 0"),
    ]
    return [message for ok, message in rules if not ok]


def cold_start_problem(c: CoordinatorConfig, model: LLM) -> str | None:
    """The cold-start rule: cold_start_warmup_steps <= (epoch_time - warmup_time) / max_round_train_time."""
    steps = model.cold_start_warmup_steps
    if steps == 0 or c.max_round_train_time == 0 or c.epoch_time <= c.warmup_time:
        return None
    limit = (c.epoch_time - c.warmup_time) // c.max_round_train_time
    if steps > limit:
        return (
            f"cold_start_warmup_steps ({steps}) must be <= (epoch_time - warmup_time) / max_round_train_time "
            f"({limit})"
        )
    return None
