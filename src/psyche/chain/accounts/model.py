"""The run's Model (checkpoint, LLM) with its codecs and sanity checks; re-exports every other setup type.

Callers import metadata, config, progress and the training parts from here too.

Borsh is what instructions carry (u8 enum tags, declaration order). Zero-copy is how the same values sit in
the 119,160-byte CoordinatorAccount (``#[repr(C)]``: u32 enum tags, payload aligned after the tag, HubRepo/
GcsRepo with their Option first); those readers and writers take ABSOLUTE offsets into the account data
(spec onchain.md 4.2.1) and are only called after the account's size has been checked. Writers write the
meaningful bytes only, over a base buffer, so padding and stale union bytes of a decoded account survive.
``to_serde`` gives the JSON shape Rust serde produces (externally tagged enums).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from psyche.chain.accounts.optimizer import (
    AdamW,
    Distro,
    DummyOptimizer,
    OptimizerDefinition,
    optimizer_from_borsh,
    optimizer_read_zc,
)
from psyche.chain.accounts.setup import CoordinatorConfig, CoordinatorProgress, RunMetadata
from psyche.chain.accounts.training import (
    ConstantLR,
    CosineLR,
    DataLocation,
    DataLocationKind,
    Gcp,
    HttpDataLocation,
    HttpLocation,
    LearningRateSchedule,
    LinearLR,
    NumberedFiles,
    SingleUrl,
    TokenSize,
    WarmupStableDecayLR,
    lr_from_borsh,
    lr_read_zc,
)
from psyche.chain.accounts.zerocopy import (
    STR64,
    zc_opt_tag,
    zc_pack,
    zc_put_str,
    zc_put_tag,
    zc_str,
    zc_tag,
)
from psyche.chain.layout import Reader, Writer

_LLM_HEAD = struct.Struct("<II")


# ---------------------------------------------------------------- checkpoint


class CheckpointKind(IntEnum):
    """The ``Checkpoint`` variant: Dummy, Hub and P2P carry a HubRepo, Gcs and P2PGcs a GcsRepo, Ephemeral
    nothing."""

    Ephemeral = 0
    Dummy = 1
    Hub = 2
    P2P = 3
    Gcs = 4
    P2PGcs = 5


@dataclass(frozen=True, slots=True)
class HubRepo:
    """A Hugging Face repo; Borsh order repo_id then revision, zero-copy order revision first."""

    repo_id: str
    revision: str | None = None

    def to_borsh(self) -> bytes:
        w = Writer().fixed_str(self.repo_id, STR64)
        return w.option(self.revision, lambda w, v: w.fixed_str(v, STR64)).getvalue()

    @classmethod
    def from_borsh(cls, r: Reader) -> HubRepo:
        return cls(r.fixed_str(STR64), r.option(lambda r: r.fixed_str(STR64)))

    @classmethod
    def read_zc(cls, data: bytes, off: int) -> HubRepo:
        revision = zc_str(data, off + 1, STR64) if zc_opt_tag(data, off, "revision") else None
        return cls(zc_str(data, off + 65, STR64), revision)

    def write_zc(self, buf: bytearray, off: int) -> None:
        buf[off] = 0 if self.revision is None else 1
        if self.revision is not None:
            zc_put_str(buf, off + 1, STR64, self.revision)
        zc_put_str(buf, off + 65, STR64, self.repo_id)

    def to_serde(self) -> dict[str, object]:
        return {"repo_id": self.repo_id, "revision": self.revision}


@dataclass(frozen=True, slots=True)
class GcsRepo:
    """A Google Cloud Storage checkpoint location; same layout rules as HubRepo."""

    bucket: str
    prefix: str | None = None

    def to_borsh(self) -> bytes:
        w = Writer().fixed_str(self.bucket, STR64)
        return w.option(self.prefix, lambda w, v: w.fixed_str(v, STR64)).getvalue()

    @classmethod
    def from_borsh(cls, r: Reader) -> GcsRepo:
        return cls(r.fixed_str(STR64), r.option(lambda r: r.fixed_str(STR64)))

    @classmethod
    def read_zc(cls, data: bytes, off: int) -> GcsRepo:
        prefix = zc_str(data, off + 1, STR64) if zc_opt_tag(data, off, "prefix") else None
        return cls(zc_str(data, off + 65, STR64), prefix)

    def write_zc(self, buf: bytearray, off: int) -> None:
        buf[off] = 0 if self.prefix is None else 1
        if self.prefix is not None:
            zc_put_str(buf, off + 1, STR64, self.prefix)
        zc_put_str(buf, off + 65, STR64, self.bucket)

    def to_serde(self) -> dict[str, object]:
        return {"bucket": self.bucket, "prefix": self.prefix}


_HUB_KINDS = frozenset({CheckpointKind.Dummy, CheckpointKind.Hub, CheckpointKind.P2P})
_GCS_KINDS = frozenset({CheckpointKind.Gcs, CheckpointKind.P2PGcs})


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where the model's weights come from: ``kind`` plus a HubRepo (Dummy/Hub/P2P), a GcsRepo (Gcs/
    P2PGcs) or None (Ephemeral)."""

    kind: CheckpointKind
    repo: HubRepo | GcsRepo | None = None

    def __post_init__(self) -> None:
        want = HubRepo if self.kind in _HUB_KINDS else GcsRepo if self.kind in _GCS_KINDS else type(None)
        if not isinstance(self.repo, want):
            raise TypeError(f"checkpoint {self.kind.name} needs {want.__name__}, got {self.repo!r}")

    @classmethod
    def hub(cls, repo_id: str, revision: str | None = None) -> Checkpoint:
        return cls(CheckpointKind.Hub, HubRepo(repo_id, revision))

    def to_borsh(self) -> bytes:
        return bytes([self.kind]) + (b"" if self.repo is None else self.repo.to_borsh())

    @classmethod
    def from_borsh(cls, r: Reader) -> Checkpoint:
        kind = CheckpointKind(r.enum_tag(1, len(CheckpointKind), "checkpoint"))
        repo = HubRepo if kind in _HUB_KINDS else GcsRepo if kind in _GCS_KINDS else None
        return cls(kind, None if repo is None else repo.from_borsh(r))

    @classmethod
    def read_zc(cls, data: bytes, off: int = 436) -> Checkpoint:
        kind = CheckpointKind(zc_tag(data, off, len(CheckpointKind), "checkpoint"))
        if kind in _HUB_KINDS:
            return cls(kind, HubRepo.read_zc(data, off + 4))
        if kind in _GCS_KINDS:
            return cls(kind, GcsRepo.read_zc(data, off + 4))
        return cls(kind)

    def write_zc(self, buf: bytearray, off: int = 436) -> None:
        zc_put_tag(buf, off, int(self.kind))
        if self.repo is not None:
            self.repo.write_zc(buf, off + 4)

    def to_serde(self) -> object:
        return self.kind.name if self.repo is None else {self.kind.name: self.repo.to_serde()}


