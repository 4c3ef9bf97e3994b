"""The LLaMA decoder: sizes, causality, grouped-query attention, deterministic init, HF-format round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch
from safetensors.torch import save_file

from psyche.client.model import (
    DecoderLayer,
    ModelSpec,
    Transformer,
    load_hf_weights,
    preset,
    read_hf_config,
)
from psyche.errors import ConfigError


def _model(seed: int = 1, **changes: object) -> Transformer:
    spec = replace(preset("tiny", 16), **changes)  # type: ignore[arg-type]
    m = Transformer(spec)
    m.init_weights(seed)
    return m


def test_parameter_count_matches_the_spec() -> None:
    for spec in (preset("tiny", 16), replace(preset("tiny", 16), tie_embeddings=True)):
        assert sum(p.numel() for p in Transformer(spec).parameters()) == spec.num_parameters()


def test_the_125m_preset_is_about_125m_parameters() -> None:
    assert 110e6 < preset("125m", 2048).num_parameters() < 140e6


def test_logits_shape_and_causality() -> None:
    m = _model()
    tokens = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = m(tokens)
    assert logits.shape == (2, 16, 512)
    changed = tokens.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 512
    after = m(changed)
    assert torch.allclose(logits[:, :10], after[:, :10], atol=1e-6)
    assert not torch.allclose(logits[:, 10:], after[:, 10:])


def test_grouped_query_attention_has_fewer_kv_projections() -> None:
    layer = _model().model.layers[0]
    assert isinstance(layer, DecoderLayer)
    attn = layer.self_attn
    assert attn.q_proj.weight.shape == (64, 64) and attn.k_proj.weight.shape == (32, 64)


def test_init_is_deterministic_from_the_seed() -> None:
    a, b, c = _model(5), _model(5), _model(6)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    assert torch.equal(a.model.norm.weight, torch.ones(64))


def test_loss_sum_is_the_summed_next_token_cross_entropy() -> None:
    m = _model()
    batch = torch.randint(0, 512, (3, 17), generator=torch.Generator().manual_seed(1))
    logits = m(batch[:, :-1])
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 512), batch[:, 1:].reshape(-1), reduction="sum"
    )
    assert torch.allclose(m.loss_sum(batch), expected)


def test_hugging_face_directory_round_trip(tmp_path: Path) -> None:
    m = _model(3)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(m.spec.to_hf_config()))
    spec = ModelSpec.from_hf_config(read_hf_config(tmp_path), max_seq_len=16)
    assert spec == m.spec
    loaded = Transformer(spec)
    load_hf_weights(loaded, tmp_path)
    tokens = torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded(tokens), m(tokens))


def test_mismatched_weights_are_a_config_error(tmp_path: Path) -> None:
    save_file({"model.embed_tokens.weight": torch.zeros(512, 64)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="weights do not match a LLaMA model"):
        load_hf_weights(_model(), tmp_path)
    with pytest.raises(ConfigError, match=r"has no \*\.safetensors"):
        load_hf_weights(_model(), tmp_path / "nothing")


def test_bad_shapes_and_configs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="must divide evenly"):
        Transformer(replace(preset("tiny", 16), n_kv_heads=3))
    with pytest.raises(ConfigError, match="missing or bad field"):
        ModelSpec.from_hf_config({"vocab_size": 5}, max_seq_len=8)
    with pytest.raises(ConfigError, match="unknown model preset 'x'"):
        preset("x", 8)
