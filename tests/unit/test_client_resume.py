"""Which local checkpoint a (re)started client resumes: newest valid and current for the run, else the run's
model; a Hub repo that is not on disk is an error only when no current checkpoint can serve."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

torch = pytest.importorskip("torch")

from psyche.chain.accounts.coordinator import CoordinatorAccount  # noqa: E402
from psyche.chain.accounts.model import Checkpoint, CheckpointKind, HubRepo  # noqa: E402
from psyche.client import checkpoint as ckpt  # noqa: E402
from psyche.client.checkpoint import RunPoint, current_checkpoint  # noqa: E402
from psyche.client.config import TrainerEnv  # noqa: E402
from psyche.client.rank_messages import Build  # noqa: E402
from psyche.client.train import run_seed, trainer_for_run  # noqa: E402
from psyche.client.trainer_port import TorchTrainerPort, build_trainer, offline_model  # noqa: E402
from psyche.errors import ConfigError  # noqa: E402
from psyche.parallelism_table import Parallelism  # noqa: E402
from tests.support.client_run import MODEL  # noqa: E402
from tests.support.trainer_fakes import FakeTrainer  # noqa: E402

RUN = "demo-rewards"
# What the demo run's model is after epoch 0: its Dummy checkpoint turned P2P, naming a Hub repo on no disk.
P2P_DEMO = dataclasses.replace(
    MODEL, checkpoint=Checkpoint(CheckpointKind.P2P, HubRepo("psyche-demo/tiny-llama"))
)


def _write(root: Path, epoch: int, step: int, run_id: str = RUN) -> Path:
    return ckpt.write_checkpoint(
        root, epoch, step, {"model": {"w": torch.full((2,), float(step))}}, {"run_id": run_id}, keep=0
    )


def _at(epoch: int, start_step: int) -> RunPoint:
    return RunPoint(RUN, epoch, start_step)


# ------------------------------------------------------------------------------------ the selection rules


def test_the_newest_current_checkpoint_is_chosen(tmp_path: Path) -> None:
    _write(tmp_path, 0, 5)
    newest = _write(tmp_path, 1, 9)
    chosen = current_checkpoint(tmp_path, _at(2, 9))
    assert chosen.info is not None and chosen.info.path == newest and chosen.skipped == ()
    # The run set back to epoch 1 (step 5): the epoch-1 checkpoint is another history, epoch 0's is current.
    back = current_checkpoint(tmp_path, _at(1, 5))
    assert back.info is not None and (back.info.epoch, back.info.step) == (0, 5)
    ahead = "ahead of the run (epoch 1 step 9) but the run's epoch 1 started at step 5"
    assert back.skipped == (f"epoch-000001-step-00000009: {ahead}",)


def test_corrupt_and_partial_checkpoints_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = _write(tmp_path, 1, 9)
    flipped = _write(tmp_path, 2, 9)  # the same step saved again (an epoch with no step), then damaged
    blob = bytearray((flipped / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (flipped / "model.safetensors").write_bytes(bytes(blob))
    (tmp_path / "epoch-000003-step-00000009").mkdir()  # no manifest: an interrupted hand copy
    with caplog.at_level(logging.WARNING, logger="psyche.client"):
        chosen = current_checkpoint(tmp_path, _at(3, 9))
    assert chosen.info is not None and chosen.info.path == good
    assert "no meta.json (an interrupted write)" in caplog.text
    assert "model.safetensors does not match its sha256" in caplog.text


def test_a_stale_checkpoint_is_not_used(tmp_path: Path) -> None:
    _write(tmp_path, 0, 5)
    chosen = current_checkpoint(tmp_path, _at(2, 9))
    assert chosen.info is None
    assert chosen.describe(tmp_path) == (
        f"no current checkpoint under {tmp_path} "
        "(epoch-000000-step-00000005: stale, step 5 but the run's epoch 2 started at step 9)"
    )


def test_a_checkpoint_written_in_the_open_epoch_is_not_current(tmp_path: Path) -> None:
    _write(tmp_path, 1, 9)
    assert current_checkpoint(tmp_path, _at(1, 9)).info is None


def test_another_runs_checkpoint_is_ignored(tmp_path: Path) -> None:
    _write(tmp_path, 0, 5, run_id="someone-else")
    _write(tmp_path, 0, 6, run_id="")  # a manifest without a run id (written before runs were recorded)
    chosen = current_checkpoint(tmp_path, _at(1, 5))
    assert chosen.info is None
    assert (
        chosen.skipped[-1] == "epoch-000000-step-00000005: written for run 'someone-else', not 'demo-rewards'"
    )


def test_nothing_on_disk_says_so(tmp_path: Path) -> None:
    chosen = current_checkpoint(tmp_path / "missing", _at(1, 5))
    assert chosen.info is None and chosen.describe(tmp_path) == f"no checkpoint of this run under {tmp_path}"


def test_each_run_has_its_own_folder() -> None:
    root = Path("/scratch")
    assert ckpt.run_root(root, "demo-rewards") == root / "demo-rewards"
    odd = ckpt.run_root(root, "../x y")
    assert odd.parent == root and odd.name.startswith("run-") and len(odd.name) == 20
    assert ckpt.run_root(root, "..").name.startswith("run-")


# ------------------------------------------------------------------------------------ rank 0's decision


def _account(model: object, epoch: int, start_step: int) -> CoordinatorAccount:
    return cast(
        CoordinatorAccount,
        SimpleNamespace(
            model=model,
            progress=SimpleNamespace(epoch=epoch, step=start_step + 2),  # a restart mid-epoch
            epoch_state=SimpleNamespace(start_step=start_step),
        ),
    )


def _port(checkpoint_dir: Path, builds: list[Build]) -> TorchTrainerPort:
    def build(b: Build, env: TrainerEnv, run_id: str, par: Parallelism, ctx: object) -> FakeTrainer:
        builds.append(b)
        return FakeTrainer()

    env = TrainerEnv(device="cpu", checkpoint_dir=checkpoint_dir, model_dirs=(checkpoint_dir / "hub",))
    return TorchTrainerPort(env, RUN, resolve=lambda e, m: Parallelism(), build=build)


def test_a_hub_repo_not_on_disk_is_served_by_the_current_checkpoint(tmp_path: Path) -> None:
    path = _write(tmp_path / RUN, 0, 5)
    builds: list[Build] = []
    _port(tmp_path, builds).prepare(_account(P2P_DEMO, 1, 5), 1)
    assert builds == [Build(offline_model(P2P_DEMO), path)]


def test_a_hub_repo_not_on_disk_without_a_current_checkpoint_is_one_line(tmp_path: Path) -> None:
    _write(tmp_path / RUN, 0, 5)
    builds: list[Build] = []
    with pytest.raises(ConfigError) as caught:
        _port(tmp_path, builds).prepare(_account(P2P_DEMO, 2, 9), 2)
    message = caught.value.message
    assert "\n" not in message and builds == []
    assert message.startswith("model.checkpoint: Hub repo 'psyche-demo/tiny-llama' is not available offline")
    assert message.endswith(
        f"; no current checkpoint under {tmp_path / RUN} "
        "(epoch-000000-step-00000005: stale, step 5 but the run's epoch 2 started at step 9)"
    )


def test_a_dummy_run_without_a_current_checkpoint_starts_from_the_seed(tmp_path: Path) -> None:
    _write(tmp_path / RUN, 0, 5, run_id="someone-else")
    builds: list[Build] = []
    _port(tmp_path, builds).prepare(_account(MODEL, 1, 5), 1)
    assert builds == [Build(MODEL, None)]


# ------------------------------------------------------------------------------------ the real trainer


def test_the_trainer_takes_shape_weights_and_step_from_the_checkpoint(tmp_path: Path) -> None:
    env = TrainerEnv(
        device="cpu", checkpoint_dir=tmp_path, model_preset="tiny", model_dirs=(tmp_path / "hub",)
    )
    first = trainer_for_run(MODEL, env, run_seed(RUN), Parallelism(micro_batch_size=2), run_id=RUN)
    for i in range(3):
        first.train_step(range(i * 2, i * 2 + 2))
    saved = first.save_checkpoint(ckpt.run_root(tmp_path, RUN), 0, 4)
    assert saved is not None and ckpt.read_info(saved).meta["run_id"] == RUN

    resumed = build_trainer(Build(P2P_DEMO, saved), env, RUN, Parallelism(micro_batch_size=2), None)
    assert resumed.step == 3 and resumed.spec == first.spec
    for (name, a), b in zip(first.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.train_step(range(6, 8)).loss == pytest.approx(first.train_step(range(6, 8)).loss, abs=1e-6)
