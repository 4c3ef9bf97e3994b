"""Run setup types: golden Borsh bytes assembled by hand, zero-copy placement, serde shape, sanity checks."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psyche.chain.accounts.model import (
    LLM,
    AdamW,
    Checkpoint,
    CheckpointKind,
    CoordinatorConfig,
    CoordinatorProgress,
    CosineLR,
    DataLocation,
    DataLocationKind,
    Distro,
    DummyOptimizer,
    Gcp,
    GcsRepo,
    HttpDataLocation,
    HubRepo,
    LLMArchitecture,
    LLMTrainingDataType,
    NumberedFiles,
    RunMetadata,
    SingleUrl,
    TokenSize,
    WarmupStableDecayLR,
    cold_start_check,
    config_check,
    model_check,
    progress_check,
)
from psyche.chain.accounts.zerocopy import f32, f32_serde
from psyche.chain.layout import Reader
from psyche.errors import AccountDecodeError
from tests.support.coordinator_strategies import (
    checkpoints,
    configs,
    data_locations,
    gcs_repos,
    hub_repos,
    metadata,
    models,
    progress,
)

CONFIG = CoordinatorConfig(15, 30, 15, 1, 0, 60, 25000, 1, 1, 0, 2048, 2048, 0, 3)
MODEL = LLM(
    max_seq_len=2048,
    cold_start_warmup_steps=0,
    architecture=LLMArchitecture.HfLlama,
    checkpoint=Checkpoint.hub("emozilla/llama2-1.1b-gqa-init"),
    data_type=LLMTrainingDataType.Pretraining,
    data_location=DataLocation(
        DataLocationKind.Http,
        HttpDataLocation(Gcp("nous-pretraining-public-us", "fineweb-edu-tokenized-llama2")),
    ),
    lr_schedule=CosineLR(4.0e-4, 0.0, 4.0e-5, 250, 25000),
    optimizer=Distro(1.0, None, f32(0.999), 2, 64, False),
)


def fs(text: str, n: int) -> bytes:
    return text.encode().ljust(n, b"\x00")


def borsh(cls: Any, data: bytes) -> Any:
    reader = Reader(data, "args")
    value = cls.from_borsh(reader)
    reader.expect_end()
    return value


# ---------------------------------------------------------------- golden Borsh bytes


def test_config_borsh_is_the_64_bytes_of_the_spec_table() -> None:
    expected = struct.pack("<QQQQQQ", 15, 30, 15, 1, 0, 60) + struct.pack("<I", 25000)
    expected += struct.pack("<HHHHH", 1, 1, 0, 2048, 2048) + bytes([0, 3])
    assert CONFIG.to_borsh() == expected
    assert len(expected) == 64
    assert borsh(CoordinatorConfig, expected) == CONFIG


def test_progress_and_metadata_borsh() -> None:
    p = CoordinatorProgress(epoch=3, step=7, epoch_start_data_index=2**40)
    assert p.to_borsh() == bytes([3, 0, 7, 0, 0, 0]) + (2**40).to_bytes(8, "little")
    m = RunMetadata("name", "desc", 1_100_000_000, 32768)
    assert m.to_borsh() == fs("name", 64) + fs("desc", 280) + struct.pack("<QQ", 1_100_000_000, 32768)
    assert len(m.to_borsh()) == 360


def test_config_toml_model_is_386_borsh_bytes_assembled_by_hand() -> None:
    expected = b"\x00" + struct.pack("<II", 2048, 0) + b"\x00"  # LLM, seq len, cold start, HfLlama
    expected += b"\x02" + fs("emozilla/llama2-1.1b-gqa-init", 64) + b"\x00"  # Hub(repo_id, revision None)
    expected += b"\x00"  # Pretraining
    expected += b"\x03\x02" + fs("nous-pretraining-public-us", 64) + fs("fineweb-edu-tokenized-llama2", 192)
    expected += b"\x00\x00"  # TwoBytes, DontShuffle
    expected += b"\x02" + struct.pack("<dddII", 4e-4, 0.0, 4e-5, 250, 25000)  # Cosine
    expected += (
        b"\x02" + b"\x01" + struct.pack("<f", 1.0) + b"\x00" + struct.pack("<fHH", 0.999, 2, 64) + b"\x00"
    )
    assert len(expected) == 386
    assert MODEL.to_borsh() == expected
    assert borsh(LLM, expected) == MODEL


def test_hub_repo_borsh_puts_repo_id_first() -> None:
    cp = Checkpoint.hub("org/model", "main")
    assert cp.to_borsh() == b"\x02" + fs("org/model", 64) + b"\x01" + fs("main", 64)
    gcs = Checkpoint(CheckpointKind.P2PGcs, GcsRepo("bucket"))
    assert gcs.to_borsh() == b"\x05" + fs("bucket", 64) + b"\x00"
    assert Checkpoint(CheckpointKind.Ephemeral).to_borsh() == b"\x00"


def test_other_variants_borsh() -> None:
    seeded = HttpDataLocation(NumberedFiles("u{}", 1, 2, 3), TokenSize.FourBytes, bytes(range(32)))
    assert DataLocation(DataLocationKind.Http, seeded).to_borsh() == (
        b"\x03\x01" + fs("u{}", 64) + struct.pack("<IBI", 1, 2, 3) + b"\x01\x01" + bytes(range(32))
    )
    assert DataLocation(DataLocationKind.Server, "h:1").to_borsh() == b"\x01" + fs("h:1", 64)
    assert DataLocation(DataLocationKind.Preprocessed, "d").to_borsh() == b"\x05" + fs("d", 192)
    adamw = AdamW((0.9, 0.95), 0.1, 1e-8, None)
    assert adamw.to_borsh() == b"\x01" + struct.pack("<ffff", 0.9, 0.95, 0.1, 1e-8) + b"\x00"
    assert DummyOptimizer().to_borsh() == b"\x00"
    wsd = WarmupStableDecayLR(1.0, 0.5, 0.25, 0.125, 1, 2, 3, 4)
    assert wsd.to_borsh() == b"\x03" + struct.pack("<dddd4I", 1.0, 0.5, 0.25, 0.125, 1, 2, 3, 4)


def test_variant_payload_type_is_enforced() -> None:
    with pytest.raises(TypeError, match="checkpoint Hub needs HubRepo"):
        Checkpoint(CheckpointKind.Hub, GcsRepo("b"))
    with pytest.raises(TypeError, match="data location Http needs HttpDataLocation"):
        DataLocation(DataLocationKind.Http, "x")


def test_borsh_refuses_unknown_tags_and_short_input() -> None:
    with pytest.raises(AccountDecodeError, match="args: unknown checkpoint variant 6 at offset 0"):
        borsh(Checkpoint, b"\x06")
    with pytest.raises(AccountDecodeError, match="args: unknown model variant 1 at offset 0"):
        borsh(LLM, b"\x01" + bytes(400))
    with pytest.raises(AccountDecodeError, match=r"args: expected ≥64 bytes, got 10"):
        borsh(CoordinatorConfig, bytes(10))
    with pytest.raises(AccountDecodeError, match="invalid Option tag 2"):
        borsh(HubRepo, fs("x", 64) + b"\x02")


# ---------------------------------------------------------------- zero-copy placement


def test_zero_copy_hub_repo_puts_the_option_first() -> None:
    buf = bytearray(1000)
    MODEL.write_zc(buf)
    Checkpoint.hub("org/m", "rev").write_zc(buf)
    assert buf[436:440] == b"\x02\x00\x00\x00"
    assert buf[440] == 1
    assert buf[441:505] == fs("rev", 64)
    assert buf[505:569] == fs("org/m", 64)
    assert buf[880:884] == b"\x02\x00\x00\x00"
    assert struct.unpack_from("<dddII", buf, 888) == (4e-4, 0.0, 4e-5, 250, 25000)
    assert struct.unpack_from("<B3xfB3xffHHB", buf, 940) == (1, 1.0, 0, 0.0, f32(0.999), 2, 64, 0)


def test_zero_copy_unknown_tag_names_offset() -> None:
    buf = bytearray(1000)
    MODEL.write_zc(buf)
    struct.pack_into("<I", buf, 840, 2)
    with pytest.raises(
        AccountDecodeError, match="coordinator account: unknown token size variant 2 at offset 840"
    ):
        LLM.read_zc(bytes(buf))


# ---------------------------------------------------------------- serde


def test_serde_shape_matches_rust() -> None:
    assert MODEL.to_serde() == {
        "LLM": {
            "max_seq_len": 2048,
            "cold_start_warmup_steps": 0,
            "architecture": "HfLlama",
            "checkpoint": {"Hub": {"repo_id": "emozilla/llama2-1.1b-gqa-init", "revision": None}},
            "data_type": "Pretraining",
            "data_location": {
                "Http": {
                    "location": {
                        "Gcp": {
                            "bucket_name": "nous-pretraining-public-us",
                            "filter_directory": "fineweb-edu-tokenized-llama2",
                        }
                    },
                    "token_size_in_bytes": "TwoBytes",
                    "shuffle": "DontShuffle",
                }
            },
            "lr_schedule": {
                "Cosine": {
                    "base_lr": 4e-4,
                    "warmup_init_lr": 0.0,
                    "final_lr": 4e-5,
                    "warmup_steps": 250,
                    "total_steps": 25000,
                }
            },
            "optimizer": {
                "Distro": {
                    "clip_grad_norm": 1.0,
                    "weight_decay": None,
                    "compression_decay": 0.999,
                    "compression_topk": 2,
                    "compression_chunk": 64,
                    "quantize_1bit": False,
                }
            },
        }
    }
    assert Checkpoint(CheckpointKind.Ephemeral).to_serde() == "Ephemeral"
    assert DataLocation().to_serde() == "Dummy"
    assert DataLocation(
        DataLocationKind.Http, HttpDataLocation(SingleUrl("u"), shuffle=b"\x01" * 32)
    ).to_serde() == {
        "Http": {
            "location": {"SingleUrl": "u"},
            "token_size_in_bytes": "TwoBytes",
            "shuffle": {"Seeded": [1] * 32},
        }
    }
    assert DummyOptimizer().to_serde() == "Dummy"
    assert CONFIG.to_serde()["waiting_for_members_extra_time"] == 3


def test_f32_serde_prints_shortest_f32_digits() -> None:
    assert f32(0.999) != 0.999
    assert f32_serde(f32(0.999)) == 0.999
    assert f32_serde(f32(1e-8)) == 1e-8
    assert f32_serde(0.0) == 0.0


# ---------------------------------------------------------------- sanity checks


@pytest.mark.parametrize(
    "change",
    [
        {"epoch_time": 0},
        {"warmup_time": 60},
        {"max_round_train_time": 0},
        {"max_round_train_time": 60},
        {"round_witness_time": 0},
        {"min_clients": 0},
        {"init_min_clients": 0},
        {"init_min_clients": 257, "min_clients": 1},
        {"global_batch_size_start": 0},
        {"global_batch_size_start": 4096},
        {"total_steps": 0},
        {"witness_nodes": 2},
        {"witness_nodes": 33, "min_clients": 40, "init_min_clients": 40},
        {"cooldown_time": 0},
        {"waiting_for_members_extra_time": 0},
    ],
)
def test_config_check_rejects_each_rule(change: dict[str, int]) -> None:
    assert config_check(CONFIG)
    assert not config_check(dataclasses.replace(CONFIG, **change))


def _with_model(**change: Any) -> LLM:
    return dataclasses.replace(MODEL, **change)


@pytest.mark.parametrize(
    ("model", "ok"),
    [
        (MODEL, True),
        (_with_model(max_seq_len=0), False),
        (_with_model(checkpoint=Checkpoint(CheckpointKind.Ephemeral)), False),
        (_with_model(checkpoint=Checkpoint.hub("")), False),
        (_with_model(checkpoint=Checkpoint(CheckpointKind.Dummy, HubRepo(""))), True),
        (_with_model(checkpoint=Checkpoint(CheckpointKind.Gcs, GcsRepo(""))), False),
        (_with_model(checkpoint=Checkpoint(CheckpointKind.P2PGcs, GcsRepo("b"))), True),
        (_with_model(data_location=DataLocation()), True),
        (_with_model(data_location=DataLocation(DataLocationKind.Local, "")), True),
        (_with_model(data_location=DataLocation(DataLocationKind.Server, "")), False),
        (_with_model(data_location=DataLocation(DataLocationKind.WeightedHttp, "")), False),
        (
            _with_model(data_location=DataLocation(DataLocationKind.Http, HttpDataLocation(SingleUrl("")))),
            False,
        ),
        (
            _with_model(data_location=DataLocation(DataLocationKind.Http, HttpDataLocation(Gcp("", "x")))),
            False,
        ),
        (
            _with_model(
                data_location=DataLocation(
                    DataLocationKind.Http, HttpDataLocation(NumberedFiles("u", 0, 0, 0))
                )
            ),
            False,
        ),
        (_with_model(optimizer=DummyOptimizer()), False),
    ],
)
def test_model_check(model: LLM, ok: bool) -> None:
    assert model_check(model) is ok


def test_cold_start_and_progress_checks() -> None:
    assert cold_start_check(CONFIG, MODEL)
    # (60 - 15) // 15 = 3 rounds fit in an epoch
    assert cold_start_check(CONFIG, _with_model(cold_start_warmup_steps=3))
    assert not cold_start_check(CONFIG, _with_model(cold_start_warmup_steps=4))
    assert not cold_start_check(CoordinatorConfig(), _with_model(cold_start_warmup_steps=1))
    assert not progress_check(CoordinatorProgress(0, 0, 0))
    assert progress_check(CoordinatorProgress(0, 1, 0))


# ---------------------------------------------------------------- properties

ROUND_TRIPS: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (RunMetadata, metadata),
    (CoordinatorConfig, configs),
    (CoordinatorProgress, progress),
    (HubRepo, hub_repos),
    (GcsRepo, gcs_repos),
    (Checkpoint, checkpoints),
    (DataLocation, data_locations),
    (LLM, models),
]


@pytest.mark.parametrize(("cls", "values"), ROUND_TRIPS, ids=lambda v: getattr(v, "__name__", ""))
def test_borsh_round_trips(cls: Any, values: st.SearchStrategy[Any]) -> None:
    @settings(max_examples=100, deadline=None)
    @given(values)
    def check(value: Any) -> None:
        assert borsh(cls, value.to_borsh()) == value

    check()


@settings(max_examples=200, deadline=None)
@given(models)
def test_zero_copy_model_round_trips(model: LLM) -> None:
    buf = bytearray(1048)
    model.write_zc(buf)
    assert LLM.read_zc(bytes(buf)) == model


DECODERS: list[Callable[[Reader], object]] = [
    RunMetadata.from_borsh,
    CoordinatorConfig.from_borsh,
    CoordinatorProgress.from_borsh,
    Checkpoint.from_borsh,
    DataLocation.from_borsh,
    LLM.from_borsh,
]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_borsh_decoders_given_random_bytes_only_raise_account_decode_error(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(Reader(data, "args"))
        except AccountDecodeError as exc:
            assert str(exc).startswith("args: ")
    for prefix in (b"\x00", b"\x00" + bytes(9) + b"\x02"):  # get past the Model tag and the checkpoint tag
        try:
            LLM.from_borsh(Reader(prefix + data, "args"))
        except AccountDecodeError as exc:
            assert str(exc).startswith("args: ")
