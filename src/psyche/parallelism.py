"""The PARALLELISM_AUTO table (gpu_type -> GPU count -> dp, tp, micro_batch_size): parsing and lookup.

Torch-free on purpose: the client uses it to pick its parallelism, and the run-manager's `doctor` uses it
to check that the host's GPUs have an entry, without importing psyche.client (which pulls torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from psyche.errors import ConfigError

BUNDLED = "parallelism_table.json"  # beside this module, inside the psyche package


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How one client spreads its work: dp replicas x tp shards, micro-batches of micro_batch_size."""

    dp: int = 1
    tp: int = 1
    micro_batch_size: int = 1

    @property
    def world_size(self) -> int:
        return self.dp * self.tp


Table = dict[str, dict[int, Parallelism]]


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
                entry = Parallelism(int(row["dp"]), int(row["tp"]), int(row["micro_batch_size"]))
                rows[int(count)] = entry
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"parallelism table {source}: {gpu}.{count}: needs integer dp, tp, micro_batch_size"
                ) from exc
            if min(entry.dp, entry.tp, entry.micro_batch_size) < 1:
                raise ConfigError(f"parallelism table {source}: {gpu}.{count}: values must be at least 1")
        table[normalise_gpu_name(gpu)] = rows
    return table


def load_bundled_table() -> Table:
    """The table shipped in the package (src/psyche/parallelism_table.json)."""
    try:
        text = resources.files("psyche").joinpath(BUNDLED).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"parallelism table not found in this build ({BUNDLED})") from exc
    return parse_table(text, f"(bundled {BUNDLED})")


def describe_table(table: Table) -> str:
    """'H100: 1, 8 GPUs; H200: 8 GPUs': what a table has, for miss messages."""
    return "; ".join(f"{g}: {', '.join(str(c) for c in sorted(rows))} GPUs" for g, rows in table.items())
