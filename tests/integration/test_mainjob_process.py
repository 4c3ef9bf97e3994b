"""The process runtime end to end: `run-manager --runtime process` supervises the installed client as a child.

run-manager runs as a real subprocess against `run-manager localnet`; the client is a real child process: a
busybox-free `/bin/sh -c script` through --entrypoint (as the container tests do), or the installed
`python -m psyche.client` itself. No container engine is involved.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from psyche import __version__
from tests.support.mainjob import Chain, Job, Manager, new_run_id, participant, world
from tests.support.processes import running
from tests.support.wait import wait_until

__all__ = ["world"]  # fixtures used by name

pytestmark = pytest.mark.slow
PROCESS = ("--runtime", "process")


@pytest.fixture
def job(world: Chain, tmp_path: Path) -> Iterator[Job]:
    started = Job(world, None, "unused/repository", new_run_id(), participant(tmp_path / "keys"), tmp_path)
    try:
        yield started
    finally:
        started.close()


def child_pid(manager: Manager, start: int = 0) -> int:
    line = manager.err.lines[manager.err.wait_for("started psyche-client-", start=start)][1]
    match = re.search(r"\(pid (\d+)\)", line)
    assert match, line
    return int(match[1])


def wait_gone(pid: int) -> None:
    """Reaped by the run-manager, or (its parent killed) by init."""
    wait_until(lambda: not running(pid), timeout=10.0, what=f"client process {pid} gone", interval=0.05)


def test_the_client_runs_as_a_child_with_the_containers_environment_and_its_logs_stream(job: Job) -> None:
    job.world.create_run(job.run_id, __version__)
    scratch = job.directory / "scratch"
    scratch.mkdir()
    script = (
        'echo "hello $CLIENT_VERSION on $RUN_ID once=$PSYCHE_RUN_ONCE ckpt=$CHECKPOINT_DIR cwd=$(pwd)"; '
        'echo "key at $WALLET_PRIVATE_KEY_PATH mode $(stat -c %a "$WALLET_PRIVATE_KEY_PATH") '
        'raw=${RAW_WALLET_PRIVATE_KEY:+set} gpus=[${CUDA_VISIBLE_DEVICES-unset}]"; '
        "echo to stderr >&2; exit 0"
    )
    env_file = job.env_file(extra={"SCRATCH_DIR": str(scratch)})
    manager = job.start(script, env_file=env_file, extra_args=PROCESS)
    assert manager.wait(60) == 0, manager.err.text
    out, err = manager.out.text, manager.err.text
    assert f"hello {__version__} on {job.run_id} once=1 ckpt={scratch} cwd={scratch}" in out
    key_line = next(line for line in out.splitlines() if line.startswith("key at "))
    assert re.fullmatch(r"key at /dev/shm/psyche-run-manager-[^/]+/0 mode 400 raw= gpus=\[\]", key_line)
    assert not Path(key_line.split()[2]).exists()  # removed with the process
    assert "to stderr" in out  # both client streams reach stdout, as a container's do
    assert f" -m psyche.client from psyche-run-manager[client] {__version__}" in err
    assert f"run's client_version '{__version__}' -> installed client psyche-run-manager:{__version__}" in err
    assert "client process " in err and "exited with code 0" in err
    assert "[run-manager] client finished with exit code 0" in err
    job.wallet.assert_absent(out, err)


def test_sigterm_stops_the_client_and_leaves_no_process(job: Job) -> None:
    job.world.create_run(job.run_id, __version__)
    manager = job.start(extra_args=PROCESS)
    manager.out.wait_for("tick 3")
    pid = child_pid(manager)
    assert running(pid)
    began = time.monotonic()
    manager.signal(signal.SIGTERM)
    assert manager.wait(30) == 0, manager.err.text
    assert time.monotonic() - began < 10  # the client's TERM trap, not the grace period
    assert f"client {__version__} got TERM" in manager.out.text
    assert "[run-manager] stopped: stop requested" in manager.err.text
    assert not running(pid)


def test_a_crashing_client_is_restarted_with_backoff_then_given_up(job: Job) -> None:
    job.world.create_run(job.run_id, __version__)
    manager = job.start("echo boom $CLIENT_VERSION; exit 3", extra_args=PROCESS)
    assert manager.wait(60) == 1, manager.err.text
    err = manager.err.text
    assert err.count("started psyche-client-") == 3  # RUN_MANAGER_MAX_RESTARTS=2
    assert "(attempt 1): exit code 3" in err and "(attempt 2): exit code 3" in err
    assert "Error: the client kept failing: exit code 3, 3 times in a row" in err
    assert manager.out.text.count(f"boom {__version__}") == 3


def test_a_killed_run_manager_takes_its_client_with_it(job: Job) -> None:
    job.world.create_run(job.run_id, __version__)
    manager = job.start(extra_args=PROCESS)
    manager.out.wait_for("tick 2")
    pid = child_pid(manager)
    manager.signal(signal.SIGKILL)
    assert manager.wait(10) == -signal.SIGKILL
    wait_gone(pid)  # PR_SET_PDEATHSIG: no orphan for a later start to find


def test_a_client_version_other_than_the_installed_one_is_refused_and_nothing_runs(job: Job) -> None:
    job.world.create_run(job.run_id, "9.9.9")
    manager = job.start("echo SHOULD NOT RUN", extra_args=PROCESS)
    assert manager.wait(30) == 1
    err = manager.err.text
    assert (
        "Error: the run wants client_version '9.9.9' but psyche-run-manager[client] "
        f"{__version__} is installed: pip install 'psyche-run-manager[client]==9.9.9'"
    ) in err
    assert "started psyche-client-" not in err and "SHOULD NOT RUN" not in manager.out.text
    assert "Traceback" not in err


def test_a_live_change_to_a_version_not_installed_stops_the_client_and_says_what_to_install(job: Job) -> None:
    job.world.create_run(job.run_id, __version__)
    manager = job.start(extra_args=PROCESS)
    manager.out.wait_for("tick 2")
    pid = child_pid(manager)
    job.world.set_version(job.run_id, "9.9.9")
    assert manager.wait(30) == 1
    assert "pip install 'psyche-run-manager[client]==9.9.9'" in manager.err.text
    wait_gone(pid)


def test_the_installed_client_itself_starts_as_python_m_psyche_client(job: Job) -> None:
    job.world.create_run(job.run_id, __version__)
    manager = job.start(None, extra_args=PROCESS)  # no --entrypoint: the image's own entrypoint
    pid = child_pid(manager)
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert cmdline.read().split(b"\0")[1:3] == [b"-m", b"psyche.client"]
    manager.out.wait_for(f"Psyche reference client, run {job.run_id}", timeout=60)
    manager.signal(signal.SIGTERM)
    assert manager.wait(60) == 0, manager.err.text
    wait_gone(pid)
    job.wallet.assert_absent(manager.out.text, manager.err.text)


def test_doctor_checks_the_installed_client_and_its_torch_for_the_process_runtime(job: Job) -> None:
    job.world.create_run(job.run_id, __version__)
    result = job.world.cli(*PROCESS, "doctor", "--env-file", job.env_file(), "--json", "--no-gpus")
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert "docker" not in checks
    assert checks["client"]["detail"] == f"psyche-run-manager[client] {__version__} (python -m psyche.client)"
    assert checks["torch"]["status"] == "OK" and checks["torch"]["detail"].startswith("torch 2.")
    assert checks["client version"] == {
        "name": "client version",
        "status": "OK",
        "detail": f"'{__version__}' is the installed {__version__}",
        "fix": None,
    }
