"""The main job's restart and version policy end to end: live swap, exit 10, crash loops."""

from __future__ import annotations

import contextlib
import signal

import docker
import pytest

from tests.support.engine import PushedImage, delete_from_registry
from tests.support.mainjob import (
    LABEL_CLIENT_VERSION,
    TICKING,
    Job,
    both_engines,
    job,
    push,
    versions,
    world,
)

__all__ = ["job", "versions", "world"]  # fixtures used by name

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _order(text: str, *needles: str) -> None:
    """Each needle appears in ``text``, in this order."""
    at = 0
    for needle in needles:
        found = text.find(needle, at)
        assert found >= 0, f"{needle!r} not found after offset {at} in:\n{text}"
        at = found + len(needle)


@both_engines
def test_version_changed_on_chain_while_running_prepulls_then_swaps(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    a, b = versions
    assert job.docker is not None
    with contextlib.suppress(docker.errors.NotFound):  # Podman: "image not known", a plain NotFound
        job.docker.images.remove(b.ref)  # so the swap must pull B from the registry
    job.world.create_run(job.run_id, a.tag)
    manager = job.start()
    manager.out.wait_for(f"client {a.tag} up")
    job.world.set_version(job.run_id, b.tag)
    manager.out.wait_for(f"client {b.tag} up", timeout=30)
    _order(
        manager.err.text,
        f"client_version changed '{a.tag}' -> '{b.tag}' (on chain while the client runs)",
        f"pulling {b.ref} in the background",
        f"pulled {b.ref}",
        f"(client_version changed to '{b.tag}'; up to",
        "exited with code 0",
        f"started psyche-client-{job.run_id}",
    )
    _order(manager.out.text, f"client {a.tag} got TERM", f"client {b.tag} up")  # pre-pull, then swap
    [running] = job.containers()
    assert running.labels[LABEL_CLIENT_VERSION] == b.tag and running.status == "running"
    assert job.docker.images.get(b.ref).tags  # pulled back
    # A second change, back to A: the version watch must see it too, although update_client_version
    # leaves the coordinator's nonce alone (RPC polling alone would take up to 15 s).
    mark = len(manager.out.lines)
    job.world.set_version(job.run_id, a.tag)
    manager.out.wait_for(f"client {a.tag} up", timeout=8, start=mark)
    manager.signal(signal.SIGTERM)
    assert manager.wait(30) == 0
    assert job.containers() == []


def test_exit_10_after_a_version_change_pulls_and_runs_the_new_image(
    job: Job, versions: tuple[PushedImage, PushedImage], docker_client: docker.DockerClient, registry: str
) -> None:
    """The client notices the mismatch first: B is on chain, but the live pre-pull failed (not pushed yet)."""
    a, b = versions
    job.world.create_run(job.run_id, a.tag)
    scratch = job.directory / "scratch"
    scratch.mkdir()
    # Version A waits for /scratch/go, then reports a version mismatch; B ticks.
    script = (
        f'if [ "$CLIENT_VERSION" = {a.tag} ]; then echo "client A waits"; '
        "while [ ! -e /scratch/go ]; do sleep 0.05; done; echo 'client A: version mismatch'; exit 10; fi; "
        + TICKING
    )
    delete_from_registry(registry, b)
    try:
        manager = job.start(script, env_file=job.env_file(extra={"SCRATCH_DIR": str(scratch)}))
        manager.out.wait_for("client A waits")
        job.world.set_version(job.run_id, b.tag)
        manager.err.wait_for(f"keeping client_version '{a.tag}' running")  # the live pre-pull failed
    finally:
        push(docker_client, b)
    docker_client.images.remove(b.ref)  # so B must come from the registry
    (scratch / "go").touch()
    manager.out.wait_for(f"client {b.tag} up")
    _order(
        manager.err.text,
        "exited with code 10",
        f"client_version changed '{a.tag}' -> '{b.tag}' (after the client reported a mismatch)",
        f"pulling {b.ref}",
        f"pulled {b.ref}",
        f"CLIENT_VERSION={b.tag}",
    )
    assert "restarting the client" not in manager.err.text  # the fix was on chain: no backoff
    [running] = job.containers()
    assert running.labels[LABEL_CLIENT_VERSION] == b.tag
    manager.signal(signal.SIGINT)
    assert manager.wait(30) == 0
    assert job.containers() == []


@both_engines
def test_exit_10_on_an_unchanged_version_is_capped_with_exit_code_10(
    job: Job, versions: tuple[PushedImage, PushedImage]
) -> None:
    job.world.create_run(job.run_id, versions[0].tag)
    manager = job.start("echo 'client: version mismatch'; exit 10")  # RUN_MANAGER_MAX_RESTARTS=2
    assert manager.wait(60) == 10, manager.err.text
    err = manager.err.text
    assert err.count("started psyche-client-") == 3  # the first start and two restarts
    _order(
        err,
        f"restarting the client in 0.2s (attempt 1): exit code 10 (version mismatch) but client_version is "
        f"still '{versions[0].tag}'",
        "(attempt 2)",
        f"giving up: exit code 10 on an unchanged client_version '{versions[0].tag}'",
        "last 1 client log lines:\n  client: version mismatch",
        "Error: the client exited 10 (version mismatch) 3 times while the run's client_version stayed",
    )
    assert manager.out.text.count("client: version mismatch") == 3
    assert job.containers() == []


@both_engines
def test_crash_loop_backs_off_then_gives_up(job: Job, versions: tuple[PushedImage, PushedImage]) -> None:
    job.world.create_run(job.run_id, versions[0].tag)
    manager = job.start("echo boom $CLIENT_VERSION; exit 3")
    assert manager.wait(60) == 1, manager.err.text
    err = manager.err.text
    starts = [t for t, line in manager.err.lines if "started psyche-client-" in line]
    assert len(starts) == 3
    # Backoff 0.2 s then 0.4 s (RUN_MANAGER_RESTART_BACKOFF=0.2, doubling).
    assert starts[1] - starts[0] >= 0.2 and starts[2] - starts[1] >= 0.4
    _order(
        err,
        "(attempt 1): exit code 3",
        "(attempt 2): exit code 3",
        "giving up: exit code 3, 3 quick failures in a row",
        f"boom {versions[0].tag}",
        "Error: the client kept failing: exit code 3, 3 times in a row",
    )
    assert err.count("Error:") == 1  # the give-up line is a warning; the one Error: line is the error's
    assert job.containers() == []
