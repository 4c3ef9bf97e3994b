"""DockerRuntime's edges that need no engine: the unreachable-engine message, devices, lazy imports."""

from __future__ import annotations

import gc
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from psyche.errors import DockerUnavailable
from psyche.manager.runtime import DOCKER_UNAVAILABLE, ContainerSpec, DockerRuntime, host_devices


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
