"""This client's parallelism: the manual DATA_PARALLELISM / TENSOR_PARALLELISM / MICRO_BATCH_SIZE, or
PARALLELISM_AUTO's lookup of the run's model and the GPU type and count detected here in the table
(``psyche.parallelism_table``, torch-free and shared with the run-manager's doctor)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from psyche.chain.accounts.model import LLM
from psyche.client.config import EnvVars, TrainerEnv
from psyche.errors import ConfigError
from psyche.parallelism_table import (
    Parallelism,
    Table,
    load_bundled_table,
    lookup,
    model_key,
    normalise_gpu_name,
    parse_table,
)

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


def detect_gpus() -> tuple[str, int]:
    """(name of device 0, visible device count): the name from NVML when importable, else from torch;
    the count from torch, which honours CUDA_VISIBLE_DEVICES."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f"{EnvVars.PARALLELISM_AUTO}: No GPUs found!")
    name = torch.cuda.get_device_name(0)
    memory_mib = torch.cuda.get_device_properties(0).total_memory // 2**20  # tells the A100s apart
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
    return normalise_gpu_name(name, memory_mib), count


def resolve_parallelism(
    env: TrainerEnv,
    model: LLM,
    detect: Callable[[], tuple[str, int]] = detect_gpus,
    table: Table | None = None,
) -> Parallelism:
    """The manual values, or with PARALLELISM_AUTO the table's row for the run's ``model`` on this machine
    (manual ones ignored); a miss is a one-line ConfigError."""
    manual = Parallelism(env.data_parallelism, env.tensor_parallelism, env.micro_batch_size)
    if not env.parallelism_auto:
        return manual
    if manual != Parallelism():
        log.warning("PARALLELISM_AUTO is set, ignoring manual dp/tp/micro_batch_size values")
    key = model_key(model)
    gpu, count = detect()
    row = lookup(load_table(env.parallelism_table) if table is None else table, key, gpu, count)
    log.info(
        "parallelism for %s on %d x %s: dp=%d tp=%d micro_batch_size=%d",
        key,
        count,
        gpu,
        row.dp,
        row.tp,
        row.micro_batch_size,
    )
    return row
