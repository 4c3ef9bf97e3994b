"""The PARALLELISM_AUTO table (model -> gpu_type -> GPU count -> dp, tp, micro_batch_size): parse and look up.

Torch-free on purpose: the client uses it to pick its parallelism, and the run-manager's `doctor` uses it
to check that the run's model and the host's GPUs have an entry, without importing psyche.client (which
pulls torch). Both call ``model_key``, ``normalise_gpu_name`` and ``lookup`` here, so they agree.

The shape is upstream's bundled ``parallelism_data.json`` (v2): the model is the Hugging Face repo the run's
checkpoint names. The bundled rows come from this memory arithmetic for the reference client (AdamW, fp32
master weights, bf16 autocast, every dp replica holding the whole model, tp sharding attention and MLP
projections only), for sequences of 2048 tokens:

- per GPU, static: 16 bytes per parameter it holds (fp32 weights 4 + gradients 4 + AdamW moments 8), with
  ``layers x per-layer parameters / tp + embeddings + LM head`` parameters;
- per sequence of a micro-batch: activations ``s * h * layers * (10 + 24 / tp)`` bytes (bf16, no
  recomputation, fused attention so no s^2 term; Korthikanti et al. 2022) plus logits ``10 * s * vocab``
  bytes (bf16 logits, their fp32 copy for the loss, its gradient);
- usable: the card's memory less 3 GB (CUDA context, NCCL buffers) and 5 % (allocator fragmentation).

A row takes the smallest tp (a power of two dividing the kv heads and the MLP width) at which one sequence
fits, dp = GPUs / tp, and the largest power-of-two micro-batch (at most 64) that fits. A model and GPU with
no row does not fit that way (tests/unit/test_parallelism_table.py recomputes every row).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from psyche.chain.accounts.model import LLM, CheckpointKind, HubRepo
from psyche.errors import ConfigError

BUNDLED = "parallelism_table.json"  # beside this module, inside the psyche package
_VARIABLE = "PARALLELISM_AUTO"
_MANUAL = "set DATA_PARALLELISM, TENSOR_PARALLELISM and MICRO_BATCH_SIZE instead, or give a PARALLELISM_TABLE"


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How one client spreads its work: dp replicas x tp shards, micro-batches of micro_batch_size."""

    dp: int = 1
    tp: int = 1
    micro_batch_size: int = 1

    @property
    def world_size(self) -> int:
        return self.dp * self.tp


Rows = dict[int, Parallelism]  # GPU count -> row
Table = dict[str, dict[str, Rows]]  # model repo id -> normalised GPU type -> rows


def normalise_gpu_name(name: str, memory_mib: int | None = None) -> str:
    """The table's GPU type for a device name: 'NVIDIA H100 80GB HBM3' -> 'H100' (H200 likewise), an A100 ->
    'A100-80GB' or 'A100-40GB' (from the name, else from ``memory_mib``), 'NVIDIA L40S' -> 'L40S',
    'NVIDIA GeForce RTX 4090' -> 'RTX 4090'; any other name as given, trimmed."""
    upper = name.upper()
    for short in ("H200", "H100", "L40S", "RTX 4090"):
        if short in upper:
            return short
    if "A100" in upper:
        if "80GB" in upper or "40GB" in upper:
            return "A100-80GB" if "80GB" in upper else "A100-40GB"
        if memory_mib is not None:
            return "A100-80GB" if memory_mib > 60_000 else "A100-40GB"
    return name.strip()


def model_key(model: LLM) -> str:
    """The table key for the run's model: the repo id its Hub, P2P or Dummy checkpoint names (upstream keys
    by the Hub/P2P repo; a Dummy checkpoint's repo, kept when an epoch's end turns it P2P, names the model the
    run means). A checkpoint that names no repo is a one-line ConfigError."""
    cp = model.checkpoint
    kinds = (CheckpointKind.Hub, CheckpointKind.P2P, CheckpointKind.Dummy)
    repo_id = cp.repo.repo_id.strip("\x00") if isinstance(cp.repo, HubRepo) else ""
    if cp.kind not in kinds or not repo_id:
        what = f"a {cp.kind.name} checkpoint" + (" with an empty repo_id" if cp.kind in kinds else "")
        raise ConfigError(
            f"{_VARIABLE}: the run's model has {what}, which names no model to look up; {_MANUAL}"
        )
    return repo_id


def _rows(raw: object, where: str) -> Rows:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object of GPU counts")
    rows: Rows = {}
    for count, row in raw.items():
        try:
            entry = Parallelism(int(row["dp"]), int(row["tp"]), int(row["micro_batch_size"]))
            rows[int(count)] = entry
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.{count}: needs integer dp, tp, micro_batch_size") from exc
        if min(entry.dp, entry.tp, entry.micro_batch_size) < 1:
            raise ConfigError(f"{where}.{count}: values must be at least 1")
    return rows


def parse_table(text: str, source: str) -> Table:
    """Parse and check a table; ``source`` names it in errors. Keys starting with '_' are comments."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"parallelism table {source}: not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"parallelism table {source}: expected an object of models")
    table: Table = {}
    for model, gpus in raw.items():
        if model.startswith("_"):
            continue
        if not isinstance(gpus, dict):
            raise ConfigError(f"parallelism table {source}: {model}: expected an object of GPU types")
        table[model] = {
            normalise_gpu_name(gpu): _rows(counts, f"parallelism table {source}: {model}.{gpu}")
            for gpu, counts in gpus.items()
            if not gpu.startswith("_")
        }
    return table


def load_bundled_table() -> Table:
    """The table shipped in the package (src/psyche/parallelism_table.json)."""
    try:
        text = resources.files("psyche").joinpath(BUNDLED).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"parallelism table not found in this build ({BUNDLED})") from exc
    return parse_table(text, f"(bundled {BUNDLED})")


def describe_gpus(gpus: dict[str, Rows]) -> str:
    """'H100: 1, 8 GPUs; H200: 8 GPUs': what a model's entry has, for miss messages."""
    return "; ".join(f"{g}: {', '.join(str(c) for c in sorted(rows))} GPUs" for g, rows in gpus.items())


def lookup(table: Table, model: str, gpu: str, count: int) -> Parallelism:
    """The row for ``count`` x ``gpu`` (normalised here) training ``model``; each miss is a one-line
    ConfigError saying what the table has (upstream's misses are hard errors too: no fallback)."""
    gpus = table.get(model)
    if gpus is None:
        have = ", ".join(sorted(table)) or "nothing"
        raise ConfigError(
            f"{_VARIABLE}: model {model!r} not in parallelism table (table has {have}); {_MANUAL}"
        )
    short = normalise_gpu_name(gpu)
    rows = gpus.get(short)
    if rows is None:
        raise ConfigError(
            f"{_VARIABLE}: GPU {gpu!r} not in parallelism table for model {model!r} "
            f"(table has {describe_gpus(gpus) or 'no GPUs'})"
        )
    if count not in rows:
        raise ConfigError(
            f"{_VARIABLE}: no config for {count} x {short} with model {model!r} "
            f"(table has {describe_gpus(gpus)})"
        )
    return rows[count]
