"""The bundled PARALLELISM_AUTO table is what the memory arithmetic in psyche/parallelism_table.py gives, row
by row (torch-free: the doctor reads the same table)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from psyche.parallelism_table import Parallelism, load_bundled_table

GB = 1e9
SEQ = 2048  # the table's sequence length
MAX_MICRO_BATCH = 64
COUNTS = (1, 2, 4, 8)
# Datasheet memory in GB (10^9 bytes, the smaller figure where GiB and GB differ).
GPU_GB = {"RTX 4090": 24, "A100-40GB": 40, "L40S": 48, "A100-80GB": 80, "H100": 80, "H200": 141}


@dataclass(frozen=True)
class Shape:
    """A LLaMA decoder's shape, from the model's config.json (the demo's: the client's tiny preset)."""

    vocab: int
    dim: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int

    def per_layer(self) -> int:
        kv = self.dim // self.heads * self.kv_heads
        return 2 * self.dim * self.dim + 2 * self.dim * kv + 3 * self.dim * self.ffn + 2 * self.dim

    def static_bytes(self, tp: int) -> float:
        """fp32 weights + gradients + AdamW moments of what one GPU holds; embeddings and LM head whole."""
        return 16 * (self.layers * self.per_layer() / tp + 2 * self.vocab * self.dim + self.dim)

    def sequence_bytes(self, tp: int) -> float:
        """Activations (bf16, no recomputation, fused attention) and logits of one sequence."""
        return SEQ * self.dim * self.layers * (10 + 24 / tp) + 10 * SEQ * self.vocab


SHAPES = {
    "psyche-demo/tiny-llama": Shape(512, 64, 2, 4, 2, 192),
    "emozilla/llama2-20m-init": Shape(32000, 256, 8, 8, 8, 768),
    "TinyLlama/TinyLlama-1.1B-Chat-v0.4": Shape(32000, 2048, 22, 32, 4, 5632),
    "NousResearch/Meta-Llama-3.1-8B": Shape(128256, 4096, 32, 32, 8, 14336),
}


def expected_row(shape: Shape, gpu_gb: int, count: int) -> Parallelism | None:
    usable = gpu_gb * GB * 0.95 - 3 * GB
    tp = 1
    while tp <= count:
        if shape.kv_heads % tp == 0 and shape.ffn % tp == 0:
            free = usable - shape.static_bytes(tp)
            if free >= shape.sequence_bytes(tp):
                mbs = 1
                while mbs * 2 <= MAX_MICRO_BATCH and free >= shape.sequence_bytes(tp) * mbs * 2:
                    mbs *= 2
                return Parallelism(count // tp, tp, mbs)
        tp *= 2
    return None


def test_every_model_in_the_table_has_its_shape_here() -> None:
    assert set(load_bundled_table()) == set(SHAPES)


@pytest.mark.parametrize("model", sorted(SHAPES))
def test_each_row_is_the_memory_arithmetic(model: str) -> None:
    have = load_bundled_table()[model]
    want: dict[str, dict[int, Parallelism]] = {}
    for gpu, gb in GPU_GB.items():
        rows = {n: row for n in COUNTS if (row := expected_row(SHAPES[model], gb, n)) is not None}
        if rows:
            want[gpu] = rows
    assert have == want


def test_the_sizes_the_notes_quote() -> None:
    tiny_llama = SHAPES["TinyLlama/TinyLlama-1.1B-Chat-v0.4"]
    assert tiny_llama.static_bytes(1) / GB == pytest.approx(17.6, abs=0.05)
    assert tiny_llama.sequence_bytes(1) / GB == pytest.approx(3.8, abs=0.05)
    llama_8b = SHAPES["NousResearch/Meta-Llama-3.1-8B"]
    assert (
        llama_8b.layers * llama_8b.per_layer() + 2 * llama_8b.vocab * llama_8b.dim
    ) / 1e9 == pytest.approx(8.03, abs=0.01)
    assert llama_8b.static_bytes(1) / GB == pytest.approx(128.5, abs=0.05)  # no single GPU holds it
