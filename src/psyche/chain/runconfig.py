"""Read a run-config TOML (``[config]`` + ``[model.LLM...]``, serde's externally tagged form) into our types.

Errors are ConfigError with one line: ``<file>:<line>: <dotted.key>: <problem>; expected <what>``. tomllib
gives no positions, so lines are found by scanning the text for table headers and ``key =`` lines; a missing
key points at its table's header. Unknown keys are ignored, like serde does.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from psyche.chain.accounts.model import (
    LLM,
    AdamW,
    Checkpoint,
    CheckpointKind,
    ConstantLR,
    CoordinatorConfig,
    CosineLR,
    DataLocation,
    DataLocationKind,
    Distro,
    DummyOptimizer,
    Gcp,
    GcsRepo,
    HttpDataLocation,
    HttpLocation,
    HubRepo,
    LearningRateSchedule,
    LinearLR,
    LLMArchitecture,
    LLMTrainingDataType,
    NumberedFiles,
    OptimizerDefinition,
    SingleUrl,
    TokenSize,
    WarmupStableDecayLR,
)
from psyche.chain.accounts.zerocopy import STR64, STR192, f32
from psyche.errors import ConfigError

T = TypeVar("T")
Key = tuple[str, ...]

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")
_CONFIG_INTS = (
    ("warmup_time", 64),
    ("cooldown_time", 64),
    ("max_round_train_time", 64),
    ("round_witness_time", 64),
    ("global_batch_size_warmup_tokens", 64),
    ("epoch_time", 64),
    ("total_steps", 32),
    ("init_min_clients", 16),
    ("min_clients", 16),
    ("witness_nodes", 16),
    ("global_batch_size_start", 16),
    ("global_batch_size_end", 16),
    ("verification_percent", 8),
    ("waiting_for_members_extra_time", 8),
)


def _split_key(text: str) -> Key:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def _positions(text: str) -> dict[Key, int]:
    """Line numbers (1-based) of every table header and ``key =`` line, by dotted key path."""
    found: dict[Key, int] = {}
    table: Key = ()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if m := _HEADER.match(line):
            table = _split_key(m.group(1))
            found.setdefault(table, lineno)
        elif m := _ASSIGN.match(line):
            found.setdefault(table + _split_key(m.group(1)), lineno)
    return found


def _describe(value: object) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    name = kind.get(type(value), type(value).__name__)
    return f"{name} {value!r}" if isinstance(value, (bool, int, float, str)) else name


class _Doc:
    """The parsed document plus what is needed to word errors (file name and line positions)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _positions(text)

    def error(self, key: Key, problem: str, expected: str) -> ConfigError:
        line = self.lines.get(key)
        if line is None:  # a table written as [key.Variant] has no line of its own: its first sub-table
            line = min((n for k, n in self.lines.items() if k[: len(key)] == key), default=None)
        if line is None:  # a missing key: its enclosing table
            line = next(
                (self.lines[key[:n]] for n in range(len(key) - 1, 0, -1) if key[:n] in self.lines), None
            )
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return ConfigError(f"{where}: {'.'.join(key)}: {problem}; expected {expected}")

    def get(self, table: dict[str, object], key: Key, expected: str) -> object:
        if key[-1] not in table:
            raise self.error(key, "missing", expected)
        return table[key[-1]]

    def table(self, table: dict[str, object], key: Key) -> dict[str, object]:
        value = self.get(table, key, "a table")
        if not isinstance(value, dict):
            raise self.error(key, f"got {_describe(value)}", "a table")
        return value

    def uint(self, table: dict[str, object], key: Key, bits: int) -> int:
        expected = f"u{bits} integer (0..{2**bits - 1})"
        value = self.get(table, key, expected)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"got {_describe(value)}", expected)
        if not 0 <= value < 2**bits:
            raise self.error(key, f"{value} is out of range", expected)
        return value

    def float_(self, table: dict[str, object], key: Key, *, single: bool = False) -> float:
        expected = "a number (f32)" if single else "a number (f64)"
        value = self.get(table, key, expected)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"got {_describe(value)}", expected)
        if single:
            try:
                return f32(float(value))
            except OverflowError:
                raise self.error(key, f"{value} is out of range", expected) from None
        return float(value)

    def boolean(self, table: dict[str, object], key: Key) -> bool:
        value = self.get(table, key, "true or false")
        if not isinstance(value, bool):
            raise self.error(key, f"got {_describe(value)}", "true or false")
        return value

    def string(self, table: dict[str, object], key: Key, limit: int) -> str:
        expected = f"a string of at most {limit} bytes"
        value = self.get(table, key, expected)
        if not isinstance(value, str):
            raise self.error(key, f"got {_describe(value)}", expected)
        if len(value.encode("utf-8")) > limit:
            raise self.error(key, f"string of {len(value.encode('utf-8'))} bytes is too long", expected)
        return value

    def optional(
        self, table: dict[str, object], key: Key, read: Callable[[dict[str, object], Key], T]
    ) -> T | None:
        return read(table, key) if key[-1] in table else None

    def variant(self, table: dict[str, object], key: Key, names: list[str]) -> tuple[str, object, Key]:
        """An externally tagged enum: a bare string (unit variant) or a one-key table {Variant = payload}."""
        expected = "one of " + ", ".join(names)
        value = self.get(table, key, expected)
        if isinstance(value, str):
            name, payload = value, None
        elif isinstance(value, dict) and len(value) == 1:
            name, payload = next(iter(value.items()))
        elif isinstance(value, dict):
            raise self.error(
                key, f"table with {len(value)} variants {sorted(value)}", "exactly one of " + ", ".join(names)
            )
        else:
            raise self.error(key, f"got {_describe(value)}", expected)
        if name not in names:
            raise self.error(key, f"unknown variant {name!r}", expected)
        return name, payload, (*key, name)

    def payload_table(self, payload: object, key: Key) -> dict[str, object]:
        if not isinstance(payload, dict):
            raise self.error(
                key, f"got {_describe(payload) if payload is not None else 'a bare name'}", "a table"
            )
        return payload


