"""Engine discovery, Docker-or-Podman identification, and the container request each engine gets (pure)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from psyche.manager.engines import (
    CDI_GPU_DEVICE,
    BindMount,
    EngineId,
    candidate_hosts,
    cdi_spec_present,
    choose_host,
    docker_device_requests,
    identify,
    podman_create_body,
)
from psyche.manager.runtime import DockerRuntime, socket_answers
from tests.support.engine_standin import EngineStandIn, engine_standin

# Podman 4.3.1's own GET /version (Debian bookworm), trimmed to what identify reads.
PODMAN_COMPONENTS: list[dict[str, object]] = [
    {
        "Name": "Podman Engine",
        "Version": "4.3.1",
        "Details": {"APIVersion": "4.3.1", "MinAPIVersion": "4.0.0"},
    },
    {"Name": "Conmon", "Version": "conmon version 2.1.6, commit: unknown"},
]
PODMAN_VERSION = {
    "Components": PODMAN_COMPONENTS,
    "Version": "4.3.1",
    "ApiVersion": "1.41",
    "MinAPIVersion": "1.24",
}
DOCKER_VERSION = {
    "Components": [{"Name": "Engine", "Version": "20.10.24+dfsg1"}],
    "Version": "20.10.24+dfsg1",
    "ApiVersion": "1.41",
}


def test_docker_host_alone_is_tried_when_set() -> None:
    env = {"DOCKER_HOST": "tcp://10.0.0.1:2375", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert candidate_hosts(env) == ["tcp://10.0.0.1:2375"]
    assert choose_host(env, lambda _host: False) == "tcp://10.0.0.1:2375"


def test_without_docker_host_docker_then_rootful_then_rootless_podman() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000/"}
    assert candidate_hosts(env) == [
        "unix:///var/run/docker.sock",
        "unix:///run/podman/podman.sock",
        "unix:///run/user/1000/podman/podman.sock",
    ]
    assert candidate_hosts({}) == ["unix:///var/run/docker.sock", "unix:///run/podman/podman.sock"]
    rootless = "unix:///run/user/1000/podman/podman.sock"
    assert choose_host(env, lambda host: host == rootless) == rootless
    assert choose_host(env, lambda _host: True) == "unix:///var/run/docker.sock"
    # Nothing answers: Docker's socket, whose connect error (naming every socket tried) is the message.
    assert choose_host(env, lambda _host: False) == "unix:///var/run/docker.sock"


def test_podman_and_docker_are_told_apart_by_the_version_components() -> None:
    podman = identify(PODMAN_VERSION)
    assert podman == EngineId("podman", "4.3.1")
    assert podman.describe("1.41") == "Podman 4.3.1 (Docker API 1.41)"
    docker = identify(DOCKER_VERSION)
    assert docker == EngineId("docker", "20.10.24+dfsg1")
    assert docker.describe("1.41") == "Docker 20.10.24+dfsg1 (Docker API 1.41)"
    assert identify({}) == EngineId("docker", "?")


def test_docker_gets_a_device_request_for_every_gpu() -> None:
    assert docker_device_requests(True) == [{"count": -1, "capabilities": [["gpu"]]}]
    assert docker_device_requests(False) == []


def test_podman_gets_its_own_create_body_with_the_cdi_gpu_device() -> None:
    body = podman_create_body(
        image="127.0.0.1:5000/psyche-client:0.2.0",
        env={"RUN_ID": "r", "CLIENT_VERSION": "0.2.0"},
        labels={"io.psyche.run-manager": "true"},
        name="psyche-client-r-abcd1234-1",
        entrypoint="/bin/sh",
        command=("-c", "echo hi"),
        network_mode="host",
        shm_size="1g",
        privileged=False,
        gpus=True,
        devices=("/dev/infiniband",),
        mounts=[
            BindMount("/dev/shm/k/0", "/run/psyche/wallet-key", read_only=True),
            BindMount("/s", "/scratch"),
        ],
        runtime=None,
    )
    assert body == {
        "image": "127.0.0.1:5000/psyche-client:0.2.0",
        "env": {"RUN_ID": "r", "CLIENT_VERSION": "0.2.0"},
        "labels": {"io.psyche.run-manager": "true"},
        "netns": {"nsmode": "host"},
        "shm_size": 1073741824,
        "privileged": False,
        "name": "psyche-client-r-abcd1234-1",
        "entrypoint": ["/bin/sh"],
        "command": ["-c", "echo hi"],
        "devices": [{"path": "/dev/infiniband"}, {"path": "nvidia.com/gpu=all"}],
        "mounts": [
            {
                "destination": "/run/psyche/wallet-key",
                "source": "/dev/shm/k/0",
                "type": "bind",
                "options": ["rbind", "ro"],
            },
            {"destination": "/scratch", "source": "/s", "type": "bind", "options": ["rbind"]},
        ],
    }


def test_a_podman_body_without_gpus_or_overrides_keeps_the_image_defaults() -> None:
    body = podman_create_body(
        image="img", env={}, labels={}, name=None, entrypoint=None, command=(), network_mode="host",
        shm_size="64m", privileged=True, gpus=False, devices=(), mounts=(), runtime="crun",
    )  # fmt: skip
    assert body == {
        "image": "img",
        "env": {},
        "labels": {},
        "netns": {"nsmode": "host"},
        "shm_size": 64 * 2**20,
        "privileged": True,
        "oci_runtime": "crun",
    }
    assert CDI_GPU_DEVICE not in str(body)


def test_a_cdi_spec_is_found_in_either_directory(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc-cdi", tmp_path / "run-cdi"
    assert cdi_spec_present(os.listdir, (str(etc), str(run))) is None  # neither exists
    run.mkdir()
    (run / "README").write_text("not a spec")
    assert cdi_spec_present(os.listdir, (str(etc), str(run))) is None
    (run / "nvidia.yaml").write_text("cdiVersion: 0.5.0\n")
    assert cdi_spec_present(os.listdir, (str(etc), str(run))) == f"{run}/nvidia.yaml"


def test_without_docker_host_the_rootless_podman_socket_is_found() -> None:
    if socket_answers("unix:///var/run/docker.sock") or socket_answers("unix:///run/podman/podman.sock"):
        pytest.skip("a system engine answers on a default socket: discovery would rightly pick it")
    podman = EngineStandIn(version="4.3.1", api_version="1.41", min_api_version="1.24",
                           components=PODMAN_COMPONENTS)  # fmt: skip
    with engine_standin(podman, "podman/podman.sock") as (host, standin):
        runtime_dir = host.removeprefix("unix://").removesuffix("/podman/podman.sock")
        with DockerRuntime(environ={"XDG_RUNTIME_DIR": runtime_dir}) as runtime:
            assert runtime.engine() == EngineId("podman", "4.3.1")
            assert runtime.api_version() == "1.41"
    assert standin.paths[0] == "/version"


def test_with_no_engine_anywhere_the_error_names_every_socket_tried(tmp_path: Path) -> None:
    from psyche.errors import DockerUnavailable

    if socket_answers("unix:///var/run/docker.sock") or socket_answers("unix:///run/podman/podman.sock"):
        pytest.skip("a system engine answers on a default socket")
    with pytest.raises(DockerUnavailable) as raised:
        DockerRuntime(environ={"XDG_RUNTIME_DIR": str(tmp_path)})
    hint = raised.value.hint or ""
    assert "unix:///var/run/docker.sock, unix:///run/podman/podman.sock, " in hint
    assert f"unix://{tmp_path}/podman/podman.sock (DOCKER_HOST is unset)" in hint
