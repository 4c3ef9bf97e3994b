"""Run-config TOML loading: the four upstream files, and the exact one-line error for each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.model import (
    AdamW,
    Checkpoint,
    CheckpointKind,
    ConstantLR,
    CoordinatorConfig,
    DataLocation,
    DataLocationKind,
    Distro,
    DummyOptimizer,
    Gcp,
    GcsRepo,
    HttpDataLocation,
    NumberedFiles,
    SingleUrl,
    TokenSize,
    WarmupStableDecayLR,
    config_check,
    model_check,
)
from psyche.chain.accounts.zerocopy import f32
from psyche.chain.runconfig import load_run_config
from psyche.errors import ConfigError

BASE = """\
[config]
warmup_time = 15
cooldown_time = 30
epoch_time = 60
max_round_train_time = 15
round_witness_time = 1
min_clients = 1
init_min_clients = 1
verification_percent = 0
witness_nodes = 0
global_batch_size_start = 2048
global_batch_size_end = 2048
global_batch_size_warmup_tokens = 0
total_steps = 25000
waiting_for_members_extra_time = 3

[model.LLM]
architecture = "HfLlama"
data_type = "Pretraining"
max_seq_len = 2048
cold_start_warmup_steps = 0

[model.LLM.checkpoint.Hub]
repo_id = "emozilla/llama2-1.1b-gqa-init"

[model.LLM.data_location.Http]
token_size_in_bytes = "TwoBytes"
shuffle = "DontShuffle"

[model.LLM.data_location.Http.location.Gcp]
bucket_name = "nous-pretraining-public-us"
filter_directory = "fineweb-edu-tokenized-llama2"

[model.LLM.lr_schedule.Cosine]
base_lr = 4.0e-4
warmup_steps = 250
warmup_init_lr = 0.0
total_steps = 25000
final_lr = 4.0e-5

[model.LLM.optimizer.Distro]
clip_grad_norm = 1.0
compression_decay = 0.999
compression_chunk = 64
compression_topk = 2
quantize_1bit = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the real files


def test_config_toml_gives_exactly_the_model_and_config_in_the_real_dump(psyche_fixtures: Path) -> None:
    config, model = load_run_config(psyche_fixtures / "run-config-config.toml")
    account = CoordinatorAccount.decode((psyche_fixtures / "coordinator-account-v1.bin").read_bytes())
    assert (config, model) == (account.config, account.model)
    assert len(model.to_borsh()) == 386


def test_light_config_gcs(psyche_fixtures: Path) -> None:
    config, model = load_run_config(psyche_fixtures / "run-config-light-config-gcs.toml")
    assert (config.warmup_time, config.global_batch_size_start, config.global_batch_size_end) == (30, 8, 8)
    assert model.checkpoint == Checkpoint(CheckpointKind.Gcs, GcsRepo("llama220minit"))
    assert model.optimizer == Distro(1.0, None, f32(0.999), 8, 64, True)
    assert config_check(config) and model_check(model)


def test_light_config(psyche_fixtures: Path) -> None:
    config, model = load_run_config(psyche_fixtures / "run-config-light-config.toml")
    assert config.round_witness_time == 5
    assert model.checkpoint == Checkpoint.hub("emozilla/llama2-20m-init")
    assert config_check(config) and model_check(model)


def test_nano_config(psyche_fixtures: Path) -> None:
    config, model = load_run_config(psyche_fixtures / "run-config-nano-config.toml")
    assert (config.warmup_time, config.epoch_time, config.witness_nodes, config.global_batch_size_end) == (
        100,
        120,
        1,
        4,
    )
    assert model.max_seq_len == 64
    assert model.checkpoint == Checkpoint.hub(
        "pefontana/Nano-Llama", "cf48eac4944f6e954a3d9c9c30e8c865e64e7d03"
    )
    url = "https://huggingface.co/pefontana/Nano-Llama/resolve/main/tiny-ci-dataset/000_tiny-test.ds"
    assert model.data_location == DataLocation(DataLocationKind.Http, HttpDataLocation(SingleUrl(url)))
    assert config_check(config) and model_check(model)


# ---------------------------------------------------------------- other variants, project-made


def test_base_text_loads(tmp_path: Path) -> None:
    config, model = load_run_config(write(tmp_path, BASE))
    assert config == CoordinatorConfig(15, 30, 15, 1, 0, 60, 25000, 1, 1, 0, 2048, 2048, 0, 3)
    assert model.data_location.value == HttpDataLocation(
        Gcp("nous-pretraining-public-us", "fineweb-edu-tokenized-llama2"), TokenSize.TwoBytes, None
    )


