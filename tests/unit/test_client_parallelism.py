"""PARALLELISM_AUTO: GPU name normalisation, the model key, the bundled and override tables, misses, manual
values."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("torch")

from psyche.chain.accounts.model import LLM, Checkpoint, CheckpointKind, GcsRepo, HubRepo
from psyche.client.config import TrainerEnv
from psyche.client.parallelism_choice import load_table, resolve_parallelism
from psyche.errors import ConfigError
from psyche.parallelism_table import Parallelism, lookup, model_key, normalise_gpu_name, parse_table
from tests.support.client_run import P2P_MODEL

TINY_LLAMA = "TinyLlama/TinyLlama-1.1B-Chat-v0.4"
LLAMA_8B = "NousResearch/Meta-Llama-3.1-8B"


def _run(kind: CheckpointKind, repo: str) -> LLM:
    return dataclasses.replace(P2P_MODEL, checkpoint=Checkpoint(kind, HubRepo(repo)))


HUB_8B = _run(CheckpointKind.Hub, LLAMA_8B)


@pytest.mark.parametrize(
    ("raw", "memory_mib", "short"),
    [
        ("NVIDIA H100 80GB HBM3", None, "H100"),
        ("NVIDIA H100 PCIe", None, "H100"),
        ("nvidia h200", None, "H200"),
        ("NVIDIA A100-SXM4-80GB ", None, "A100-80GB"),
        ("NVIDIA A100-PCIE-40GB", None, "A100-40GB"),
        ("NVIDIA A100-SXM4", 40_960, "A100-40GB"),
        ("NVIDIA A100-SXM4", 81_920, "A100-80GB"),
        ("NVIDIA L40S", None, "L40S"),
        ("NVIDIA GeForce RTX 4090", None, "RTX 4090"),
        (" Tesla T4 ", 15_360, "Tesla T4"),
    ],
)
def test_gpu_names_are_normalised(raw: str, memory_mib: int | None, short: str) -> None:
    assert normalise_gpu_name(raw, memory_mib) == short


def test_the_model_key_is_the_repo_the_runs_checkpoint_names() -> None:
    assert model_key(HUB_8B) == LLAMA_8B
    assert model_key(_run(CheckpointKind.P2P, TINY_LLAMA)) == TINY_LLAMA
    # The demo run: Dummy weights, and a repo name the epoch's end carries into its P2P checkpoint.
    assert model_key(_run(CheckpointKind.Dummy, "psyche-demo/tiny-llama")) == "psyche-demo/tiny-llama"


@pytest.mark.parametrize(
    ("checkpoint", "what"),
    [
        (Checkpoint(CheckpointKind.Dummy, HubRepo("")), "a Dummy checkpoint with an empty repo_id"),
        (Checkpoint(CheckpointKind.Gcs, GcsRepo("bucket")), "a Gcs checkpoint"),
    ],
)
def test_a_checkpoint_naming_no_model_is_one_line(checkpoint: Checkpoint, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        model_key(dataclasses.replace(P2P_MODEL, checkpoint=checkpoint))
    assert str(info.value) == (
        f"PARALLELISM_AUTO: the run's model has {what}, which names no model to look up; "
        "set DATA_PARALLELISM, TENSOR_PARALLELISM and MICRO_BATCH_SIZE instead, or give a PARALLELISM_TABLE"
    )


def test_bundled_table_rows_by_model_and_gpu() -> None:
    table = load_table()
    assert {"emozilla/llama2-20m-init", TINY_LLAMA, LLAMA_8B, "psyche-demo/tiny-llama"} <= set(table)
    for gpus in table.values():
        assert {"A100-40GB", "A100-80GB", "H100", "H200", "L40S", "RTX 4090"} >= set(gpus)
    assert set(table[TINY_LLAMA]) == {"A100-40GB", "A100-80GB", "H100", "H200", "L40S", "RTX 4090"}
    assert lookup(table, TINY_LLAMA, "NVIDIA H100 80GB HBM3", 8) == Parallelism(8, 1, 8)  # upstream's row
    assert lookup(table, TINY_LLAMA, "NVIDIA A100-PCIE-40GB", 1) == Parallelism(1, 1, 4)
    assert lookup(table, TINY_LLAMA, "NVIDIA GeForce RTX 4090", 2) == Parallelism(1, 2, 2)  # 24 GB: tp 2
    assert lookup(table, LLAMA_8B, "H200", 8) == Parallelism(4, 2, 4)
    assert lookup(table, LLAMA_8B, "NVIDIA L40S", 8) == Parallelism(1, 8, 1)


def test_an_unknown_model_is_a_hard_error_listing_the_models() -> None:
    table = load_table()
    with pytest.raises(ConfigError) as info:
        lookup(table, "org/unknown", "H100", 8)
    message = str(info.value)
    assert message.startswith("PARALLELISM_AUTO: model 'org/unknown' not in parallelism table (table has ")
    assert TINY_LLAMA in message and "\n" not in message
    assert message.endswith(
        "; set DATA_PARALLELISM, TENSOR_PARALLELISM and MICRO_BATCH_SIZE instead, or give a PARALLELISM_TABLE"
    )


def test_an_unknown_gpu_or_count_is_a_hard_error_listing_the_models_rows() -> None:
    table = load_table()
    with pytest.raises(ConfigError) as info:
        lookup(table, LLAMA_8B, "Tesla T4", 1)
    assert str(info.value) == (
        f"PARALLELISM_AUTO: GPU 'Tesla T4' not in parallelism table for model '{LLAMA_8B}' (table has "
        "L40S: 8 GPUs; A100-80GB: 4, 8 GPUs; H100: 4, 8 GPUs; H200: 2, 4, 8 GPUs)"
    )
    # One H100 cannot hold an 8B model with fp32 AdamW: no row, so no config.
    with pytest.raises(
        ConfigError, match=rf"^PARALLELISM_AUTO: no config for 1 x H100 with model '{LLAMA_8B}'"
    ):
        lookup(table, LLAMA_8B, "NVIDIA H100 80GB HBM3", 1)


def test_an_override_file_replaces_the_bundled_table(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text(json.dumps({LLAMA_8B: {"H100": {"8": {"dp": 4, "tp": 2, "micro_batch_size": 4}}}}))
    env = TrainerEnv(parallelism_auto=True, parallelism_table=path)
    assert resolve_parallelism(env, HUB_8B, detect=lambda: ("H100", 8)) == Parallelism(4, 2, 4)
    with pytest.raises(ConfigError, match="no config for 4 x H100"):
        resolve_parallelism(env, HUB_8B, detect=lambda: ("H100", 4))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "parallelism table t.json: not JSON"),
        ('{"m": 3}', "parallelism table t.json: m: expected an object of GPU types"),
        ('{"m": {"H100": 3}}', "parallelism table t.json: m.H100: expected an object of GPU counts"),
        (
            '{"m": {"H100": {"1": {"dp": 1}}}}',
            "parallelism table t.json: m.H100.1: needs integer dp, tp, micro_batch_size",
        ),
        (
            '{"m": {"H100": {"1": {"dp": 0, "tp": 1, "micro_batch_size": 1}}}}',
            "m.H100.1: values must be at least 1",
        ),
    ],
)
def test_bad_tables_name_the_file_and_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_table(text, "t.json")


def test_manual_values_without_auto() -> None:
    env = TrainerEnv(data_parallelism=2, tensor_parallelism=2, micro_batch_size=3)

    def no_gpu() -> tuple[str, int]:
        raise AssertionError("detection must not run without PARALLELISM_AUTO")

    assert resolve_parallelism(env, P2P_MODEL, detect=no_gpu) == Parallelism(2, 2, 3)


def test_auto_ignores_manual_values_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    env = TrainerEnv(data_parallelism=2, micro_batch_size=3, parallelism_auto=True)
    with caplog.at_level(logging.INFO, logger="psyche.client"):
        got = resolve_parallelism(env, HUB_8B, detect=lambda: ("NVIDIA H200", 2))
    assert got == Parallelism(1, 2, 4)
    assert "PARALLELISM_AUTO is set, ignoring manual dp/tp/micro_batch_size values" in caplog.text
    assert f"parallelism for {LLAMA_8B} on 2 x NVIDIA H200: dp=1 tp=2 micro_batch_size=4" in caplog.text


def test_auto_without_manual_values_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="psyche.client"):
        resolve_parallelism(TrainerEnv(parallelism_auto=True), HUB_8B, detect=lambda: ("H100", 4))
    assert caplog.text == ""


def test_auto_on_a_run_naming_no_model_fails_before_looking_at_gpus() -> None:
    def no_gpu() -> tuple[str, int]:
        raise AssertionError("no GPU detection for a model with no key")

    with pytest.raises(ConfigError, match="names no model to look up"):
        resolve_parallelism(TrainerEnv(parallelism_auto=True), P2P_MODEL, detect=no_gpu)
