"""The guide's Docker error entries, printed for real: the CLI main job (a `run-manager` subprocess)
against the real engine and local chain, or a stand-in engine on a unix socket; compared with the guide."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.engine import PushedImage
from tests.support.engine_standin import EngineStandIn, engine_standin
from tests.support.guide import ENTRIES, pattern
from tests.support.mainjob import Job, Manager, job, manager_environ, participant, versions, world
from tests.support.mainjob import write_env as write_dotenv
from tests.support.net import dead_url

__all__ = ["job", "versions", "world"]  # fixtures used by name


def guide_entry(start: str) -> str:
    [entry] = [e for e in ENTRIES if e.startswith(start)]
    return entry


def error_line(manager: Manager) -> str:
    errors = [line for line in manager.err.text.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, manager.err.text
    return errors[0].removeprefix("Error: ")


def main_job_on(engine: str, home: Path) -> Manager:
    """The main job with a valid .env whose chain is dead: it meets the engine before anything else."""
    wallet = participant(home / "keys")
    dead = dead_url()
    env = write_dotenv(
        home / ".env", rpc=dead, ws=dead.replace("http", "ws"), wallet=wallet.path, run_id="any"
    )
    return Manager(["--env-file", str(env), "--no-gpus"], manager_environ(home, {"DOCKER_HOST": engine}))


@pytest.mark.docker
def test_a_container_the_engine_refuses_prints_the_guides_docker_run_failed_line(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    job.world.create_run(job.run_id, versions[0].tag)
    missing = job.directory / "no-such-scratch"  # SCRATCH_DIR must exist: the bind mount is refused
    manager = job.start(env_file=job.env_file(extra={"SCRATCH_DIR": str(missing)}))
    assert manager.wait(60) == 1, manager.err.text
    printed = error_line(manager)
    entry = guide_entry("Docker run failed")
    assert pattern(entry).fullmatch(printed), f"printed: {printed!r}\nguide:   {entry!r}"
    # The engine's own reason, on one line (the 20.10 wording; newer engines say much the same).
    assert printed.startswith("Docker run failed: invalid mount config for type ")
    assert str(missing) in printed
    assert "[run-manager] pulling" in manager.err.text  # it got as far as the engine, then stopped there
    assert job.containers() == []  # nothing left half-made
    job.wallet.assert_absent(manager.out.text, manager.err.text)


def test_an_engine_too_old_for_us_prints_the_guides_api_version_line(tmp_path: Path) -> None:
    old = EngineStandIn(version="17.06.0-ce", api_version="1.30", min_api_version="1.12")
    with engine_standin(old) as (host, standin):
        manager = main_job_on(host, tmp_path)
        try:
            assert manager.wait(60) == 1, manager.err.text
        finally:
            manager.close()
    printed = error_line(manager)
    entry = guide_entry("Docker engine <version> accepts API")
    assert pattern(entry).fullmatch(printed), f"printed: {printed!r}\nguide:   {entry!r}"
    assert printed.startswith(
        "Docker engine 17.06.0-ce accepts API 1.12-1.30; this run-manager speaks API 1.41-"
    )
    assert standin.paths == ["/version"]


def test_a_docker_29_engine_is_reached_in_an_api_version_it_accepts(tmp_path: Path) -> None:
    # Docker 29 refuses API 1.41 (what the run-manager used to pin); the main job now gets past the engine
    # and goes on to the dead chain: it waits for it (docs/supervisor.md) until SIGTERM.
    with engine_standin() as (host, standin):
        manager = main_job_on(host, tmp_path)
        try:
            manager.err.wait_for("chain unreachable, retrying until it answers", 60)
            manager.signal(signal.SIGTERM)
            # Before the supervisor runs, SIGTERM ends start-up as it ends any start-up step.
            assert manager.wait(30) in (0, 143, -signal.SIGTERM), manager.err.text
        finally:
            manager.close()
    assert "Docker 29.0.1 (Docker API 1.45) reachable" in manager.err.text
    # One unversioned /version names the engine and its API; every later call is versioned at 1.45.
    paths = [p.split("?")[0] for p in standin.paths]
    assert paths[0] == "/version", paths
    assert all(p.startswith("/v1.45/") for p in paths[1:]), paths
