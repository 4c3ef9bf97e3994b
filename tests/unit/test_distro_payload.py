"""The DisTrO payload: golden bytes, the commitment hash (computed here by hand), round trips for the model
presets' shapes, exact size caps, and every refusal."""

from __future__ import annotations

import hashlib
import struct

import pytest

pytest.importorskip("torch")

import torch

from psyche.chain.accounts.optimizer import Distro
from psyche.client.distro import DistroOptimizer, SparseParam
from psyche.client.distro_payload import (
    Payload,
    PayloadShape,
    data_hash,
    decode_payload,
    encode_payload,
    index_width,
    max_payload_bytes,
    payload_shapes,
)
from psyche.client.model import Transformer, preset
from psyche.errors import ConfigError, PayloadRefused, RunManagerError

# One 1-D parameter of 4 values, one chunk of 4 coefficients, top-2: indices [3, 0], values [-1, +1].
TINY_1BIT = [SparseParam(torch.tensor([[3, 0]]), torch.tensor([[-1.0, 1.0]]), (1, 4), 4)]
TINY_SHAPES = [PayloadShape("w", (1, 4), 4, 2, True)]
# step 7, nonce 5, batch (10, 12)
TINY_BYTES = bytes.fromhex(
    "01" "01" "07000000" "05000000" "0a00000000000000" "0c00000000000000" "01000000"  # header
    "02" "0100" "0400" "04000000" "02000000"  # ndim 2, xshape (1, 4), totalk 4, k 2
    "0300"  # indices, u8
    "01"  # value 0 is negative (bit 0), value 1 is not
)  # fmt: skip


def test_tiny_payload_golden_bytes_and_round_trip() -> None:
    raw = encode_payload(7, 5, (10, 12), TINY_1BIT, True)
    assert raw == TINY_BYTES
    assert max_payload_bytes(TINY_SHAPES) == len(raw) == 46
    p = decode_payload(raw, TINY_SHAPES, len(raw))
    assert (p.step, p.trainer_nonce, p.batch, p.quantize_1bit) == (7, 5, (10, 12), True)
    (r,) = p.results
    assert (r.idx.tolist(), r.val.tolist(), r.xshape, r.totalk) == ([[3, 0]], [[-1.0, 1.0]], (1, 4), 4)
    assert (r.idx.dtype, r.val.dtype) == (torch.int64, torch.float32)


def test_data_hash_of_a_tiny_payload_matches_the_spec_by_hand() -> None:
    p = decode_payload(TINY_BYTES, TINY_SHAPES, 100)
    # sha256(step u32 BE || start u64 BE || end u64 BE || idx bytes || val bytes), written out by hand:
    by_hand = hashlib.sha256(
        bytes.fromhex("00000007" "000000000000000a" "000000000000000c") + bytes([3, 0]) + bytes([0b01])
    ).hexdigest()  # fmt: skip
    assert by_hand == "6e0a8b5f32f111cdf4542e83e9524c114afa94ecf7ab04390202b9c50f4c51bf"
    assert data_hash(p).hex() == by_hand
    f32 = Payload(
        7, 0, (10, 12), [SparseParam(torch.tensor([[3, 0]]), torch.tensor([[-1.5, 0.25]]), (1, 4), 4)], False
    )
    # f32 values: their little-endian bytes (bf c0 00 00 is -1.5, 00 00 80 3e is 0.25).
    assert hashlib.sha256(
        bytes.fromhex("00000007000000000000000a000000000000000c" "0300" "0000c0bf" "0000803e")
    ).hexdigest() == "22e50da26fc56f7bd4809a8ed249830a0b1c6bd7ab9731a43e24dde7562f12dd"  # fmt: skip
    assert data_hash(f32).hex() == "22e50da26fc56f7bd4809a8ed249830a0b1c6bd7ab9731a43e24dde7562f12dd"
    # The nonce is not part of the commitment; the step and the batch are.
    other_nonce = Payload(7, 99, (10, 12), p.results, True)
    assert data_hash(other_nonce) == data_hash(p)
    assert data_hash(Payload(8, 5, (10, 12), p.results, True)) != data_hash(p)
    assert data_hash(Payload(7, 5, (10, 13), p.results, True)) != data_hash(p)


def test_index_width_is_the_smallest_unsigned_type() -> None:
    assert [index_width(n) for n in (1, 256, 257, 4096, 65536, 65537, 262144)] == [1, 1, 2, 2, 2, 4, 4]


