"""Parallelism: the manual DATA_PARALLELISM / TENSOR_PARALLELISM / MICRO_BATCH_SIZE, or PARALLELISM_AUTO's
lookup of GPU type and count in a gpu_type -> count -> {dp, tp, micro_batch_size} table."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from psyche.client.config import EnvVars, TrainerEnv
from psyche.errors import ConfigError

log = logging.getLogger("psyche.client")

Table = dict[str, dict[int, "Parallelism"]]
BUNDLED = "parallelism_table.json"


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How one client spreads its work: dp replicas x tp shards, micro-batches of micro_batch_size."""

    dp: int = 1
    tp: int = 1
    micro_batch_size: int = 1

    @property
    def world_size(self) -> int:
        return self.dp * self.tp


def normalise_gpu_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'H100', '... H200 ...' -> 'H200'; any other name as given, trimmed."""
    upper = name.upper()
    for short in ("H200", "H100"):
        if short in upper:
            return short
    return name.strip()


def parse_table(text: str, source: str) -> Table:
    """Parse and check a table; ``source`` names it in errors. Keys starting with '_' are comments."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"parallelism table {source}: not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"parallelism table {source}: expected an object of GPU types")
    table: Table = {}
    for gpu, counts in raw.items():
        if gpu.startswith("_"):
            continue
        if not isinstance(counts, dict):
            raise ConfigError(f"parallelism table {source}: {gpu}: expected an object of GPU counts")
        rows: dict[int, Parallelism] = {}
        for count, row in counts.items():
            try:
                rows[int(count)] = Parallelism(int(row["dp"]), int(row["tp"]), int(row["micro_batch_size"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"parallelism table {source}: {gpu}.{count}: needs integer dp, tp, micro_batch_size"
                ) from exc
            if min(rows[int(count)].dp, rows[int(count)].tp, rows[int(count)].micro_batch_size) < 1:
                raise ConfigError(f"parallelism table {source}: {gpu}.{count}: values must be at least 1")
        table[normalise_gpu_name(gpu)] = rows
    return table


def load_table(path: Path | None = None) -> Table:
    """The table in ``path``, else the bundled one."""
    if path is None:
        text = resources.files("psyche.client").joinpath(BUNDLED).read_text()
        return parse_table(text, f"(bundled {BUNDLED})")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{EnvVars.PARALLELISM_TABLE}: cannot read {path}: {exc.strerror}") from exc
    return parse_table(text, str(path))


def lookup(table: Table, gpu: str, count: int) -> Parallelism:
    """The row for ``count`` x ``gpu``; a miss is a ConfigError listing what the table has."""
    have = "; ".join(f"{g}: {', '.join(str(c) for c in sorted(rows))} GPUs" for g, rows in table.items())
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
