"""A client killed after epoch 0 of the demo run comes back through the run-manager's restart and resumes
its own /scratch checkpoint (the run's P2P checkpoint names a Hub repo that is on no disk)."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from psyche.localnet import demo_run
from tests.support.client_image import ClientImage
from tests.support.engine import SESSION_ID
from tests.support.mainjob import (
    Chain,
    Manager,
    chain,
    cpu_client,
    manager_args,
    manager_environ,
    remove_run_containers,
    run_containers,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The demo's own run config (scripts/demo writes it for demo-rewards from psyche.localnet.demo_run, with its
# default optimizer), sped up: the same model (Dummy weights naming the Hub repo psyche-demo/tiny-llama, which
# no disk holds), shorter cooldown, witness window and epoch. The chain clock stays real: the client in its
# container ticks on its own clock.
FASTER = {"cooldown_time": "2", "max_round_train_time": "8", "round_witness_time": "1", "epoch_time": "10"}
STEP = re.compile(r"INFO step (\d+) loss")


def demo_run_toml() -> str:
    text = demo_run.demo_run_toml(clients=1)
    assert 'repo_id = "psyche-demo/tiny-llama"' in text
    for key, value in FASTER.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
        assert n == 1, key
    return text


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Chain]:
    with chain(tmp_path / "chain") as started:
        yield started


def test_a_client_killed_after_epoch_0_resumes_its_scratch_checkpoint(
    world: Chain, client_image: ClientImage, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    run_id = f"resume-{SESSION_ID}"
    version = client_image.content_ref.rpartition(":")[2]
    cli = world.cli
    cli.ok("create-run", "-r", run_id, "-c", version, "-w", world.owner)
    (tmp_path / "demo-run.toml").write_text(demo_run_toml())
    cli.ok("update-config", "-r", run_id, "--config-path", tmp_path / "demo-run.toml", "-w", world.owner)
    cli.ok("set-paused", "-r", run_id, "--resume", "-w", world.owner)

    client = cpu_client(world, tmp_path, run_id)
    wallet, scratch = client.wallet, client.scratch
    args = manager_args(client.env_file, repository=client_image.repository, script=None)
    manager = Manager(args, manager_environ(world.home))
    try:
        # Epoch 0 trains and ends with a checkpoint in /scratch; then the client container is killed.
        saved = manager.out.wait_for(f"checkpoint saved: /scratch/{run_id}/epoch-000000-step-", 240)
        saved_line = manager.out.lines[saved][1]
        before = [int(s) for s in STEP.findall(manager.out.text)]
        assert before, manager.out.text[-3000:]
        (first,) = run_containers(docker_client, run_id)
        first.kill()  # SIGKILL through the engine: exit 137, a crash to the run-manager

        manager.err.wait_for("restarting the client", 60)
        resumed = manager.out.wait_for("resumed epoch 0 step ", 180, start=saved + 1)
        step_dir = saved_line.rsplit("checkpoint saved: ", 1)[1].strip()
        assert manager.out.lines[resumed][1].endswith(f"from {step_dir}"), manager.out.text[-3000:]
        # Training goes on from the checkpoint, not from step 1 (a DisTrO run logs the coordinator's step,
        # which went on through the epoch's apply-only rounds).
        after = manager.out.wait_for("INFO step ", 180, start=resumed + 1)
        (step,) = STEP.findall(manager.out.lines[after][1])
        assert int(step) > before[-1], manager.out.lines[after][1]
        assert "not available offline" not in manager.out.text + manager.err.text
        assert len(run_containers(docker_client, run_id)) == 1
        assert (scratch / run_id).is_dir()

        manager.signal(signal.SIGINT)
        assert manager.wait(60) == 0, manager.err.text[-3000:]
        assert run_containers(docker_client, run_id) == []
        wallet.assert_absent(manager.out.text, manager.err.text)
    finally:
        manager.close()
        remove_run_containers(docker_client, run_id)
