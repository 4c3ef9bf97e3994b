"""The DisTrO payload: one trainer's result for one batch as bytes, its strict decoder, and its data hash.

Layout (little-endian; every size follows from the run's model and Distro settings, so a valid payload for a
model has exactly ``max_payload_bytes`` bytes)::

    version u8 (= 1) | flags u8 (bit 0: 1-bit values) | step u32 | trainer_nonce u32
    | batch start u64 | batch end u64 | parameter count u32
    then per parameter, in the model's order:
    ndim u8 | xshape u16 * ndim | totalk u32 | k u32
    | idx: count x (u8 when totalk <= 256, u16 when <= 65536, else u32)
    | val: 1-bit: ceil(count / 8) bytes, bit i of the stream = value i is negative (LSB first, zero padding);
           else count x f32
    where count = (number of chunks) * k = prod(xshape) / totalk * k.

``data_hash`` is upstream's commitment hash (spec distro.md section 2): sha256(step u32 BE || start u64 BE ||
end u64 BE || for each parameter: idx raw bytes || val raw bytes), over the same idx/val bytes as above.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from psyche.chain.accounts.optimizer import Distro
from psyche.client.distro import ParamTransform, SparseParam
from psyche.errors import ConfigError, PayloadRefused

__all__ = [
    "Payload",
    "PayloadShape",
    "data_hash",
    "decode_payload",
    "encode_payload",
    "index_width",
    "max_payload_bytes",
    "payload_shapes",
]

VERSION = 1
_HEADER = struct.Struct("<BBIIQQI")  # version, flags, step, trainer_nonce, start, end, parameter count
_FLAG_1BIT = 1
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class PayloadShape:
    """What one parameter's entry must look like: coefficient shape, coefficients per chunk, values per chunk
    and whether values are 1-bit."""

    name: str
    xshape: tuple[int, ...]
    totalk: int
    k: int
    one_bit: bool

    @property
    def count(self) -> int:
        """Indices (and values) in this entry: chunks times k."""
        return math.prod(self.xshape) // self.totalk * self.k

    @property
    def grid(self) -> tuple[int, ...]:
        """The chunk grid: ``xshape`` without its per-chunk dimensions."""
        return self.xshape[: len(self.xshape) // 2]

    def nbytes(self) -> int:
        """This entry's size on the wire."""
        values = (self.count + 7) // 8 if self.one_bit else 4 * self.count
        return 1 + 2 * len(self.xshape) + 8 + self.count * index_width(self.totalk) + values


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded payload: who trained what (step, trainer nonce, batch), one result per parameter."""

    step: int
    trainer_nonce: int
    batch: tuple[int, int]
    results: list[SparseParam]
    quantize_1bit: bool


def index_width(totalk: int) -> int:
    """Bytes per index: the smallest unsigned type that holds every index below ``totalk``."""
    return 1 if totalk <= 1 << 8 else 2 if totalk <= 1 << 16 else 4


_INDEX_DTYPE: dict[int, np.dtype[Any]] = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}
_F32 = np.dtype("<f4")
_SIGNS = np.array([1.0, -1.0], dtype=np.float32)  # bit 0 -> +1, bit 1 (negative) -> -1


def payload_shapes(
    named_params: Sequence[tuple[str, torch.nn.Parameter]], settings: Distro
) -> list[PayloadShape]:
    """The entry every valid payload has for each parameter, in the model's order.

    Raises:
        ConfigError: a parameter has more chunks along one dimension than a payload can index.
    """
    shapes = []
    for name, p in named_params:
        t = ParamTransform(p.shape, settings.compression_chunk, name=name)
        if max(t.xshape) > _U16_MAX:
            raise ConfigError(
                f"DisTrO: {name} {tuple(p.shape)} has {max(t.xshape)} chunks along one dimension; the "
                f"payload holds at most {_U16_MAX} (raise compression_chunk)"
            )
        k = min(max(settings.compression_topk, 1), t.totalk)
        shapes.append(PayloadShape(name, t.xshape, t.totalk, k, settings.quantize_1bit))
    return shapes


def max_payload_bytes(shapes: Sequence[PayloadShape], settings: Distro | None = None) -> int:
    """The size of every valid payload for ``shapes`` (the transport's download cap). ``settings``, when
    given, must agree with the shapes on 1-bit values."""
    if settings is not None and any(s.one_bit != settings.quantize_1bit for s in shapes):
        raise ValueError("max_payload_bytes: shapes and settings disagree on quantize_1bit")
    return _HEADER.size + sum(s.nbytes() for s in shapes)


def _idx_bytes(idx: torch.Tensor, totalk: int) -> bytes:
    return bytes(idx.detach().cpu().numpy().astype(_INDEX_DTYPE[index_width(totalk)]).tobytes())


def _val_bytes(val: torch.Tensor, one_bit: bool) -> bytes:
    v = val.detach().cpu().numpy().ravel()
    if one_bit:
        return np.packbits(v < 0, bitorder="little").tobytes()
    return v.astype(_F32).tobytes()


def _entry_parts(results: Sequence[SparseParam], one_bit: bool) -> list[tuple[bytes, bytes]]:
    return [(_idx_bytes(r.idx, r.totalk), _val_bytes(r.val, one_bit)) for r in results]


def _hash_parts(step: int, batch: tuple[int, int], parts: Sequence[tuple[bytes, bytes]]) -> bytes:
    h = hashlib.sha256(struct.pack(">IQQ", step, batch[0], batch[1]))
    for idx, val in parts:
        h.update(idx)
        h.update(val)
    return h.digest()


def data_hash(payload: Payload) -> bytes:
    """The commitment hash of ``payload`` (32 bytes; spec distro.md section 2)."""
    return _hash_parts(payload.step, payload.batch, _entry_parts(payload.results, payload.quantize_1bit))


def encode_payload(
    step: int,
    trainer_nonce: int,
    batch: tuple[int, int],
    results: Sequence[SparseParam],
    quantize_1bit: bool,
) -> bytes:
    """The bytes of one result (``results``: one per parameter, from ``DistroOptimizer.generate``)."""
    out = bytearray(
        _HEADER.pack(VERSION, _FLAG_1BIT if quantize_1bit else 0, step, trainer_nonce, *batch, len(results))
    )
    for r, (idx, val) in zip(results, _entry_parts(results, quantize_1bit), strict=True):
        k = r.idx.shape[-1] if r.idx.ndim else 0
        out += struct.pack(f"<B{len(r.xshape)}HII", len(r.xshape), *r.xshape, r.totalk, k)
        out += idx
        out += val
    return bytes(out)


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.raw):
            raise PayloadRefused(
                "truncated", f"{what} needs {n} bytes at offset {self.pos}, {len(self.raw)} total"
            )
        chunk = self.raw[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        s = struct.Struct(fmt)
        return s.unpack(self.take(s.size, what))


def decode_payload(raw: bytes, shapes: Sequence[PayloadShape], max_bytes: int) -> Payload:
    """The payload in ``raw``, checked against the run's ``shapes``; ``PayloadRefused`` for anything else:
    over ``max_bytes``, truncated, trailing bytes, another version, 1-bit flag or parameter count, an entry of
    another shape, an index >= totalk or repeated within a chunk, a non-finite value, set padding bits, or a
    batch whose start is after its end."""
    if len(raw) > max_bytes:
        raise PayloadRefused("oversized", f"{len(raw)} bytes, at most {max_bytes}")
    r = _Reader(raw)
    version, flags, step, nonce, start, end, count = r.unpack(_HEADER.format, "header")
    if version != VERSION:
        raise PayloadRefused("bad version", f"version {version}, expected {VERSION}")
    one_bit = bool(shapes[0].one_bit) if shapes else False
    if flags != (_FLAG_1BIT if one_bit else 0):
        raise PayloadRefused(
            "bad flags", f"flags {flags:#x}, the run's values are {'1-bit' if one_bit else 'f32'}"
        )
    if start > end:
        raise PayloadRefused("bad batch", f"start {start} after end {end}")
    if count != len(shapes):
        raise PayloadRefused("wrong parameter count", f"{count} entries, the model has {len(shapes)}")
    results = [_decode_entry(r, i, shape) for i, shape in enumerate(shapes)]
    if r.pos != len(raw):
        raise PayloadRefused("trailing bytes", f"{len(raw) - r.pos} bytes after the last entry")
    return Payload(step, nonce, (start, end), results, one_bit)


def _decode_entry(r: _Reader, i: int, shape: PayloadShape) -> SparseParam:
    where = f"entry {i} ({shape.name})"
    (ndim,) = r.unpack("<B", f"{where} ndim")
    declared = r.unpack(f"<{ndim}HII", f"{where} shape")
    xshape, totalk, k = tuple(declared[:ndim]), declared[ndim], declared[ndim + 1]
    if (xshape, totalk, k) != (shape.xshape, shape.totalk, shape.k):
        raise PayloadRefused(
            "wrong shape",
            f"{where}: {xshape}/{totalk}/k={k}, expected {shape.xshape}/{shape.totalk}/k={shape.k}",
        )
    width = index_width(totalk)
    # Checked in numpy (small arrays: a fraction of torch's per-call cost), then handed over without a copy.
    idx_np = np.frombuffer(r.take(shape.count * width, f"{where} indices"), dtype=_INDEX_DTYPE[width])
    idx_np = idx_np.astype(np.int64).reshape(*shape.grid, k)
    if shape.count and int(idx_np.max()) >= totalk:
        raise PayloadRefused("index out of range", f"{where}: index {int(idx_np.max())} >= totalk {totalk}")
    if k > 1 and (np.diff(np.sort(idx_np, axis=-1), axis=-1) == 0).any():
        raise PayloadRefused("duplicate index", f"{where}: an index repeats within a chunk")
    if shape.one_bit:
        packed = r.take((shape.count + 7) // 8, f"{where} values")
        bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), bitorder="little")
        if bits[shape.count :].any():
            raise PayloadRefused("bad padding", f"{where}: padding bits after the last value are set")
        vals = _SIGNS[bits[: shape.count]]
    else:
        vals = np.frombuffer(r.take(4 * shape.count, f"{where} values"), dtype=_F32).astype(np.float32)
        if not np.isfinite(vals).all():
            raise PayloadRefused("non-finite value", f"{where}: NaN or infinity among the values")
    idx = torch.from_numpy(idx_np)
    val = torch.from_numpy(vals.reshape(*shape.grid, k))
    return SparseParam(idx, val, xshape, totalk)
