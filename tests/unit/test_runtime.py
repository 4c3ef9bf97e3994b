"""DockerRuntime's edges that need no real engine: the unreachable-engine message, devices, lazy imports,
and the API version negotiation (against a stand-in engine on a unix socket)."""

from __future__ import annotations

import gc
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from psyche.errors import ContainerRuntimeError, DockerUnavailable
from psyche.manager.engineapi import negotiate
from psyche.manager.runtime import DOCKER_UNAVAILABLE, ContainerSpec, DockerRuntime, host_devices
from tests.support.engine_standin import EngineStandIn, engine_standin


def test_an_unreachable_engine_gives_the_reference_message_and_what_to_do(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    with warnings.catch_warnings(record=True) as caught:
        # The failed connect must close its socket (docker-py's own probe used to leave it open):
        # after dropping the error and collecting, no ResourceWarning may appear.
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(DockerUnavailable) as raised:
            DockerRuntime(environ={"DOCKER_HOST": dead})
        message, hint = str(raised.value), raised.value.hint
        del raised
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []

    assert (
        message
        == DOCKER_UNAVAILABLE
        == "Failed to execute docker command. Is Docker installed and accessible?"
    )
    assert hint is not None
    assert dead in hint and "DOCKER_HOST" in hint


def test_infiniband_is_passed_only_when_the_host_has_it() -> None:
    assert host_devices(lambda path: path == "/dev/infiniband") == ("/dev/infiniband",)
    assert host_devices(lambda _path: False) == ()


def test_the_spec_repr_never_shows_the_environment() -> None:
    spec = ContainerSpec(image="x:1", env={"RAW_WALLET_PRIVATE_KEY": "s3cr3t-key"})
    assert "s3cr3t-key" not in repr(spec) and "RAW_WALLET_PRIVATE_KEY" not in repr(spec)


def test_docker_is_imported_only_when_a_runtime_is_built() -> None:
    code = (
        "import sys; import psyche.manager.supervisor, psyche.manager.runtime, psyche.manager.images; "
        "print(sorted(m for m in ('docker', 'requests', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- API version negotiation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "sdk", "chosen"),
    [
        ({"ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "1.45", "1.41"),  # Debian's 20.10
        ({"ApiVersion": "1.47", "MinAPIVersion": "1.24"}, "1.45", "1.45"),  # Docker 27: ours caps it
        ({"ApiVersion": "1.52", "MinAPIVersion": "1.44"}, "1.45", "1.45"),  # Docker 29
        ({"ApiVersion": "1.41", "MinAPIVersion": "1.24"}, "1.45", "1.41"),  # Podman's compat API
        ({"ApiVersion": "1.43"}, "1.45", "1.43"),  # no MinAPIVersion: any up to the max
    ],
)
def test_negotiation_picks_the_newest_version_both_sides_speak(
    engine: dict[str, str], sdk: str, chosen: str
) -> None:
    assert negotiate({"Version": "x", **engine}, sdk) == chosen


def test_an_engine_too_old_for_device_requests_is_one_line_naming_both_ranges() -> None:
    with pytest.raises(ContainerRuntimeError) as raised:
        negotiate({"Version": "17.06.0-ce", "ApiVersion": "1.30", "MinAPIVersion": "1.12"}, "1.45")
    assert str(raised.value) == (
        "Docker engine 17.06.0-ce accepts API 1.12-1.30; this run-manager speaks API 1.41-1.45: "
        "upgrade Docker to 20.10 or newer "
        "(API 1.41 brings the GPU device requests the client container needs)"
    )


def test_an_engine_too_new_for_our_sdk_says_to_upgrade_run_manager() -> None:
    with pytest.raises(ContainerRuntimeError) as raised:
        negotiate({"Version": "40.0.0", "ApiVersion": "1.70", "MinAPIVersion": "1.60"}, "1.45")
    assert str(raised.value) == (
        "Docker engine 40.0.0 accepts API 1.60-1.70; this run-manager speaks API 1.41-1.45: "
        "upgrade run-manager (its docker Python package speaks API up to 1.45)"
    )


def test_an_unreadable_api_version_names_it() -> None:
    with pytest.raises(ContainerRuntimeError, match=r"unreadable API version \(ApiVersion 'x.y'"):
        negotiate({"Version": "1", "ApiVersion": "x.y"}, "1.45")


def test_a_docker_29_engine_is_spoken_to_in_a_version_it_accepts() -> None:
    with engine_standin() as (host, standin), DockerRuntime(environ={"DOCKER_HOST": host}) as runtime:
        assert runtime.api_version() == "1.45"  # min(the engine's 1.52, docker-py's 1.45)
        assert runtime.version() == "29.0.1"
        assert runtime.list_by_label({"io.psyche.run-manager": "true"}) == []
        assert not runtime.has_nvidia_runtime()
    assert standin.paths[0] == "/version"  # the one unversioned probe
    assert [p.split("?")[0] for p in standin.paths[1:]] == [
        "/v1.45/version",
        "/v1.45/containers/json",
        "/v1.45/info",
    ]


def test_the_stand_in_refuses_1_41_as_docker_29_does() -> None:
    # What the pinned 1.41 met: the engine's own refusal (so the stand-in is faithful where it matters).
    import docker

    with engine_standin() as (host, _standin):
        client = docker.DockerClient(base_url=host, version="1.41")
        try:
            with pytest.raises(docker.errors.APIError, match=r"client version 1\.41 is too old"):
                client.containers.list()
        finally:
            client.close()


def test_an_engine_below_api_1_41_is_refused_at_connect_in_one_line() -> None:
    old = EngineStandIn(version="17.06.0-ce", api_version="1.30", min_api_version="1.12")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with engine_standin(old) as (host, standin), pytest.raises(ContainerRuntimeError) as raised:
            DockerRuntime(environ={"DOCKER_HOST": host})
        message = str(raised.value)
        del raised
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert message.startswith(
        "Docker engine 17.06.0-ce accepts API 1.12-1.30; this run-manager speaks API 1.41-"
    )
    assert "\n" not in message and "upgrade Docker to 20.10 or newer" in message
    assert standin.paths == ["/version"]  # nothing else was asked of it


def test_the_wallet_key_file_is_staged_only_on_a_tmpfs() -> None:
    from psyche.manager.runtime import tmpfs_dir

    mounts = "proc /proc proc rw 0 0\n/dev/sda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw,nosuid 0 0\n"
    assert tmpfs_dir(mounts) == "/dev/shm"
    assert tmpfs_dir("/dev/sda1 / ext4 rw 0 0\n") is None  # /dev/shm is on the root disk here
    assert (
        tmpfs_dir("tmpfs /run tmpfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n", ("/run/user/1000",))
        == "/run/user/1000"
    )
    assert tmpfs_dir("tmpfs /dev/shmem tmpfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n") is None  # not a prefix match


def test_only_a_unix_socket_engine_is_local() -> None:
    from psyche.manager.runtime import engine_is_local

    assert engine_is_local({}) and engine_is_local({"DOCKER_HOST": "unix:///tmp/psyche-docker/docker.sock"})
    assert not engine_is_local({"DOCKER_HOST": "tcp://10.0.0.5:2376"})
    assert not engine_is_local({"DOCKER_HOST": "ssh://gpu-box"})


def test_secret_files_stay_out_of_the_spec_repr() -> None:
    spec = ContainerSpec(image="x:1", secret_files={"/run/psyche/wallet-key": b"s3cr3t-key"})
    assert "s3cr3t-key" not in repr(spec)
