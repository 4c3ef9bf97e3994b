"""`run-manager doctor` against the real dev Docker engine and a real local chain (RPC + WS) on 127.0.0.1."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from click.testing import CliRunner

from psyche.manager import cli as cli_module
from psyche.manager.engines import cdi_spec_present
from psyche.manager.hardware import find_nvidia_hook
from psyche.manager.runtime import GPU_MISSING, GPU_MISSING_PODMAN
from tests.support.engine import PODMAN_HOST
from tests.support.localnet import DemoLocalnet, demo_localnet
from tests.support.net import dead_url, unused_port

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoLocalnet]:
    """A local chain on free loopback ports, seeded with the demo world, served from a background thread."""
    with demo_localnet(tmp_path_factory.mktemp("demo")) as net:
        yield net


def doctor(home: Path, env_file: Path, variables: dict[str, str], *args: str) -> tuple[int, str]:
    """`doctor` on a copy of ``env_file`` whose lines for ``variables`` are replaced (the file wins over the
    shell, so a test changes the file, as a user would)."""
    base = {"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "100"}
    if "DOCKER_HOST" in os.environ:
        base["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    kept = [line for line in env_file.read_text().splitlines() if line.split("=", 1)[0] not in variables]
    edited = home / "doctor.env"
    edited.write_text("\n".join([*kept, *(f"{k}={v}" for k, v in variables.items())]) + "\n")
    result = CliRunner().invoke(cli_module.cli, ["doctor", "--env-file", str(edited), *args], obj=base)
    return result.exit_code, result.stdout


def test_dead_rpc_fails_while_rpc_2_answers_and_the_engine_is_checked(
    docker_client: docker.DockerClient, localnet: DemoLocalnet, isolation: Path
) -> None:
    dead_http, dead_ws = dead_url("/"), f"ws://127.0.0.1:{unused_port()}"
    environ = {"RPC": dead_http, "WS_RPC": dead_ws, "RPC_2": localnet.rpc_url, "WS_RPC_2": localnet.ws_url}
    code, out = doctor(isolation, localnet.demo_dir / ".env", environ, "--json")
    report = json.loads(out)
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 1 and report["exit_code"] == 1

    assert checks["RPC"]["status"] == "FAIL"
    assert checks["RPC"]["detail"].startswith(f"{dead_http} did not answer: ConnectError")
    assert checks["WS_RPC"]["status"] == "FAIL"
    assert checks["RPC_2"]["status"] == "OK", checks["RPC_2"]
    assert checks["RPC_2"]["detail"].startswith(f"{localnet.rpc_url}: slot ")
    assert checks["WS_RPC_2"]["status"] == "OK", checks["WS_RPC_2"]
    assert checks["WS_RPC_2"]["detail"].startswith(f"{localnet.ws_url}: slotSubscribe answered in ")

    # The chain checks ran through RPC_2, the endpoint that answered.
    assert checks["balance"]["status"] == "OK"
    assert checks["run"]["detail"].startswith("'demo-open': Waiting for members")
    assert checks["image"]["detail"].startswith("nousresearch/psyche-client:test")
    assert checks["authorization"]["detail"] == (
        "authorized through permissionless (grantee 11111111111111111111111111111111)"
    )
    assert checks["wallet file"]["status"] == "OK"

    engine = docker_client.version()
    api = min((engine["ApiVersion"], "1.45"), key=lambda v: tuple(map(int, v.split("."))))
    detail = f"Docker {engine['Version']} (Docker API {api})"  # the dev engine, 20.10: API 1.41
    assert checks["docker"] == {"name": "docker", "status": "OK", "detail": detail, "fix": None}
    gpu = checks["gpu access"]
    if find_nvidia_hook() is not None:
        assert gpu["status"] == "OK" and "--gpus all (device request) via " in gpu["detail"]
    elif "nvidia" in (docker_client.info().get("Runtimes") or {}):
        assert gpu["status"] == "WARN"
    else:  # the dev engine: runc only, no toolkit on the host
        assert gpu["status"] == "FAIL"
        assert gpu["fix"] == GPU_MISSING.split(": ", 1)[1]
    assert checks["disk"]["status"] in {"OK", "WARN", "FAIL"}
    assert " free under " in checks["disk"]["detail"]


def test_plain_report_names_each_failure_and_its_fix(
    docker_client: docker.DockerClient, localnet: DemoLocalnet, isolation: Path
) -> None:
    environ = {"RPC": localnet.rpc_url, "WS_RPC": localnet.ws_url, "RUN_ID": "no-such-run"}
    code, out = doctor(isolation, localnet.demo_dir / ".env", environ)
    lines = out.splitlines()
    assert code == 1
    run_line = next(i for i, line in enumerate(lines) if line.startswith("FAIL  run "))
    assert "RPC error: failed to get account " in lines[run_line]
    assert f"(run 'no-such-run', endpoint {localnet.rpc_url}): no coordinator instance" in lines[run_line]
    assert lines[run_line + 1].strip().startswith(f"fix: check RUN_ID in {isolation / 'doctor.env'}:")
    assert lines[-1].startswith("doctor: ") and "FAIL" in lines[-1]


def test_against_podman_the_engine_is_named_and_gpu_access_means_a_cdi_spec(
    podman_client: docker.DockerClient,
    localnet: DemoLocalnet,
    isolation: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", PODMAN_HOST)
    environ = {"RPC": localnet.rpc_url, "WS_RPC": localnet.ws_url}
    code, out = doctor(isolation, localnet.demo_dir / ".env", environ, "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    version = podman_client.version()
    assert checks["docker"] == {
        "name": "docker",
        "status": "OK",
        "detail": f"Podman {version['Version']} (Docker API {version['ApiVersion']})",
        "fix": None,
    }
    gpu = checks["gpu access"]
    if cdi_spec_present(os.listdir) is None:
        assert gpu["status"] == "FAIL" and gpu["detail"].startswith("no CDI spec in /etc/cdi or /var/run/cdi")
        assert gpu["fix"] == GPU_MISSING_PODMAN.split(": ", 1)[1]
    else:
        assert gpu["status"] == "OK" and "CDI device nvidia.com/gpu=all (Podman) via " in gpu["detail"]
    assert " free under " in checks["disk"]["detail"]  # Podman reports its storage root as DockerRootDir
    del code
