"""The single-file dist/run-manager: built (or reused when fresh), then run with none of our Python around."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from psyche.manager.cli import COMMANDS
from tests.support.net import unused_port
from tests.support.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

BINARY = PROJECT_ROOT / "dist" / "run-manager"
BUILD = PROJECT_ROOT / "scripts" / "build-binary"
BARE_PATH = "/usr/bin:/bin"


def _newest_source() -> float:
    inputs = [BUILD, PROJECT_ROOT / "pyproject.toml", *(PROJECT_ROOT / "src" / "psyche").rglob("*.py")]
    return max(p.stat().st_mtime for p in inputs)


@pytest.fixture(scope="module")
def binary() -> Path:
    """dist/run-manager, rebuilt when any source is newer than it (a build takes about a minute)."""
    if not BINARY.exists() or BINARY.stat().st_mtime < _newest_source():
        done = subprocess.run([str(BUILD)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return BINARY


def bare(
    binary: Path, *args: str, home: Path, path: str = BARE_PATH, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the binary with an empty environment (env -i): no venv, no PYTHONPATH, nothing of ours on PATH."""
    environ = {"PATH": path, "HOME": str(home), "NO_COLOR": "1", "COLUMNS": "100", **env}
    return subprocess.run(
        [str(binary), *args], env=environ, cwd=home, capture_output=True, text=True, timeout=120
    )


def test_version_help_and_subcommand_help_run_without_our_environment(binary: Path, tmp_path: Path) -> None:
    version = bare(binary, "--version", home=tmp_path)
    assert version.returncode == 0, version.stderr
    lines = version.stdout.splitlines()
    assert lines[0] == "run-manager 0.2.0"
    assert re.fullmatch(r"git: [0-9a-f]{7,}(-dirty)?", lines[1]), lines
    assert re.fullmatch(r"built: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[2]), lines

    top = bare(binary, "--help", home=tmp_path)
    assert top.returncode == 0, top.stderr
    listed = set(re.findall(r"^  ([a-z][a-z0-9-]+) ", top.stdout, re.MULTILINE))
    assert set(COMMANDS) <= listed, set(COMMANDS) - listed

    # Every lazily imported subcommand was bundled (the build lists them from cli.COMMANDS).
    for name in COMMANDS:
        sub = bare(binary, name, "--help", home=tmp_path)
        assert sub.returncode == 0, f"{name} --help: {sub.stderr[-2000:]}"
        assert sub.stdout.startswith(f"Usage: run-manager {name} [OPTIONS]")


def test_binary_holds_no_torch_and_carries_the_parallelism_table(binary: Path) -> None:
    viewer = Path(sys.executable).with_name("pyi-archive_viewer")
    if not viewer.exists():
        pytest.skip("pyi-archive_viewer not installed (the build extra)")
    listing = subprocess.run(
        [str(viewer), "-r", "-b", str(binary)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    names = {line.strip() for line in listing.splitlines()}
    assert "psyche/parallelism_table.json" in names
    assert "psyche.manager.mainjob" in names and "psyche.manager.commands.doctor" in names
    assert not any(n == "torch" or n.startswith(("torch.", "psyche.client")) for n in names)


@pytest.fixture
def demo_chain(binary: Path, tmp_path: Path) -> Iterator[Path]:
    """`run-manager localnet --demo` from the binary itself, on free loopback ports; yields the demo .env."""
    demo = tmp_path / "demo"
    rpc_port, ws_port = unused_port(), unused_port()
    log = (tmp_path / "localnet.log").open("w")
    process = subprocess.Popen(
        [
            str(binary),
            "localnet",
            "--rpc-port",
            str(rpc_port),
            "--ws-port",
            str(ws_port),
            "--demo",
            str(demo),
        ],
        env={"PATH": BARE_PATH, "HOME": str(tmp_path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (demo / ".env").exists() or "env file" not in (tmp_path / "localnet.log").read_text():
            assert process.poll() is None, (tmp_path / "localnet.log").read_text()
            assert time.monotonic() < deadline, "localnet --demo did not finish seeding in 60 s"
            time.sleep(0.2)
        yield demo / ".env"
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_doctor_and_can_join_from_the_binary_against_its_own_local_chain(
    binary: Path, demo_chain: Path, tmp_path: Path
) -> None:
    # A stand-in nvidia-smi (a real executable on PATH) so the GPU and PARALLELISM_AUTO checks run.
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    smi = fake_bin / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15"\n')
    smi.chmod(0o755)
    docker_host = f"unix://{tmp_path}/no-docker.sock"

    report = bare(
        binary,
        "doctor",
        "--env-file",
        str(demo_chain),
        home=tmp_path,
        path=f"{fake_bin}:{BARE_PATH}",
        DOCKER_HOST=docker_host,
        PARALLELISM_AUTO="true",
    )
    lines = {
        line[6:].split("  ", 1)[0].strip(): line for line in report.stdout.splitlines() if line[:4].strip()
    }
    assert report.returncode == 1, report.stdout + report.stderr
    for name in ("env", "wallet", "RPC", "WS_RPC", "balance", "run", "authorization", "gpus", "parallelism"):
        assert lines[name].startswith("OK "), lines.get(name, report.stdout)
    assert (
        "PARALLELISM_AUTO: psyche-demo/tiny-llama on 1 x H100 -> dp=1 tp=1 micro_batch_size=64"
        in lines["parallelism"]
    )
    assert lines["docker"].startswith("FAIL")  # nothing listens on the socket we named

    pubkey = re.search(r"wallet\s+(\w{32,44}) from ", lines["wallet"])
    assert pubkey is not None, lines["wallet"]
    joined = bare(
        binary,
        "can-join",
        "--env-file",
        str(demo_chain),
        "-r",
        "demo-open",
        "--address",
        pubkey[1],
        home=tmp_path,
    )
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert joined.stdout.startswith(f"✓ Can join run demo-open as {pubkey[1]}")


def test_binary_size_is_recorded(binary: Path) -> None:
    # docs/benchmarks.md records the size; a build that doubles it (torch slipping in) should be noticed.
    size = binary.stat().st_size
    assert 10 * 2**20 < size < 80 * 2**20, f"dist/run-manager is {size} bytes"
    assert os.access(binary, os.X_OK)
