"""PARALLELISM_AUTO: GPU name normalisation, the bundled and override tables, misses, manual values."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("torch")

from psyche.client.config import TrainerEnv
from psyche.client.parallelism import (
    Parallelism,
    load_table,
    lookup,
    normalise_gpu_name,
    parse_table,
    resolve_parallelism,
)
from psyche.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "short"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("nvidia h200", "H200"),
        ("NVIDIA A100-SXM4-80GB ", "NVIDIA A100-SXM4-80GB"),
    ],
)
def test_gpu_names_are_normalised(raw: str, short: str) -> None:
    assert normalise_gpu_name(raw) == short


def test_bundled_table_has_h100_and_h200_rows() -> None:
    table = load_table()
    assert set(table) == {"H100", "H200"}
    assert lookup(table, "NVIDIA H100 80GB HBM3", 8) == Parallelism(8, 1, 8)
    assert lookup(table, "H200", 1) == Parallelism(1, 1, 16)


def test_a_miss_is_a_hard_error_listing_the_table() -> None:
    table = load_table()
    with pytest.raises(ConfigError) as info:
        lookup(table, "NVIDIA A100", 8)
    assert str(info.value) == (
        "PARALLELISM_AUTO: GPU 'NVIDIA A100' not in parallelism table "
        "(table has H100: 1, 2, 4, 8 GPUs; H200: 1, 2, 4, 8 GPUs)"
    )
    with pytest.raises(ConfigError, match=r"no config for 3 x H100 \(table has H100: 1, 2, 4, 8 GPUs"):
        lookup(table, "H100", 3)


def test_an_override_file_replaces_the_bundled_table(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"H100": {"8": {"dp": 4, "tp": 2, "micro_batch_size": 4}}}))
    env = TrainerEnv(parallelism_auto=True, parallelism_table=path)
    assert resolve_parallelism(env, detect=lambda: ("H100", 8)) == Parallelism(4, 2, 4)
    with pytest.raises(ConfigError, match="no config for 1 x H100"):
        resolve_parallelism(env, detect=lambda: ("H100", 1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "parallelism table t.json: not JSON"),
        ('{"H100": 3}', "parallelism table t.json: H100: expected an object of GPU counts"),
        (
            '{"H100": {"1": {"dp": 1}}}',
            "parallelism table t.json: H100.1: needs integer dp, tp, micro_batch_size",
        ),
        ('{"H100": {"1": {"dp": 0, "tp": 1, "micro_batch_size": 1}}}', "H100.1: values must be at least 1"),
    ],
)
def test_bad_tables_name_the_file_and_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_table(text, "t.json")


def test_manual_values_without_auto() -> None:
    env = TrainerEnv(data_parallelism=2, tensor_parallelism=2, micro_batch_size=3)

    def no_gpu() -> tuple[str, int]:
        raise AssertionError("detection must not run without PARALLELISM_AUTO")

    assert resolve_parallelism(env, detect=no_gpu) == Parallelism(2, 2, 3)


def test_auto_ignores_manual_values_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    env = TrainerEnv(data_parallelism=2, micro_batch_size=3, parallelism_auto=True)
    with caplog.at_level(logging.WARNING, logger="psyche.client"):
        got = resolve_parallelism(env, detect=lambda: ("NVIDIA H200", 2))
    assert got == Parallelism(2, 1, 16)
    assert "PARALLELISM_AUTO is set, ignoring manual dp/tp/micro_batch_size values" in caplog.text


def test_auto_without_manual_values_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="psyche.client"):
        resolve_parallelism(TrainerEnv(parallelism_auto=True), detect=lambda: ("H100", 1))
    assert caplog.text == ""
