"""The Trainer on the CPU: loss falls; micro-batching leaves the step as is; schedule and clipping apply."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from psyche.chain.accounts.model import ConstantLR, LinearLR
from psyche.client.config import OptimizerSettings, TrainerConfig, TrainerEnv
from psyche.client.data import DummySource
from psyche.client.model import preset
from psyche.client.train import Trainer, peak_flops, run_seed, trainer_for_run
from psyche.errors import ConfigError
from psyche.parallelism_table import Parallelism

SEQ = 32


def _trainer(mbs: int = 4, seed: int = 7, **cfg: object) -> Trainer:
    spec = preset("tiny", SEQ)
    config = TrainerConfig(micro_batch_size=mbs, device="cpu", **cfg)  # type: ignore[arg-type]
    return Trainer(config, spec, seed, DummySource(SEQ, spec.vocab_size, seed))


def test_loss_decreases_over_a_few_steps() -> None:
    t = _trainer(lr_schedule=ConstantLR(5e-3, 5e-3, 0))
    losses = [t.train_step(list(range(i * 8, i * 8 + 8))).loss for i in range(15)]
    assert losses[0] > 6.0  # about ln(512) at init
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5


def test_step_result_reports_tokens_time_and_no_mfu_on_cpu() -> None:
    t = _trainer()
    r = t.train_step([0, 1, 2])
    assert (r.step, r.tokens) == (1, 3 * SEQ)
    assert r.seconds > 0 and r.tokens_per_second == pytest.approx(r.tokens / r.seconds)
    assert r.mfu is None
    assert t.train_step([3]).step == 2


def test_micro_batch_size_only_changes_accumulation_not_the_step() -> None:
    whole, split = _trainer(mbs=8), _trainer(mbs=3)
    for i in range(3):
        a = whole.train_step(list(range(i * 8, i * 8 + 8)))
        b = split.train_step(list(range(i * 8, i * 8 + 8)))
        assert a.loss == pytest.approx(b.loss, abs=1e-5)
    for p, q in zip(whole.model.parameters(), split.model.parameters(), strict=True):
        # Summation order differs, and AdamW's first steps amplify it a little for near-zero gradients.
        assert torch.allclose(p, q, atol=1e-4)


def test_learning_rate_follows_the_run_schedule() -> None:
    t = _trainer(lr_schedule=LinearLR(1e-3, 0.0, 0.0, 2, 4))
    assert [t.train_step([i]).lr for i in range(5)] == pytest.approx([0.0, 5e-4, 1e-3, 5e-4, 0.0])


def grad(param: torch.Tensor) -> torch.Tensor:
    """The gradient a backward pass left on ``param``."""
    assert param.grad is not None
    return param.grad


def test_gradient_clipping_bounds_the_update() -> None:
    clipped = _trainer(optimizer=OptimizerSettings(clip_grad_norm=1e-3), lr_schedule=ConstantLR(1.0, 1.0, 0))
    plain = _trainer(lr_schedule=ConstantLR(1.0, 1.0, 0))
    before = clipped.model.lm_head.weight.detach().clone()
    clipped.train_step([0, 1])
    plain.train_step([0, 1])
    # AdamW normalises the first step's size, so compare gradients: clipped ones are tiny.
    g_clipped = torch.cat([grad(p).reshape(-1) for p in clipped.params]).norm()
    g_plain = torch.cat([grad(p).reshape(-1) for p in plain.params]).norm()
    assert float(g_clipped) == pytest.approx(1e-3, rel=1e-3) and float(g_plain) > 0.1
    assert not torch.equal(before, clipped.model.lm_head.weight)


def test_seq_len_mismatch_is_a_config_error() -> None:
    spec = preset("tiny", SEQ)
    with pytest.raises(ConfigError, match="data seq_len 16 differs from the model's max_seq_len 32"):
        Trainer(TrainerConfig(device="cpu"), spec, 0, DummySource(16, 512))


def test_trainer_starts_from_a_hugging_face_directory(tmp_path: Path) -> None:
    import json

    from safetensors.torch import save_file

    source = _trainer(seed=11)
    save_file(
        {k: v.contiguous() for k, v in source.model.state_dict().items()}, str(tmp_path / "m.safetensors")
    )
    (tmp_path / "config.json").write_text(json.dumps(source.spec.to_hf_config()))
    other = Trainer(
        TrainerConfig(micro_batch_size=4, device="cpu"),
        source.spec,
        99,
        DummySource(SEQ, 512, 11),
        weights_dir=tmp_path,
    )
    assert torch.equal(other.model.lm_head.weight, source.model.lm_head.weight)


def test_peak_flops_table_matches_device_names() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("Some Other GPU") is None


def test_trainer_for_a_dummy_run() -> None:
    from psyche.chain.accounts.model import (
        LLM,
        AdamW,
        Checkpoint,
        CheckpointKind,
        DataLocation,
        HubRepo,
        LLMArchitecture,
        LLMTrainingDataType,
    )

    model = LLM(
        max_seq_len=SEQ,
        cold_start_warmup_steps=0,
        architecture=LLMArchitecture.HfLlama,
        checkpoint=Checkpoint(CheckpointKind.Dummy, HubRepo("")),
        data_type=LLMTrainingDataType.Pretraining,
        data_location=DataLocation(),
        lr_schedule=LinearLR(1e-3, 0.0, 0.0, 2, 4),
        optimizer=AdamW((0.9, 0.95), 0.0, 1e-8, None),
    )
    seed = run_seed("my-run")
    assert seed == run_seed("my-run") != run_seed("other-run")
    t = trainer_for_run(model, TrainerEnv(device="cpu"), seed, Parallelism(micro_batch_size=2))
    assert t.spec == preset("tiny", SEQ) and t.config.micro_batch_size == 2
    assert isinstance(t.data, DummySource) and t.data.seed == seed
    assert t.train_step([0, 1, 2]).lr == 0.0  # the run's schedule: warmup starts at 0


def test_bf16_autocast_path_trains() -> None:
    # The CUDA path's precision, exercised on the CPU (autocast follows the device).
    t = _trainer(precision="bf16", lr_schedule=ConstantLR(5e-3, 5e-3, 0))
    assert t.autocast
    losses = [t.train_step(list(range(i * 8, i * 8 + 8))).loss for i in range(8)]
    assert all(loss == loss for loss in losses)  # no NaN
    assert min(losses[-3:]) < losses[0] - 0.2
    assert t.model.lm_head.weight.dtype == torch.float32  # fp32 master weights