@pytest.mark.parametrize(
    ("chunk", "topk", "one_bit"), [(64, 8, True), (64, 8, False), (512, 4, True), (5, 30, True)]
)
def test_round_trip_for_the_tiny_preset(chunk: int, topk: int, one_bit: bool) -> None:
    model = Transformer(preset("tiny", 16))
    named = [(n, p) for n, p in model.named_parameters()]
    settings = Distro(None, None, 0.999, topk, chunk, one_bit)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    results = DistroOptimizer(named, settings).generate(1e-3)
    shapes = payload_shapes(named, settings)
    raw = encode_payload(3, 1, (40, 47), results, one_bit)
    assert len(raw) == max_payload_bytes(shapes, settings)
    payload = decode_payload(raw, shapes, len(raw))
    assert (payload.step, payload.trainer_nonce, payload.batch) == (3, 1, (40, 47))
    for got, sent in zip(payload.results, results, strict=True):
        assert torch.equal(got.idx, sent.idx) and torch.equal(got.val, sent.val)
        assert (got.xshape, got.totalk) == (sent.xshape, sent.totalk)
    assert data_hash(payload) == data_hash(Payload(3, 1, (40, 47), results, one_bit))
    if chunk == 512:  # the embedding's chunks are 512 x 64 = 32768 coefficients: u16 indices
        assert (shapes[0].xshape, shapes[0].totalk, shapes[0].count) == ((1, 1, 512, 64), 32768, 4)
        assert shapes[0].nbytes() == 1 + 2 * 4 + 8 + 4 * 2 + 1


def test_preset_shapes_and_sizes() -> None:
    model = Transformer(preset("tiny", 16))
    shapes = payload_shapes(list(model.named_parameters()), Distro(None, None, 0.999, 8, 64, True))
    emb = shapes[0]
    assert (emb.name, emb.xshape, emb.totalk, emb.k) == ("model.embed_tokens.weight", (8, 1, 64, 64), 4096, 8)
    assert emb.count == 64 and emb.nbytes() == 1 + 2 * 4 + 8 + 64 * 2 + 8
    norm = next(s for s in shapes if s.name.endswith("input_layernorm.weight"))
    assert (norm.xshape, norm.totalk, norm.count, norm.nbytes()) == ((1, 64), 64, 8, 1 + 4 + 8 + 8 + 1)


def test_payload_shapes_refuse_a_parameter_with_too_many_chunks() -> None:
    big = torch.nn.Parameter(torch.zeros(65537 * 2))  # 2 * 65537: chunk 2, 65537 chunks
    with pytest.raises(ConfigError, match="65537 chunks"):
        payload_shapes([("w", big)], Distro(None, None, 0.999, 8, 64, True))


def _refusal(raw: bytes, shapes: list[PayloadShape] = TINY_SHAPES, cap: int = 1000) -> str:
    with pytest.raises(PayloadRefused) as info:
        decode_payload(raw, shapes, cap)
    assert isinstance(info.value, RunManagerError)
    assert str(info.value).startswith(f"payload refused: {info.value.reason}")
    return info.value.reason


def _patch(offset: int, new: bytes, raw: bytes = TINY_BYTES) -> bytes:
    return raw[:offset] + new + raw[offset + len(new) :]


def test_every_truncation_is_refused() -> None:
    for n in range(len(TINY_BYTES)):
        assert _refusal(TINY_BYTES[:n]) == "truncated", n


def test_refusals() -> None:
    assert _refusal(TINY_BYTES + b"\x00") == "trailing bytes"
    assert _refusal(TINY_BYTES, cap=len(TINY_BYTES) - 1) == "oversized"
    assert _refusal(TINY_BYTES + b"\x00" * 10, cap=len(TINY_BYTES)) == "oversized"
    assert _refusal(_patch(0, b"\x02")) == "bad version"
    assert _refusal(_patch(1, b"\x00")) == "bad flags"
    assert _refusal(_patch(10, struct.pack("<Q", 13))) == "bad batch"  # start 13 after end 12
    assert _refusal(_patch(26, struct.pack("<I", 2))) == "wrong parameter count"
    assert _refusal(_patch(43, b"\x04")) == "index out of range"  # index 4 with totalk 4
    assert _refusal(_patch(43, b"\x00")) == "duplicate index"  # [0, 0]
    assert _refusal(_patch(45, b"\x05")) == "bad padding"  # a bit after the two values
    assert _refusal(_patch(33, b"\x08\x00")) == "wrong shape"  # xshape (1, 8)
    assert _refusal(_patch(39, b"\x03")) == "wrong shape"  # k = 3
    assert _refusal(TINY_BYTES, shapes=[PayloadShape("w", (2, 4), 4, 2, True)]) == "wrong shape"
    assert _refusal(TINY_BYTES, shapes=[PayloadShape("w", (1, 4), 4, 2, False)]) == "bad flags"
    assert _refusal(TINY_BYTES, shapes=[*TINY_SHAPES, *TINY_SHAPES]) == "wrong parameter count"


def test_non_finite_f32_values_are_refused() -> None:
    shapes = [PayloadShape("w", (1, 4), 4, 2, False)]
    good = [SparseParam(torch.tensor([[3, 0]]), torch.tensor([[-1.5, 0.25]]), (1, 4), 4)]
    raw = encode_payload(7, 5, (10, 12), good, False)
    assert decode_payload(raw, shapes, len(raw)).results[0].val.tolist() == [[-1.5, 0.25]]
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert _refusal(raw[:-4] + struct.pack("<f", bad), shapes) == "non-finite value"
