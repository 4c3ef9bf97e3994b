"""Checkpoints: resume continues training exactly; partial and corrupt directories are never loaded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from psyche.client import checkpoint as ckpt  # noqa: E402
from psyche.client.config import TrainerConfig  # noqa: E402
from psyche.client.data import DummySource  # noqa: E402
from psyche.client.model import preset  # noqa: E402
from psyche.client.train import Trainer  # noqa: E402

SEQ = 16


def _trainer(seed: int = 3) -> Trainer:
    spec = preset("tiny", SEQ)
    return Trainer(TrainerConfig(micro_batch_size=4, device="cpu"), spec, seed, DummySource(SEQ, 512, 1))


def _batch(i: int) -> list[int]:
    return list(range(i * 4, i * 4 + 4))


def test_resume_continues_exactly_where_training_stopped(tmp_path: Path) -> None:
    straight = _trainer()
    losses = [straight.train_step(_batch(i)).loss for i in range(4)]

    first = _trainer()
    for i in range(2):
        first.train_step(_batch(i))
    path = first.save_checkpoint(tmp_path, epoch=1, step=2)
    assert path is not None and path.name == "epoch-000001-step-00000002"
    assert {p.name for p in path.iterdir()} == {
        "model.safetensors",
        "optimizer.safetensors",
        "config.json",
        "meta.json",
    }

    resumed = _trainer(seed=99)  # a different init: everything must come from the checkpoint
    assert resumed.load_latest_checkpoint(tmp_path) == (1, 2)
    assert resumed.step == 2
    assert [resumed.train_step(_batch(i)).loss for i in (2, 3)] == pytest.approx(losses[2:], abs=1e-6)


def test_no_checkpoint_means_none(tmp_path: Path) -> None:
    assert _trainer().load_latest_checkpoint(tmp_path / "empty") is None


def test_a_corrupt_newest_checkpoint_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = _trainer()
    t.train_step(_batch(0))
    t.save_checkpoint(tmp_path, 1, 1)
    t.train_step(_batch(1))
    newest = t.save_checkpoint(tmp_path, 2, 2)
    assert newest is not None
    blob = bytearray((newest / "model.safetensors").read_bytes())
    blob[-5] ^= 0xFF  # one flipped bit in a weight
    (newest / "model.safetensors").write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING, logger="psyche.client"):
        assert _trainer().load_latest_checkpoint(tmp_path) == (1, 1)
    assert "does not match its sha256" in caplog.text


def test_partial_checkpoints_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = _trainer()
    t.save_checkpoint(tmp_path, 1, 1)
    # A crash mid-write leaves a .tmp- directory; a hand-copied one may lack its manifest.
    (tmp_path / ".tmp-epoch-000002-step-00000002-123").mkdir()
    no_meta = tmp_path / "epoch-000003-step-00000003"
    no_meta.mkdir()
    (no_meta / "model.safetensors").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="psyche.client"):
        assert _trainer().load_latest_checkpoint(tmp_path) == (1, 1)
    assert "no meta.json (an interrupted write)" in caplog.text


def test_a_checkpoint_for_another_model_shape_is_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _trainer().save_checkpoint(tmp_path, 1, 1)
    meta_path = next(tmp_path.iterdir()) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["spec"]["dim"] = 128
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="psyche.client"):
        assert _trainer().load_latest_checkpoint(tmp_path) is None
    assert "saved for another model shape" in caplog.text


def test_only_the_newest_two_are_kept(tmp_path: Path) -> None:
    for step in range(1, 5):
        ckpt.write_checkpoint(tmp_path, 1, step, {"model": {"w": torch.ones(2)}}, {})
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "epoch-000001-step-00000003",
        "epoch-000001-step-00000004",
    ]
    info = ckpt.latest_checkpoint(tmp_path)
    assert info is not None and info.step == 4 and torch.equal(info.tensors("model")["w"], torch.ones(2))