def load_run_config(path: Path | str) -> tuple[CoordinatorConfig, LLM]:
    """Parse a run-config TOML file into (CoordinatorConfig, Model); ConfigError names file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"run config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read run config {path}: {exc}") from exc
    try:
        root = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    doc = _Doc(path, text)
    return _config(doc, doc.table(root, ("config",))), _model(doc, doc.table(root, ("model",)))


def _config(doc: _Doc, t: dict[str, object]) -> CoordinatorConfig:
    return CoordinatorConfig(*(doc.uint(t, ("config", name), bits) for name, bits in _CONFIG_INTS))


def _model(doc: _Doc, t: dict[str, object]) -> LLM:
    _, payload, k = doc.variant({"model": t}, ("model",), ["LLM"])
    llm = doc.payload_table(payload, k)
    arch, _, _ = doc.variant(llm, (*k, "architecture"), [a.name for a in LLMArchitecture])
    data_type, _, _ = doc.variant(llm, (*k, "data_type"), [d.name for d in LLMTrainingDataType])
    return LLM(
        max_seq_len=doc.uint(llm, (*k, "max_seq_len"), 32),
        cold_start_warmup_steps=doc.uint(llm, (*k, "cold_start_warmup_steps"), 32),
        architecture=LLMArchitecture[arch],
        checkpoint=_checkpoint(doc, llm, (*k, "checkpoint")),
        data_type=LLMTrainingDataType[data_type],
        data_location=_data_location(doc, llm, (*k, "data_location")),
        lr_schedule=_lr(doc, llm, (*k, "lr_schedule")),
        optimizer=_optimizer(doc, llm, (*k, "optimizer")),
    )


def _checkpoint(doc: _Doc, t: dict[str, object], key: Key) -> Checkpoint:
    name, payload, k = doc.variant(t, key, [c.name for c in CheckpointKind])
    kind = CheckpointKind[name]
    if kind is CheckpointKind.Ephemeral:
        return Checkpoint(kind)
    body = doc.payload_table(payload, k)
    if kind in (CheckpointKind.Gcs, CheckpointKind.P2PGcs):
        prefix = doc.optional(body, (*k, "prefix"), lambda t, kk: doc.string(t, kk, STR64))
        return Checkpoint(kind, GcsRepo(doc.string(body, (*k, "bucket"), STR64), prefix))
    revision = doc.optional(body, (*k, "revision"), lambda t, kk: doc.string(t, kk, STR64))
    return Checkpoint(kind, HubRepo(doc.string(body, (*k, "repo_id"), STR64), revision))


def _data_location(doc: _Doc, t: dict[str, object], key: Key) -> DataLocation:
    name, payload, k = doc.variant(t, key, [d.name for d in DataLocationKind])
    kind = DataLocationKind[name]
    if kind is DataLocationKind.Dummy:
        return DataLocation(kind)
    if kind is not DataLocationKind.Http:
        limit = STR64 if kind is DataLocationKind.Server else STR192
        return DataLocation(kind, doc.string({name: payload}, k, limit))
    body = doc.payload_table(payload, k)
    token, _, _ = doc.variant(body, (*k, "token_size_in_bytes"), [s.name for s in TokenSize])
    return DataLocation(
        kind,
        HttpDataLocation(
            _http_location(doc, body, (*k, "location")), TokenSize[token], _shuffle(doc, body, k)
        ),
    )


def _http_location(doc: _Doc, t: dict[str, object], key: Key) -> HttpLocation:
    name, payload, k = doc.variant(t, key, ["SingleUrl", "NumberedFiles", "Gcp"])
    if name == "SingleUrl":
        return SingleUrl(doc.string({name: payload}, k, STR192))
    body = doc.payload_table(payload, k)
    if name == "Gcp":
        return Gcp(
            doc.string(body, (*k, "bucket_name"), STR64), doc.string(body, (*k, "filter_directory"), STR192)
        )
    return NumberedFiles(
        doc.string(body, (*k, "url_template"), STR64),
        doc.uint(body, (*k, "start_index"), 32),
        doc.uint(body, (*k, "n_left_pad_zeros"), 8),
        doc.uint(body, (*k, "num_files"), 32),
    )


def _shuffle(doc: _Doc, t: dict[str, object], key: Key) -> bytes | None:
    name, payload, k = doc.variant(t, (*key, "shuffle"), ["DontShuffle", "Seeded"])
    if name == "DontShuffle":
        return None
    expected = "an array of 32 integers 0..255"
    items: list[object] = payload if isinstance(payload, list) else []
    seed = [b for b in items if isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256]
    if len(items) != 32 or len(seed) != 32:
        raise doc.error(k, f"got {_describe(payload)}", expected)
    return bytes(seed)


def _lr(doc: _Doc, t: dict[str, object], key: Key) -> LearningRateSchedule:
    classes = {c.VARIANT: c for c in (ConstantLR, LinearLR, CosineLR, WarmupStableDecayLR)}
    name, payload, k = doc.variant(t, key, list(classes))
    body = doc.payload_table(payload, k)
    cls = classes[name]
    values: list[Any] = [
        doc.uint(body, (*k, f), 32) if f.endswith("_steps") else doc.float_(body, (*k, f)) for f in cls.FIELDS
    ]
    return cls(*values)


def _optimizer(doc: _Doc, t: dict[str, object], key: Key) -> OptimizerDefinition:
    name, payload, k = doc.variant(t, key, ["Dummy", "AdamW", "Distro"])
    if name == "Dummy":
        return DummyOptimizer()
    body = doc.payload_table(payload, k)

    def opt(field: str) -> float | None:
        return doc.optional(body, (*k, field), lambda t, kk: doc.float_(t, kk, single=True))

    if name == "AdamW":
        betas = doc.get(body, (*k, "betas"), "an array of 2 numbers")
        if not isinstance(betas, list) or len(betas) != 2:
            raise doc.error((*k, "betas"), f"got {_describe(betas)}", "an array of 2 numbers")
        pair = {"0": betas[0], "1": betas[1]}
        b0, b1 = (doc.float_(pair, (*k, "betas", i), single=True) for i in ("0", "1"))
        eps = doc.float_(body, (*k, "eps"), single=True)
        return AdamW(
            (b0, b1), doc.float_(body, (*k, "weight_decay"), single=True), eps, opt("clip_grad_norm")
        )
    return Distro(
        opt("clip_grad_norm"),
        opt("weight_decay"),
        doc.float_(body, (*k, "compression_decay"), single=True),
        doc.uint(body, (*k, "compression_topk"), 16),
        doc.uint(body, (*k, "compression_chunk"), 16),
        doc.boolean(body, (*k, "quantize_1bit")),
    )