def test_inline_variants_load(tmp_path: Path) -> None:
    text = BASE.replace(
        'shuffle = "DontShuffle"',
        "shuffle = { Seeded = [" + ", ".join(["7"] * 32) + "] }",
    ).replace(
        "[model.LLM.data_location.Http.location.Gcp]",
        '[model.LLM.data_location.Http.location.NumberedFiles]\nurl_template = "u{}"\nstart_index = 1\n'
        "n_left_pad_zeros = 3\nnum_files = 9",
    )
    text = text.replace(
        "[model.LLM.optimizer.Distro]",
        "[model.LLM.optimizer.AdamW]\nbetas = [0.9, 0.95]\neps = 1e-8\nweight_decay = 0",
    )
    text = text.replace(
        "[model.LLM.lr_schedule.Cosine]",
        "[model.LLM.lr_schedule.WarmupStableDecay]\ncosine_decay_final_lr = 1e-5\nlinear_decay_final_lr = 0\n"
        "stable_steps = 10\ncosine_decay_steps = 20\nlinear_decay_steps = 30",
    )
    _, model = load_run_config(write(tmp_path, text))
    assert model.data_location.value == HttpDataLocation(
        NumberedFiles("u{}", 1, 3, 9), TokenSize.TwoBytes, b"\x07" * 32
    )
    assert model.optimizer == AdamW((f32(0.9), f32(0.95)), 0.0, f32(1e-8), 1.0)
    assert model.lr_schedule == WarmupStableDecayLR(4e-4, 0.0, 1e-5, 0.0, 250, 10, 20, 30)


def test_unit_variants_load(tmp_path: Path) -> None:
    text = BASE.split("[model.LLM.checkpoint.Hub]")[0] + (
        'checkpoint = "Ephemeral"\ndata_location = "Dummy"\noptimizer = "Dummy"\n'
        "lr_schedule = { Constant = { base_lr = 1, warmup_init_lr = 0, warmup_steps = 5 } }\n"
    )
    _, model = load_run_config(write(tmp_path, text))
    assert (model.checkpoint, model.data_location, model.optimizer) == (
        Checkpoint(CheckpointKind.Ephemeral),
        DataLocation(),
        DummyOptimizer(),
    )
    assert model.lr_schedule == ConstantLR(1.0, 0.0, 5)
    assert not model_check(model)  # Ephemeral and Dummy optimizer parse, but the program refuses them


# ---------------------------------------------------------------- errors: exact one-line messages


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "waiting_for_members_extra_time = 3\n",
            "",
            "{p}:1: config.waiting_for_members_extra_time: missing; expected u8 integer (0..255)",
        ),
        (
            "epoch_time = 60",
            'epoch_time = "60"',
            "{p}:4: config.epoch_time: got string '60'; expected u64 integer (0..18446744073709551615)",
        ),
        (
            "min_clients = 1\n",
            "min_clients = 70000\n",
            "{p}:7: config.min_clients: 70000 is out of range; expected u16 integer (0..65535)",
        ),
        (
            "warmup_time = 15",
            "warmup_time = -1",
            "{p}:2: config.warmup_time: -1 is out of range; expected u64 integer (0..18446744073709551615)",
        ),
        (
            'architecture = "HfLlama"',
            'architecture = "Gpt2"',
            "{p}:18: model.LLM.architecture: unknown variant 'Gpt2'; "
            "expected one of HfLlama, HfDeepseek, HfAuto, Torchtitan",
        ),
        (
            "[model.LLM.checkpoint.Hub]",
            "[model.LLM.checkpoint.Hubb]",
            "{p}:23: model.LLM.checkpoint: unknown variant 'Hubb'; "
            "expected one of Ephemeral, Dummy, Hub, P2P, Gcs, P2PGcs",
        ),
        (
            'repo_id = "emozilla/llama2-1.1b-gqa-init"',
            'repo_id = "' + "x" * 65 + '"',
            "{p}:24: model.LLM.checkpoint.Hub.repo_id: string of 65 bytes is too long; "
            "expected a string of at most 64 bytes",
        ),
        (
            "quantize_1bit = false",
            "quantize_1bit = 0",
            "{p}:46: model.LLM.optimizer.Distro.quantize_1bit: got integer 0; expected true or false",
        ),
        (
            "base_lr = 4.0e-4",
            'base_lr = "fast"',
            "{p}:35: model.LLM.lr_schedule.Cosine.base_lr: got string 'fast'; expected a number (f64)",
        ),
        (
            "[model.LLM.optimizer.Distro]\nclip_grad_norm = 1.0\n",
            "[model.LLM.optimizer.Distro]\nclip_grad_norm = 1.0\n[model.LLM.optimizer.AdamW]\n",
            "{p}:41: model.LLM.optimizer: table with 2 variants ['AdamW', 'Distro']; "
            "expected exactly one of Dummy, AdamW, Distro",
        ),
        (
            "[config]\n",
            "[configuration]\n",
            "{p}: config: missing; expected a table",
        ),
        (
            "epoch_time = 60",
            "epoch_time = ",
            "{p}: invalid TOML: Invalid value (at line 4, column 14)",
        ),
    ],
)
def test_error_messages(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert str(info.value) == message.format(p=path)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(tmp_path / "nope.toml")
    assert str(info.value) == f"run config file not found: {tmp_path / 'nope.toml'}"