# ---------------------------------------------------------------- the model


class LLMArchitecture(IntEnum):
    """The model code the client loads (``LLMArchitecture``)."""

    HfLlama = 0
    HfDeepseek = 1
    HfAuto = 2
    Torchtitan = 3


class LLMTrainingDataType(IntEnum):
    """Whether the data is for pretraining or finetuning (``LLMTrainingDataType``)."""

    Pretraining = 0
    Finetuning = 1


@dataclass(frozen=True, slots=True)
class LLM:
    """``Model::LLM``, the only Model variant; its codecs include the Model tag (Borsh u8 0, zero-copy u32 0
    at offset 416), so ``Model`` is simply this class."""

    max_seq_len: int
    cold_start_warmup_steps: int
    architecture: LLMArchitecture
    checkpoint: Checkpoint
    data_type: LLMTrainingDataType
    data_location: DataLocation
    lr_schedule: LearningRateSchedule
    optimizer: OptimizerDefinition

    OFFSET: ClassVar[int] = 416

    def to_borsh(self) -> bytes:
        w = Writer().u8(0).u32(self.max_seq_len).u32(self.cold_start_warmup_steps).u8(self.architecture)
        w.raw(self.checkpoint.to_borsh()).u8(self.data_type).raw(self.data_location.to_borsh())
        return w.raw(self.lr_schedule.to_borsh()).raw(self.optimizer.to_borsh()).getvalue()

    @classmethod
    def from_borsh(cls, r: Reader) -> LLM:
        r.enum_tag(1, 1, "model")
        seq, cold = r.u32(), r.u32()
        arch = LLMArchitecture(r.enum_tag(1, len(LLMArchitecture), "architecture"))
        checkpoint = Checkpoint.from_borsh(r)
        data_type = LLMTrainingDataType(r.enum_tag(1, len(LLMTrainingDataType), "data type"))
        location = DataLocation.from_borsh(r)
        return cls(
            seq, cold, arch, checkpoint, data_type, location, lr_from_borsh(r), optimizer_from_borsh(r)
        )

    @classmethod
    def read_zc(cls, data: bytes) -> LLM:
        zc_tag(data, 416, 1, "model")
        seq, cold = _LLM_HEAD.unpack_from(data, 424)
        return cls(
            seq,
            cold,
            LLMArchitecture(zc_tag(data, 432, len(LLMArchitecture), "architecture")),
            Checkpoint.read_zc(data, 436),
            LLMTrainingDataType(zc_tag(data, 572, len(LLMTrainingDataType), "data type")),
            DataLocation.read_zc(data, 576),
            lr_read_zc(data, 880),
            optimizer_read_zc(data, 936),
        )

    def write_zc(self, buf: bytearray) -> None:
        zc_put_tag(buf, 416, 0)
        zc_pack(buf, _LLM_HEAD, 424, self.max_seq_len, self.cold_start_warmup_steps)
        zc_put_tag(buf, 432, int(self.architecture))
        self.checkpoint.write_zc(buf, 436)
        zc_put_tag(buf, 572, int(self.data_type))
        self.data_location.write_zc(buf, 576)
        self.lr_schedule.write_zc(buf, 880)
        self.optimizer.write_zc(buf, 936)

    def to_serde(self) -> object:
        body = {
            "max_seq_len": self.max_seq_len,
            "cold_start_warmup_steps": self.cold_start_warmup_steps,
            "architecture": self.architecture.name,
            "checkpoint": self.checkpoint.to_serde(),
            "data_type": self.data_type.name,
            "data_location": self.data_location.to_serde(),
            "lr_schedule": self.lr_schedule.to_serde(),
            "optimizer": self.optimizer.to_serde(),
        }
        return {"LLM": body}

    @classmethod
    def zeroed(cls) -> LLM:
        """The all-zero bytes read as a model (what a fresh account holds)."""
        return cls(
            0,
            0,
            LLMArchitecture.HfLlama,
            Checkpoint(CheckpointKind.Ephemeral),
            LLMTrainingDataType.Pretraining,
            DataLocation(),
            ConstantLR(0.0, 0.0, 0),
            DummyOptimizer(),
        )


