"""Trainer env parsing (one-line errors naming the variable); the run's model mapped to trainer settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from psyche.chain.accounts.model import (
    LLM,
    AdamW,
    Checkpoint,
    CheckpointKind,
    CosineLR,
    DataLocation,
    Distro,
    DummyOptimizer,
    HubRepo,
    LLMArchitecture,
    LLMTrainingDataType,
)
from psyche.client.config import (
    ModelSource,
    OptimizerSettings,
    TrainerEnv,
    load_trainer_env,
    model_source,
    trainer_config,
)
from psyche.errors import ConfigError


def _llm(checkpoint: Checkpoint, optimizer: AdamW | Distro | DummyOptimizer | None = None) -> LLM:
    return LLM(
        max_seq_len=64,
        cold_start_warmup_steps=0,
        architecture=LLMArchitecture.HfLlama,
        checkpoint=checkpoint,
        data_type=LLMTrainingDataType.Pretraining,
        data_location=DataLocation(),
        lr_schedule=CosineLR(4e-4, 0.0, 4e-5, 10, 100),
        optimizer=optimizer or AdamW((0.9, 0.95), 0.1, 1e-8, 1.0),
    )


def test_defaults_without_any_variable(tmp_path: Path) -> None:
    env = load_trainer_env({}, scratch=tmp_path / "absent")
    assert (env.data_parallelism, env.tensor_parallelism, env.micro_batch_size) == (1, 1, 1)
    assert env.parallelism_auto is False and env.checkpoint_dir is None
    assert env.device == "auto" and env.model_preset == "tiny" and env.compile is False


def test_values_are_read_and_scratch_is_the_checkpoint_dir_when_mounted(tmp_path: Path) -> None:
    env = load_trainer_env(
        {
            "DATA_PARALLELISM": "2",
            "TENSOR_PARALLELISM": '"4"',
            "MICRO_BATCH_SIZE": " 8 ",
            "PARALLELISM_AUTO": "TRUE",
            "DEVICE": "cuda:1",
            "TORCH_COMPILE": "1",
            "MODEL_PRESET": "125m",
        },
        scratch=tmp_path,
    )
    assert (env.data_parallelism, env.tensor_parallelism, env.micro_batch_size) == (2, 4, 8)
    assert env.parallelism_auto and env.compile and env.device == "cuda:1" and env.model_preset == "125m"
    assert env.checkpoint_dir == tmp_path


def test_checkpoint_dir_variable_wins_over_scratch(tmp_path: Path) -> None:
    env = load_trainer_env({"CHECKPOINT_DIR": "/elsewhere"}, scratch=tmp_path)
    assert env.checkpoint_dir == Path("/elsewhere")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATA_PARALLELISM", "two", "DATA_PARALLELISM: not an integer: 'two'"),
        ("TENSOR_PARALLELISM", "0", "TENSOR_PARALLELISM: must be at least 1, got 0"),
        ("MICRO_BATCH_SIZE", "-4", "MICRO_BATCH_SIZE: must be at least 1, got -4"),
        ("PARALLELISM_AUTO", "maybe", "PARALLELISM_AUTO: expected true or false, got 'maybe'"),
        ("DEVICE", "tpu", "DEVICE: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("PARALLELISM_TABLE", "/no/such.json", "PARALLELISM_TABLE: no such file: /no/such.json"),
        ("MODEL_PRESET", "huge", "MODEL_PRESET: unknown preset 'huge'; choose one of tiny, 20m, 125m"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_trainer_env({name: value})
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_dummy_checkpoint_uses_the_preset() -> None:
    source = model_source(_llm(Checkpoint(CheckpointKind.Dummy, HubRepo(""))), TrainerEnv(model_preset="20m"))
    assert source == ModelSource("preset", preset="20m")


def _hf_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_hub_checkpoint_found_in_model_dir(tmp_path: Path) -> None:
    repo = _hf_dir(tmp_path / "models" / "org" / "tiny-llama")
    env = load_trainer_env({"MODEL_DIR": str(tmp_path / "models"), "HF_HOME": str(tmp_path / "hf")})
    assert model_source(_llm(Checkpoint.hub("org/tiny-llama")), env) == ModelSource("hf_dir", directory=repo)


def test_hub_checkpoint_found_in_the_hugging_face_cache_layout(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub" / "models--org--m"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text("abc123\n")
    snap = _hf_dir(cache / "snapshots" / "abc123")
    env = load_trainer_env({"HF_HOME": str(tmp_path / "hf")})
    assert model_source(_llm(Checkpoint.hub("org/m")), env).directory == snap


def test_hub_checkpoint_not_available_offline_is_a_clear_error(tmp_path: Path) -> None:
    env = load_trainer_env({"MODEL_DIR": str(tmp_path), "HF_HOME": str(tmp_path / "hf")})
    with pytest.raises(
        ConfigError, match=r"Hub repo 'org/missing' is not available offline; put it under MODEL_DIR"
    ):
        model_source(_llm(Checkpoint.hub("org/missing")), env)


def test_gcs_checkpoints_are_refused() -> None:
    from psyche.chain.accounts.model import GcsRepo

    with pytest.raises(ConfigError, match="Gcs checkpoints are not supported"):
        model_source(_llm(Checkpoint(CheckpointKind.Gcs, GcsRepo("bucket"))), TrainerEnv())


def test_optimizer_settings_from_the_run() -> None:
    adamw = OptimizerSettings.from_run(AdamW((0.8, 0.9), 0.1, 1e-6, 2.0))
    assert adamw.betas == pytest.approx((0.8, 0.9)) and adamw.clip_grad_norm == 2.0
    assert adamw.weight_decay == pytest.approx(0.1) and adamw.eps == pytest.approx(1e-6)
    distro = OptimizerSettings.from_run(Distro(1.0, 0.01, 0.999, 64, 128, True))
    assert distro.clip_grad_norm == 1.0 and distro.weight_decay == pytest.approx(0.01)
    assert distro.distro == Distro(1.0, 0.01, 0.999, 64, 128, True) and adamw.distro is None
    with pytest.raises(ConfigError, match="Dummy optimizer cannot train"):
        OptimizerSettings.from_run(DummyOptimizer())


def test_trainer_config_carries_the_schedule_and_parallelism() -> None:
    model = _llm(Checkpoint(CheckpointKind.Dummy, HubRepo("")))
    cfg = trainer_config(model, TrainerEnv(compile=True), dp=2, tp=1, micro_batch_size=4, device="cpu")
    assert (cfg.data_parallelism, cfg.tensor_parallelism, cfg.micro_batch_size) == (2, 1, 4)
    assert cfg.lr_schedule == model.lr_schedule and cfg.compile
    assert cfg.optimizer.clip_grad_norm == 1.0
