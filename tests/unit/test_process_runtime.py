"""The process runtime's pure parts: which client version may run, argv, environment, exit codes, stamps."""

from __future__ import annotations

import pytest

from psyche.errors import ClientNotInstalled
from psyche.manager.clientpkg import release_of, require_installed
from psyche.manager.logs import parse_log_line
from psyche.manager.procruntime import _stamped, child_environment, client_command, exit_status


@pytest.mark.parametrize(
    ("client_version", "release"),
    [("0.2.0", "0.2.0"), ("v0.2.0", "0.2.0"), ("1.0.0rc1", "1.0.0rc1"), ("0.2.0.post1", "0.2.0.post1")],
)
def test_a_release_tag_names_a_package_version(client_version: str, release: str) -> None:
    assert release_of(client_version) == release


@pytest.mark.parametrize("client_version", ["content-352d79111af21333", "latest", "sha256:" + "a" * 64, "v"])
def test_other_tags_and_digests_name_no_release(client_version: str) -> None:
    assert release_of(client_version) is None


def test_the_installed_version_runs_only_the_run_that_wants_it() -> None:
    assert require_installed("0.2.0", "0.2.0") == "0.2.0"
    assert require_installed("v0.2.0", "0.2.0") == "0.2.0"
    with pytest.raises(ClientNotInstalled) as raised:
        require_installed("0.3.0", "0.2.0")
    assert str(raised.value) == (
        "the run wants client_version '0.3.0' but psyche-run-manager[client] 0.2.0 is installed: "
        "pip install 'psyche-run-manager[client]==0.3.0'"
    )


def test_no_client_installed_says_what_to_install() -> None:
    with pytest.raises(ClientNotInstalled) as raised:
        require_installed("0.3.0", None)
    assert str(raised.value) == (
        "the process runtime needs psyche-run-manager[client] installed: "
        "pip install 'psyche-run-manager[client]==0.3.0'"
    )


def test_an_image_digest_is_refused_with_the_way_out() -> None:
    digest = "sha256:" + "b" * 64
    with pytest.raises(ClientNotInstalled) as raised:
        require_installed(digest, "0.2.0")
    assert raised.value.message.startswith(f"the run's client_version {digest!r} names an image, not a ")
    assert raised.value.hint is not None and "--runtime docker" in raised.value.hint


def test_the_child_runs_the_images_entrypoint_unless_overridden() -> None:
    assert client_command("/venv/bin/python", None, ()) == ["/venv/bin/python", "-m", "psyche.client"]
    assert client_command("/p", None, ("--x",)) == ["/p", "-m", "psyche.client", "--x"]
    assert client_command("/p", "/bin/sh", ("-c", "echo")) == ["/bin/sh", "-c", "echo"]


def test_the_child_environment_is_the_containers_contract_over_a_few_host_essentials() -> None:
    host = {"PATH": "/usr/bin", "HOME": "/home/op", "RPC": "http://x", "RUN_MANAGER_DEBUG": "1", "LANG": "C"}
    spec_env = {
        "RUN_ID": "r",
        "CLIENT_VERSION": "0.2.0",
        "WALLET_PRIVATE_KEY_PATH": "/run/psyche/wallet-key",
        "HOME": "/root-from-env",
    }
    env = child_environment(
        spec_env,
        host,
        scratch_dir="/data/scratch",
        gpus=False,
        secret_paths={"/run/psyche/wallet-key": "/dev/shm/psyche-run-manager-x/0"},
    )
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root-from-env",  # the contract wins over the host
        "LANG": "C",
        "PYTHONUNBUFFERED": "1",
        "RUN_ID": "r",
        "CLIENT_VERSION": "0.2.0",
        "WALLET_PRIVATE_KEY_PATH": "/dev/shm/psyche-run-manager-x/0",
        "CHECKPOINT_DIR": "/data/scratch",
        "CUDA_VISIBLE_DEVICES": "",
    }


def test_a_checkpoint_dir_in_the_env_wins_and_gpus_keep_the_hosts_devices() -> None:
    env = child_environment(
        {"CHECKPOINT_DIR": "/ckpt"},
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        scratch_dir="/s",
        gpus=True,
        secret_paths={},
    )
    assert env["CHECKPOINT_DIR"] == "/ckpt" and env["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_a_signal_exit_reads_as_docker_reports_it() -> None:
    assert [exit_status(c) for c in (0, 3, 10, -15, -9)] == [0, 3, 10, 143, 137]


def test_timestamps_go_before_every_line_even_across_pieces() -> None:
    first, at_start = _stamped(b"one\ntw", True, 0.0)
    second, at_start = _stamped(b"o\nthree\n", at_start, 1.5)
    assert first == b"1970-01-01T00:00:00.000000000Z one\n1970-01-01T00:00:00.000000000Z tw"
    assert second == b"o\n1970-01-01T00:00:01.500000000Z three\n"
    assert at_start
    line = parse_log_line("1970-01-01T00:00:01.500000000Z three", timestamped=True)
    assert line.text == "three" and line.timestamp is not None and line.timestamp.timestamp() == 1.5