Model = LLM


# ---------------------------------------------------------------- the program's sanity checks


def config_check(c: CoordinatorConfig) -> bool:
    """``CoordinatorConfig::check`` (a failure is ConfigSanityCheckFailed, 6004)."""
    return (
        c.epoch_time > 0
        and c.warmup_time < c.epoch_time
        and 0 < c.max_round_train_time < c.epoch_time
        and c.round_witness_time > 0
        and 0 < c.min_clients <= c.init_min_clients <= 256
        and 0 < c.global_batch_size_start <= c.global_batch_size_end
        and c.total_steps > 0
        and c.witness_nodes <= c.min_clients
        and c.witness_nodes <= 32
        and c.cooldown_time > 0
        and c.waiting_for_members_extra_time > 0
    )


def _empty(s: str) -> bool:
    return not s or s[0] == "\x00"  # FixedString::is_empty looks at the first byte only


def model_check(model: LLM) -> bool:
    """``Model::check`` (a failure is ModelSanityCheckFailed, 6005)."""
    if model.max_seq_len == 0:
        return False
    loc = model.data_location.value
    if isinstance(loc, str) and model.data_location.kind is not DataLocationKind.Local and _empty(loc):
        return False
    if isinstance(loc, HttpDataLocation):
        target = loc.location
        if isinstance(target, SingleUrl) and _empty(target.url):
            return False
        if isinstance(target, NumberedFiles) and (_empty(target.url_template) or target.num_files == 0):
            return False
        if isinstance(target, Gcp) and _empty(target.bucket_name):
            return False
    cp = model.checkpoint
    if cp.kind is CheckpointKind.Ephemeral:
        return False
    if isinstance(cp.repo, HubRepo) and cp.kind is not CheckpointKind.Dummy and _empty(cp.repo.repo_id):
        return False
    if isinstance(cp.repo, GcsRepo) and _empty(cp.repo.bucket):
        return False
    return not isinstance(model.optimizer, DummyOptimizer)


def cold_start_check(c: CoordinatorConfig, model: LLM) -> bool:
    """Cold-start warmup steps must fit in one epoch's training rounds (else 6004).

    Where the program would divide by zero or underflow (a zero or inconsistent config), it aborts the
    transaction; we report a failed check instead."""
    steps = model.cold_start_warmup_steps
    if steps == 0:
        return True
    if c.max_round_train_time == 0 or c.warmup_time > c.epoch_time:
        return False
    return steps <= (c.epoch_time - c.warmup_time) // c.max_round_train_time


def progress_check(p: CoordinatorProgress) -> bool:
    """``CoordinatorProgress::check``: a step of 0 is invalid (ProgressSanityCheckFailed, 6006)."""
    return p.step > 0


__all__ = [
    "LLM",
    "AdamW",
    "Checkpoint",
    "CheckpointKind",
    "ConstantLR",
    "CoordinatorConfig",
    "CoordinatorProgress",
    "CosineLR",
    "DataLocation",
    "DataLocationKind",
    "Distro",
    "DummyOptimizer",
    "Gcp",
    "GcsRepo",
    "HttpDataLocation",
    "HttpLocation",
    "HubRepo",
    "LLMArchitecture",
    "LLMTrainingDataType",
    "LearningRateSchedule",
    "LinearLR",
    "Model",
    "NumberedFiles",
    "OptimizerDefinition",
    "RunMetadata",
    "SingleUrl",
    "TokenSize",
    "WarmupStableDecayLR",
    "cold_start_check",
    "config_check",
    "model_check",
    "progress_check",
]
