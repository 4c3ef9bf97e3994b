"""The LLM's optimizer definition (Dummy, AdamW, Distro) with Borsh, zero-copy and serde codecs.

Zero-copy: tag u32 at 936, payload at 940; an Option<f32> there is 8 bytes (tag byte, value at +4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from psyche.chain.accounts.zerocopy import (
    borsh_opt_f32,
    f32_serde,
    zc_opt_f32,
    zc_pack,
    zc_put_opt_f32,
    zc_put_tag,
    zc_tag,
)
from psyche.chain.layout import Reader, Writer

OPTIMIZER_OFFSET = 936

_ADAMW = struct.Struct("<4f")  # betas[0], betas[1], weight_decay, eps
_DISTRO = struct.Struct("<fHHB")  # compression_decay, topk, chunk, quantize_1bit


@dataclass(frozen=True, slots=True)
class DummyOptimizer:
    """``OptimizerDefinition::Dummy``: no optimizer (test runs)."""

    TAG: ClassVar[int] = 0

    def to_borsh(self) -> bytes:
        return b"\x00"

    def write_zc(self, buf: bytearray, off: int = OPTIMIZER_OFFSET) -> None:
        zc_put_tag(buf, off, self.TAG)

    def to_serde(self) -> object:
        return "Dummy"


@dataclass(frozen=True, slots=True)
class AdamW:
    """``OptimizerDefinition::AdamW``."""

    betas: tuple[float, float]
    weight_decay: float
    eps: float
    clip_grad_norm: float | None = None

    TAG: ClassVar[int] = 1

    def to_borsh(self) -> bytes:
        w = Writer().u8(self.TAG).f32(self.betas[0]).f32(self.betas[1]).f32(self.weight_decay).f32(self.eps)
        return borsh_opt_f32(w, self.clip_grad_norm).getvalue()

    def write_zc(self, buf: bytearray, off: int = OPTIMIZER_OFFSET) -> None:
        zc_put_tag(buf, off, self.TAG)
        zc_pack(buf, _ADAMW, off + 4, self.betas[0], self.betas[1], self.weight_decay, self.eps)
        zc_put_opt_f32(buf, off + 20, self.clip_grad_norm)

    def to_serde(self) -> object:
        clip = None if self.clip_grad_norm is None else f32_serde(self.clip_grad_norm)
        body = {
            "betas": [f32_serde(b) for b in self.betas],
            "weight_decay": f32_serde(self.weight_decay),
            "eps": f32_serde(self.eps),
            "clip_grad_norm": clip,
        }
        return {"AdamW": body}


@dataclass(frozen=True, slots=True)
class Distro:
    """``OptimizerDefinition::Distro``: DisTrO, compressed momentum shared between clients."""

    clip_grad_norm: float | None
    weight_decay: float | None
    compression_decay: float
    compression_topk: int
    compression_chunk: int
    quantize_1bit: bool

    TAG: ClassVar[int] = 2

    def to_borsh(self) -> bytes:
        w = borsh_opt_f32(borsh_opt_f32(Writer().u8(self.TAG), self.clip_grad_norm), self.weight_decay)
        w.f32(self.compression_decay).u16(self.compression_topk).u16(self.compression_chunk)
        return w.boolean(self.quantize_1bit).getvalue()

    def write_zc(self, buf: bytearray, off: int = OPTIMIZER_OFFSET) -> None:
        zc_put_tag(buf, off, self.TAG)
        zc_put_opt_f32(buf, off + 4, self.clip_grad_norm)
        zc_put_opt_f32(buf, off + 12, self.weight_decay)
        values = (
            self.compression_decay,
            self.compression_topk,
            self.compression_chunk,
            int(self.quantize_1bit),
        )
        zc_pack(buf, _DISTRO, off + 20, *values)

    def to_serde(self) -> object:
        def opt(v: float | None) -> float | None:
            return None if v is None else f32_serde(v)

        body = {
            "clip_grad_norm": opt(self.clip_grad_norm),
            "weight_decay": opt(self.weight_decay),
            "compression_decay": f32_serde(self.compression_decay),
            "compression_topk": self.compression_topk,
            "compression_chunk": self.compression_chunk,
            "quantize_1bit": self.quantize_1bit,
        }
        return {"Distro": body}


OptimizerDefinition: TypeAlias = DummyOptimizer | AdamW | Distro


def optimizer_from_borsh(r: Reader) -> OptimizerDefinition:
    """Read a Borsh OptimizerDefinition (u8 tag, then the variant's fields).

    Raises:
        AccountDecodeError: an unknown tag or too few bytes.
    """
    tag = r.enum_tag(1, 3, "optimizer")
    if tag == 0:
        return DummyOptimizer()
    if tag == 1:
        betas = (r.f32(), r.f32())
        return AdamW(betas, r.f32(), r.f32(), r.option(Reader.f32))
    clip, decay = r.option(Reader.f32), r.option(Reader.f32)
    return Distro(clip, decay, r.f32(), r.u16(), r.u16(), r.boolean())


def optimizer_read_zc(data: bytes, off: int = OPTIMIZER_OFFSET) -> OptimizerDefinition:
    """Read the zero-copy OptimizerDefinition at absolute offset ``off``.

    Raises:
        AccountDecodeError: an unknown variant or Option tag.
    """
    tag = zc_tag(data, off, 3, "optimizer")
    if tag == 0:
        return DummyOptimizer()
    if tag == 1:
        b0, b1, wd, eps = _ADAMW.unpack_from(data, off + 4)
        return AdamW((b0, b1), wd, eps, zc_opt_f32(data, off + 20, "clip_grad_norm"))
    clip = zc_opt_f32(data, off + 4, "clip_grad_norm")
    decay = zc_opt_f32(data, off + 12, "weight_decay")
    cd, topk, chunk, q = _DISTRO.unpack_from(data, off + 20)
    return Distro(clip, decay, cd, topk, chunk, q != 0)
