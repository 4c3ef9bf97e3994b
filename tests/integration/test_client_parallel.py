"""DATA_PARALLELISM=2 and TENSOR_PARALLELISM=2 as two real gloo processes on 127.0.0.1: the loss trajectory
matches one process for the same global batch (within 1e-4 per step), and a tp=2 checkpoint resumes in one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from psyche.chain.accounts.model import CosineLR  # noqa: E402
from psyche.client.config import OptimizerSettings, TrainerConfig  # noqa: E402
from psyche.client.data import DummySource  # noqa: E402
from psyche.client.distributed import ParallelContext, broadcast_indices, full, spawn_local  # noqa: E402
from psyche.client.model import preset  # noqa: E402
from psyche.client.train import Trainer  # noqa: E402

pytestmark = pytest.mark.slow

SEQ, SEED, STEPS, SAVE_AFTER, BATCH = 32, 5, 5, 3, 8
TOLERANCE = 1e-4  # fp32 on the CPU: only the summation order differs between layouts


def _trainer(dp: int, tp: int, ctx: ParallelContext | None) -> Trainer:
    spec = preset("tiny", SEQ)
    config = TrainerConfig(
        micro_batch_size=2,
        data_parallelism=dp,
        tensor_parallelism=tp,
        device="cpu",
        lr_schedule=CosineLR(3e-3, 1e-4, 3e-4, 2, STEPS),
        optimizer=OptimizerSettings(weight_decay=0.1, clip_grad_norm=0.5),  # clipping is on the path
    )
    return Trainer(config, spec, SEED, DummySource(SEQ, spec.vocab_size, SEED), ctx=ctx)


def _batch(step: int) -> list[int]:
    return list(range(step * BATCH, step * BATCH + BATCH))


def _checksum(trainer: Trainer) -> float:
    return float(sum(full(p.detach()).double().abs().sum() for p in trainer.model.parameters()))


def _worker(ctx: ParallelContext, out: str) -> None:
    trainer = _trainer(ctx.dp, ctx.tp, ctx)
    losses = []
    for step in range(STEPS):
        # Rank 0 alone knows the round's samples (it reads the chain); the others receive them.
        indices = broadcast_indices(ctx, _batch(step) if ctx.is_leader else None)
        losses.append(trainer.train_step(indices).loss)
        if step + 1 == SAVE_AFTER:
            trainer.save_checkpoint(Path(out) / "ckpt", epoch=0, step=SAVE_AFTER)
    record: dict[str, Any] = {"losses": losses, "checksum": _checksum(trainer)}
    (Path(out) / f"rank{ctx.rank}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    trainer = _trainer(1, 1, None)
    losses = [trainer.train_step(_batch(step)).loss for step in range(STEPS)]
    return {"losses": losses, "checksum": _checksum(trainer)}


def _run(tmp_path: Path, dp: int, tp: int) -> list[dict[str, Any]]:
    spawn_local(_worker, dp, tp, "cpu", str(tmp_path))
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(dp * tp)]


@pytest.mark.parametrize(("dp", "tp"), [(2, 1), (1, 2)], ids=["dp2", "tp2"])
def test_two_processes_match_one(tmp_path: Path, reference: dict[str, Any], dp: int, tp: int) -> None:
    ranks = _run(tmp_path, dp, tp)
    assert reference["losses"][-1] < reference["losses"][0]
    for record in ranks:
        assert record["losses"] == pytest.approx(reference["losses"], abs=TOLERANCE)
        assert record["checksum"] == pytest.approx(reference["checksum"], rel=1e-5)

    # The checkpoint written mid-run holds full tensors: one process resumes it and follows the same path.
    resumed = _trainer(1, 1, None)
    assert resumed.load_latest_checkpoint(tmp_path / "ckpt") == (0, SAVE_AFTER)
    tail = [resumed.train_step(_batch(step)).loss for step in range(SAVE_AFTER, STEPS)]
    assert tail == pytest.approx(reference["losses"][SAVE_AFTER:], abs=TOLERANCE)
