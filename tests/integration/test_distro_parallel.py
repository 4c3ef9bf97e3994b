"""DATA_PARALLELISM=2 with a Distro run, as two real gloo processes on 127.0.0.1: both ranks make the same
result bit for bit (gradients are averaged before ``generate``), applying the same results keeps them
bitwise equal, and the loss matches one process for the same global batch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from psyche.chain.accounts.model import ConstantLR  # noqa: E402
from psyche.chain.accounts.optimizer import Distro  # noqa: E402
from psyche.client.config import OptimizerSettings, TrainerConfig  # noqa: E402
from psyche.client.data import DummySource  # noqa: E402
from psyche.client.distributed import ParallelContext, broadcast_indices, spawn_local  # noqa: E402
from psyche.client.distro_payload import encode_payload  # noqa: E402
from psyche.client.model import preset  # noqa: E402
from psyche.client.train import Trainer  # noqa: E402

pytestmark = pytest.mark.slow

SEQ, SEED, STEPS, BATCH = 32, 5, 4, 8
SETTINGS = Distro(1.0, 0.01, 0.999, 8, 64, True)


def _trainer(dp: int, ctx: ParallelContext | None) -> Trainer:
    spec = preset("tiny", SEQ)
    config = TrainerConfig(
        micro_batch_size=2,
        data_parallelism=dp,
        device="cpu",
        lr_schedule=ConstantLR(3e-3, 3e-3, 0),
        optimizer=OptimizerSettings(clip_grad_norm=1.0, distro=SETTINGS),
    )
    return Trainer(config, spec, SEED, DummySource(SEQ, spec.vocab_size, SEED), ctx=ctx)


def _batch(step: int) -> list[int]:
    return list(range(step * BATCH, step * BATCH + BATCH))


def _params_hash(trainer: Trainer) -> str:
    h = hashlib.sha256()
    for p in trainer.params:
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _train(trainer: Trainer, ctx: ParallelContext | None) -> dict[str, Any]:
    losses, payloads, params = [], [], []
    for step in range(STEPS):
        indices = (
            _batch(step) if ctx is None else broadcast_indices(ctx, _batch(step) if ctx.is_leader else None)
        )
        r = trainer.train_step(indices, step=step)
        assert r.payload_results is not None
        payloads.append(hashlib.sha256(encode_payload(step, 0, (0, 0), r.payload_results, True)).hexdigest())
        trainer.apply_results([r.payload_results], step)
        losses.append(r.loss)
        params.append(_params_hash(trainer))
    return {"losses": losses, "payloads": payloads, "params": params}


def _worker(ctx: ParallelContext, out: str) -> None:
    record = _train(_trainer(ctx.dp, ctx), ctx)
    (Path(out) / f"rank{ctx.rank}.json").write_text(json.dumps(record))


def test_two_data_parallel_ranks_stay_bitwise_equal(tmp_path: Path) -> None:
    reference = _train(_trainer(1, None), None)
    spawn_local(_worker, 2, 1, "cpu", str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["payloads"] == ranks[1]["payloads"]
    assert ranks[0]["params"] == ranks[1]["params"]
    assert ranks[0]["losses"] == pytest.approx(reference["losses"], abs=1e-4)
    assert reference["losses"][-1] < reference["losses"][0]
