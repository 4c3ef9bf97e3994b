"""RunMetadata, CoordinatorConfig and CoordinatorProgress with their Borsh, zero-copy and serde codecs.

Zero-copy offsets are absolute: metadata at 16, config at 968 (the same 64 bytes as Borsh), progress at 1032
(16 bytes with padding; Borsh has 14).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import ClassVar

from psyche.chain.accounts.zerocopy import zc_pack, zc_put_str, zc_str
from psyche.chain.layout import Reader, Writer

_META = struct.Struct("<QQ")
_CONFIG = struct.Struct("<6QI5H2B")
_PROGRESS_BORSH = struct.Struct("<HIQ")
_PROGRESS_ZC = struct.Struct("<H2xIQ")


@dataclass(frozen=True, slots=True)
class RunMetadata:
    """Name, description and sizes shown to users; may change at any time."""

    name: str = ""
    description: str = ""
    num_parameters: int = 0
    vocab_size: int = 0

    OFFSET: ClassVar[int] = 16

    def to_borsh(self) -> bytes:
        w = Writer().fixed_str(self.name, 64).fixed_str(self.description, 280)
        return w.u64(self.num_parameters).u64(self.vocab_size).getvalue()

    @classmethod
    def from_borsh(cls, r: Reader) -> RunMetadata:
        return cls(r.fixed_str(64), r.fixed_str(280), r.u64(), r.u64())

    @classmethod
    def read_zc(cls, data: bytes) -> RunMetadata:
        o = cls.OFFSET
        return cls(zc_str(data, o, 64), zc_str(data, o + 64, 280), *_META.unpack_from(data, o + 344))

    def write_zc(self, buf: bytearray) -> None:
        o = self.OFFSET
        zc_put_str(buf, o, 64, self.name)
        zc_put_str(buf, o + 64, 280, self.description)
        zc_pack(buf, _META, o + 344, self.num_parameters, self.vocab_size)

    def to_serde(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """Timings and sizes of the run; Borsh and zero-copy forms are the same 64 bytes."""

    warmup_time: int = 0
    cooldown_time: int = 0
    max_round_train_time: int = 0
    round_witness_time: int = 0
    global_batch_size_warmup_tokens: int = 0
    epoch_time: int = 0
    total_steps: int = 0
    init_min_clients: int = 0
    min_clients: int = 0
    witness_nodes: int = 0
    global_batch_size_start: int = 0
    global_batch_size_end: int = 0
    verification_percent: int = 0
    waiting_for_members_extra_time: int = 0

    OFFSET: ClassVar[int] = 968

    def _values(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def to_borsh(self) -> bytes:
        try:
            return _CONFIG.pack(*self._values())
        except struct.error as exc:
            raise ValueError(f"config value out of range: {exc}") from exc

    @classmethod
    def from_borsh(cls, r: Reader) -> CoordinatorConfig:
        return cls(*_CONFIG.unpack(r.raw(_CONFIG.size)))

    @classmethod
    def read_zc(cls, data: bytes) -> CoordinatorConfig:
        return cls(*_CONFIG.unpack_from(data, cls.OFFSET))

    def write_zc(self, buf: bytearray) -> None:
        zc_pack(buf, _CONFIG, self.OFFSET, *self._values())

    def to_serde(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class CoordinatorProgress:
    """Where training is: epoch, step (first valid step is 1) and the data index the epoch starts at."""

    epoch: int = 0
    step: int = 0
    epoch_start_data_index: int = 0

    OFFSET: ClassVar[int] = 1032

    def to_borsh(self) -> bytes:
        try:
            return _PROGRESS_BORSH.pack(self.epoch, self.step, self.epoch_start_data_index)
        except struct.error as exc:
            raise ValueError(f"progress value out of range: {exc}") from exc

    @classmethod
    def from_borsh(cls, r: Reader) -> CoordinatorProgress:
        return cls(*_PROGRESS_BORSH.unpack(r.raw(_PROGRESS_BORSH.size)))

    @classmethod
    def read_zc(cls, data: bytes) -> CoordinatorProgress:
        return cls(*_PROGRESS_ZC.unpack_from(data, cls.OFFSET))

    def write_zc(self, buf: bytearray) -> None:
        zc_pack(buf, _PROGRESS_ZC, self.OFFSET, self.epoch, self.step, self.epoch_start_data_index)

    def to_serde(self) -> dict[str, object]:
        return {"epoch": self.epoch, "step": self.step, "epoch_start_data_index": self.epoch_start_data_index}
