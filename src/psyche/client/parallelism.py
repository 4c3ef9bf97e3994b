"""Parallelism: the manual DATA_PARALLELISM / TENSOR_PARALLELISM / MICRO_BATCH_SIZE, or PARALLELISM_AUTO's
lookup of GPU type and count in a gpu_type -> count -> {dp, tp, micro_batch_size} table."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from psyche.client.config import EnvVars, TrainerEnv
from psyche.errors import ConfigError
from psyche.parallelism import (
    Parallelism,
    Table,
    describe_table,
    load_bundled_table,
    normalise_gpu_name,
    parse_table,
)

__all__ = [
    "Parallelism",
    "Table",
    "detect_gpus",
    "load_table",
    "lookup",
    "normalise_gpu_name",
    "parse_table",
    "resolve_parallelism",
]

log = logging.getLogger("psyche.client")


def load_table(path: Path | None = None) -> Table:
    """The table in ``path``, else the bundled one."""
    if path is None:
        return load_bundled_table()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{EnvVars.PARALLELISM_TABLE}: cannot read {path}: {exc.strerror}") from exc
    return parse_table(text, str(path))


def lookup(table: Table, gpu: str, count: int) -> Parallelism:
    """The row for ``count`` x ``gpu``; a miss is a ConfigError listing what the table has."""
    have = describe_table(table)
    rows = table.get(normalise_gpu_name(gpu))
    if rows is None:
        raise ConfigError(
            f"{EnvVars.PARALLELISM_AUTO}: GPU {gpu!r} not in parallelism table (table has {have})"
        )
    if count not in rows:
        raise ConfigError(f"{EnvVars.PARALLELISM_AUTO}: no config for {count} x {gpu} (table has {have})")
    return rows[count]


def detect_gpus() -> tuple[str, int]:
    """(name of device 0, visible device count): the name from NVML when importable, else from torch;
    the count from torch, which honours CUDA_VISIBLE_DEVICES."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f"{EnvVars.PARALLELISM_AUTO}: No GPUs found!")
    name = torch.cuda.get_device_name(0)
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        try:
            raw = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML is optional; torch's name is the same string
        pass
    return normalise_gpu_name(name), count


def resolve_parallelism(
    env: TrainerEnv, detect: Callable[[], tuple[str, int]] = detect_gpus, table: Table | None = None
) -> Parallelism:
    """The manual values, or with PARALLELISM_AUTO the table's row for this machine (manual ones ignored)."""
    manual = Parallelism(env.data_parallelism, env.tensor_parallelism, env.micro_batch_size)
    if not env.parallelism_auto:
        return manual
    if manual != Parallelism():
        log.warning("PARALLELISM_AUTO is set, ignoring manual dp/tp/micro_batch_size values")
    gpu, count = detect()
    row = lookup(load_table(env.parallelism_table) if table is None else table, gpu, count)
    log.info(
        "parallelism for %d x %s: dp=%d tp=%d micro_batch_size=%d",
        count,
        gpu,
        row.dp,
        row.tp,
        row.micro_batch_size,
    )
    return row
