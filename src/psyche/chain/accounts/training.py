"""The LLM's training-data location and learning-rate schedule, with Borsh, zero-copy and serde codecs.

Zero-copy offsets are absolute (spec onchain.md 4.2.1): data_location tag at 576 (payload 580), lr_schedule
tag at 880 (payload 888).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar, TypeAlias

from psyche.chain.accounts.zerocopy import (
    STR64,
    STR192,
    zc_pack,
    zc_put_str,
    zc_put_tag,
    zc_str,
    zc_tag,
)
from psyche.chain.layout import Reader, Writer

DATA_LOCATION_OFFSET = 576
LR_OFFSET = 880

_NUMBERED = struct.Struct("<IBI")  # Borsh: start_index, n_left_pad_zeros, num_files
_NUMBERED_ZC = struct.Struct("<IB3xI")


class TokenSize(IntEnum):
    """The width of one token in the data files: 2 or 4 bytes."""

    TwoBytes = 0
    FourBytes = 1


# ---------------------------------------------------------------- HTTP locations


@dataclass(frozen=True, slots=True)
class SingleUrl:
    """Http data in one file at ``url``."""

    url: str

    TAG: ClassVar[int] = 0

    def _borsh(self, w: Writer) -> None:
        w.fixed_str(self.url, STR192)

    def _zc(self, buf: bytearray, off: int) -> None:
        zc_put_str(buf, off, STR192, self.url)

    def to_serde(self) -> object:
        return {"SingleUrl": self.url}


@dataclass(frozen=True, slots=True)
class NumberedFiles:
    """Http data in ``num_files`` files: ``url_template`` with the index from ``start_index``, zero-padded
    to ``n_left_pad_zeros``."""

    url_template: str
    start_index: int
    n_left_pad_zeros: int
    num_files: int

    TAG: ClassVar[int] = 1

    def _borsh(self, w: Writer) -> None:
        w.fixed_str(self.url_template, STR64)
        w.u32(self.start_index).u8(self.n_left_pad_zeros).u32(self.num_files)

    def _zc(self, buf: bytearray, off: int) -> None:
        zc_put_str(buf, off, STR64, self.url_template)
        zc_pack(buf, _NUMBERED_ZC, off + 64, self.start_index, self.n_left_pad_zeros, self.num_files)

    def to_serde(self) -> object:
        return {"NumberedFiles": {f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True, slots=True)
class Gcp:
    """Http data in a Google Cloud Storage bucket, optionally only under ``filter_directory``."""

    bucket_name: str
    filter_directory: str = ""  # empty = no filter

    TAG: ClassVar[int] = 2

    def _borsh(self, w: Writer) -> None:
        w.fixed_str(self.bucket_name, STR64).fixed_str(self.filter_directory, STR192)

    def _zc(self, buf: bytearray, off: int) -> None:
        zc_put_str(buf, off, STR64, self.bucket_name)
        zc_put_str(buf, off + 64, STR192, self.filter_directory)

    def to_serde(self) -> object:
        return {"Gcp": {"bucket_name": self.bucket_name, "filter_directory": self.filter_directory}}


HttpLocation: TypeAlias = SingleUrl | NumberedFiles | Gcp


@dataclass(frozen=True, slots=True)
class HttpDataLocation:
    """Http data: where the token files are, their token width, and the shuffle (None = DontShuffle,
    else the 32-byte Seeded seed)."""

    location: HttpLocation
    token_size_in_bytes: TokenSize = TokenSize.TwoBytes
    shuffle: bytes | None = None

    def _borsh(self, w: Writer) -> None:
        w.u8(self.location.TAG)
        self.location._borsh(w)
        w.u8(self.token_size_in_bytes)
        w.u8(0 if self.shuffle is None else 1)
        if self.shuffle is not None:
            w.raw(_seed(self.shuffle))

    @classmethod
    def _from_borsh(cls, r: Reader) -> HttpDataLocation:
        tag = r.enum_tag(1, 3, "http location")
        loc: HttpLocation
        if tag == 0:
            loc = SingleUrl(r.fixed_str(STR192))
        elif tag == 1:
            loc = NumberedFiles(r.fixed_str(STR64), *_NUMBERED.unpack(r.raw(_NUMBERED.size)))
        else:
            loc = Gcp(r.fixed_str(STR64), r.fixed_str(STR192))
        token_size = TokenSize(r.enum_tag(1, 2, "token size"))
        seeded = r.enum_tag(1, 2, "shuffle")
        return cls(loc, token_size, r.raw(32) if seeded else None)

    @classmethod
    def _read_zc(cls, data: bytes, off: int) -> HttpDataLocation:
        tag = zc_tag(data, off, 3, "http location")
        p = off + 4
        loc: HttpLocation
        if tag == 0:
            loc = SingleUrl(zc_str(data, p, STR192))
        elif tag == 1:
            loc = NumberedFiles(zc_str(data, p, STR64), *_NUMBERED_ZC.unpack_from(data, p + 64))
        else:
            loc = Gcp(zc_str(data, p, STR64), zc_str(data, p + 64, STR192))
        token_size = TokenSize(zc_tag(data, off + 260, 2, "token size"))
        seeded = zc_tag(data, off + 264, 2, "shuffle")
        return cls(loc, token_size, data[off + 268 : off + 300] if seeded else None)

    def _write_zc(self, buf: bytearray, off: int) -> None:
        zc_put_tag(buf, off, self.location.TAG)
        self.location._zc(buf, off + 4)
        zc_put_tag(buf, off + 260, int(self.token_size_in_bytes))
        zc_put_tag(buf, off + 264, 0 if self.shuffle is None else 1)
        if self.shuffle is not None:
            buf[off + 268 : off + 300] = _seed(self.shuffle)

    def to_serde(self) -> object:
        shuffle: object = "DontShuffle" if self.shuffle is None else {"Seeded": list(self.shuffle)}
        return {
            "location": self.location.to_serde(),
            "token_size_in_bytes": self.token_size_in_bytes.name,
            "shuffle": shuffle,
        }


def _seed(seed: bytes) -> bytes:
    if len(seed) != 32:
        raise ValueError(f"shuffle seed must be 32 bytes, got {len(seed)}")
    return bytes(seed)


# ---------------------------------------------------------------- data location


class DataLocationKind(IntEnum):
    """The ``LLMTrainingDataLocation`` variant; see DataLocation for what each carries."""

    Dummy = 0
    Server = 1
    Local = 2
    Http = 3
    WeightedHttp = 4
    Preprocessed = 5


_STR_SIZE = {
    DataLocationKind.Server: STR64,
    DataLocationKind.Local: STR192,
    DataLocationKind.WeightedHttp: STR192,
    DataLocationKind.Preprocessed: STR192,
}


@dataclass(frozen=True, slots=True)
class DataLocation:
    """``kind`` plus its payload: None (Dummy), a string (Server "host:port" / Local / WeightedHttp /
    Preprocessed) or an HttpDataLocation (Http)."""

    kind: DataLocationKind = DataLocationKind.Dummy
    value: str | HttpDataLocation | None = None

    def __post_init__(self) -> None:
        want = (
            HttpDataLocation
            if self.kind is DataLocationKind.Http
            else str
            if self.kind in _STR_SIZE
            else type(None)
        )
        if not isinstance(self.value, want):
            raise TypeError(f"data location {self.kind.name} needs {want.__name__}, got {self.value!r}")

    def to_borsh(self) -> bytes:
        w = Writer().u8(self.kind)
        if isinstance(self.value, HttpDataLocation):
            self.value._borsh(w)
        elif isinstance(self.value, str):
            w.fixed_str(self.value, _STR_SIZE[self.kind])
        return w.getvalue()

    @classmethod
    def from_borsh(cls, r: Reader) -> DataLocation:
        kind = DataLocationKind(r.enum_tag(1, len(DataLocationKind), "data location"))
        if kind is DataLocationKind.Http:
            return cls(kind, HttpDataLocation._from_borsh(r))
        if kind in _STR_SIZE:
            return cls(kind, r.fixed_str(_STR_SIZE[kind]))
        return cls(kind)

    @classmethod
    def read_zc(cls, data: bytes, off: int = DATA_LOCATION_OFFSET) -> DataLocation:
        kind = DataLocationKind(zc_tag(data, off, len(DataLocationKind), "data location"))
        if kind is DataLocationKind.Http:
            return cls(kind, HttpDataLocation._read_zc(data, off + 4))
        if kind in _STR_SIZE:
            return cls(kind, zc_str(data, off + 4, _STR_SIZE[kind]))
        return cls(kind)

    def write_zc(self, buf: bytearray, off: int = DATA_LOCATION_OFFSET) -> None:
        zc_put_tag(buf, off, int(self.kind))
        if isinstance(self.value, HttpDataLocation):
            self.value._write_zc(buf, off + 4)
        elif isinstance(self.value, str):
            zc_put_str(buf, off + 4, _STR_SIZE[self.kind], self.value)

    def to_serde(self) -> object:
        if self.value is None:
            return self.kind.name
        value = self.value if isinstance(self.value, str) else self.value.to_serde()
        return {self.kind.name: value}


# ---------------------------------------------------------------- learning-rate schedules


class _Scalar:
    """Shared codec of the LR variants: f64 fields then u32 fields, the same bytes in Borsh and zero-copy."""

    __slots__ = ()
    TAG: ClassVar[int]
    VARIANT: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]
    FMT: ClassVar[struct.Struct]

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self.FIELDS)

    def to_borsh(self) -> bytes:
        try:
            return bytes([self.TAG]) + self.FMT.pack(*self._values())
        except struct.error as exc:
            raise ValueError(f"{self.VARIANT} value out of range: {exc}") from exc

    def write_zc(self, buf: bytearray, off: int = LR_OFFSET) -> None:
        zc_put_tag(buf, off, self.TAG)
        zc_pack(buf, self.FMT, off + 8, *self._values())

    def to_serde(self) -> object:
        return {self.VARIANT: dict(zip(self.FIELDS, self._values(), strict=True))}


@dataclass(frozen=True, slots=True)
class ConstantLR(_Scalar):
    """Constant learning rate after a linear warmup."""

    base_lr: float
    warmup_init_lr: float
    warmup_steps: int

    TAG: ClassVar[int] = 0
    VARIANT: ClassVar[str] = "Constant"
    FIELDS: ClassVar[tuple[str, ...]] = ("base_lr", "warmup_init_lr", "warmup_steps")
    FMT: ClassVar[struct.Struct] = struct.Struct("<ddI")


@dataclass(frozen=True, slots=True)
class LinearLR(_Scalar):
    """Linear decay from ``base_lr`` to ``final_lr`` after the warmup."""

    base_lr: float
    warmup_init_lr: float
    final_lr: float
    warmup_steps: int
    total_steps: int

    TAG: ClassVar[int] = 1
    VARIANT: ClassVar[str] = "Linear"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "base_lr",
        "warmup_init_lr",
        "final_lr",
        "warmup_steps",
        "total_steps",
    )
    FMT: ClassVar[struct.Struct] = struct.Struct("<dddII")


@dataclass(frozen=True, slots=True)
class CosineLR(_Scalar):
    """Cosine decay from ``base_lr`` to ``final_lr`` after the warmup."""

    base_lr: float
    warmup_init_lr: float
    final_lr: float
    warmup_steps: int
    total_steps: int

    TAG: ClassVar[int] = 2
    VARIANT: ClassVar[str] = "Cosine"
    FIELDS: ClassVar[tuple[str, ...]] = LinearLR.FIELDS
    FMT: ClassVar[struct.Struct] = LinearLR.FMT


@dataclass(frozen=True, slots=True)
class WarmupStableDecayLR(_Scalar):
    """Warmup, then a stable phase, then cosine decay, then linear decay."""

    base_lr: float
    warmup_init_lr: float
    cosine_decay_final_lr: float
    linear_decay_final_lr: float
    warmup_steps: int
    stable_steps: int
    cosine_decay_steps: int
    linear_decay_steps: int

    TAG: ClassVar[int] = 3
    VARIANT: ClassVar[str] = "WarmupStableDecay"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "base_lr",
        "warmup_init_lr",
        "cosine_decay_final_lr",
        "linear_decay_final_lr",
        "warmup_steps",
        "stable_steps",
        "cosine_decay_steps",
        "linear_decay_steps",
    )
    FMT: ClassVar[struct.Struct] = struct.Struct("<dddd4I")


LearningRateSchedule: TypeAlias = ConstantLR | LinearLR | CosineLR | WarmupStableDecayLR
LR_VARIANTS: tuple[type[LearningRateSchedule], ...] = (ConstantLR, LinearLR, CosineLR, WarmupStableDecayLR)


def lr_from_borsh(r: Reader) -> LearningRateSchedule:
    """Read a Borsh LearningRateSchedule (u8 tag, then the variant's fields).

    Raises:
        AccountDecodeError: an unknown tag or too few bytes.
    """
    cls = LR_VARIANTS[r.enum_tag(1, len(LR_VARIANTS), "lr schedule")]
    return cls(*cls.FMT.unpack(r.raw(cls.FMT.size)))


def lr_read_zc(data: bytes, off: int = LR_OFFSET) -> LearningRateSchedule:
    """Read the zero-copy LearningRateSchedule at absolute offset ``off``.

    Raises:
        AccountDecodeError: an unknown variant tag.
    """
    cls = LR_VARIANTS[zc_tag(data, off, len(LR_VARIANTS), "lr schedule")]
    return cls(*cls.FMT.unpack_from(data, off + 8))
