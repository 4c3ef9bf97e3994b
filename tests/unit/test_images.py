"""client_version -> image: the reference table, and refusal of anything that is not a tag or digest."""

from __future__ import annotations

import pytest

from psyche.errors import ChainError, ConfigError, InvalidClientVersion
from psyche.manager.images import (
    ImageRef,
    check_client_version_option,
    image_for_version,
    validate_client_version,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("version", "local", "reference", "repository"),
    [
        ("latest", False, "nousresearch/psyche-client:latest", "nousresearch/psyche-client"),
        ("v1.2", False, "nousresearch/psyche-client:v1.2", "nousresearch/psyche-client"),
        (DIGEST, False, f"nousresearch/psyche-client@{DIGEST}", "nousresearch/psyche-client"),
        ("v1.2", True, "psyche-solana-client:v1.2", "psyche-solana-client"),
        (DIGEST, True, DIGEST, None),  # a local image ID, run as-is
    ],
)
def test_reference_table(version: str, local: bool, reference: str, repository: str | None) -> None:
    image = image_for_version(version, local=local)

    assert image == ImageRef(reference, version, local, repository, version)
    assert image.client_version == version  # what the client compares with the chain


def test_repositories_are_configurable_including_a_loopback_registry() -> None:
    assert image_for_version("v1", local=False, repository="127.0.0.1:5000/psyche-client").reference == (
        "127.0.0.1:5000/psyche-client:v1"
    )
    assert image_for_version("v1", local=True, local_repository="localhost:5000/a/b").reference == (
        "localhost:5000/a/b:v1"
    )
    assert image_for_version(DIGEST, local=False, repository="registry.example.com/x").is_digest


def test_nul_padding_from_the_fixed_string_is_dropped() -> None:
    assert validate_client_version("v1\x00\x00\x00") == "v1"


REFUSED = [
    ("", "empty"),
    ("v1 beta", "whitespace"),
    ("v1\t", "control characters"),
    ("v1\x1b[31m", "control characters"),
    ("org/image", "'/'"),
    ("docker.io/library/busybox", "'/'"),
    ("registry:5000", "':'"),
    ("busybox@sha256", "'@'"),
    ("v1..2", "'..'"),
    ("..", "'..'"),
    ("a" * 129, "129 characters"),
    ("-v1", "may not start"),
    (".v1", "may not start"),
    ("v1+build", "letters, digits"),
    ("sha256:abc", "64 lowercase hex"),
    ("sha256:" + "A" * 64, "64 lowercase hex"),
    ("sha512:" + "a" * 128, "':'"),
]


@pytest.mark.parametrize(("version", "reason"), REFUSED)
def test_refusals_name_the_value_and_reason_on_one_line(version: str, reason: str) -> None:
    with pytest.raises(InvalidClientVersion) as raised:
        image_for_version(version, local=False)

    message = str(raised.value)
    assert reason in message
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith("the run's client_version ")
    assert isinstance(raised.value, ChainError)


@pytest.mark.parametrize(("version", "reason"), REFUSED)
def test_the_owner_side_check_refuses_what_the_manager_refuses_naming_the_flag(
    version: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        check_client_version_option(version, "--client-version")
    message = str(raised.value)
    assert message.startswith(f"--client-version {version[:40]!r}"[:-1])
    assert reason in message and "\n" not in message


@pytest.mark.parametrize("version", ["v1", "a" * 128, "1.2.0-rc_1", "sha256:" + "0" * 64])
def test_the_owner_side_check_accepts_what_the_manager_runs(version: str) -> None:
    assert check_client_version_option(version) == validate_client_version(version) == version


def test_a_128_character_tag_is_the_longest_accepted() -> None:
    assert validate_client_version("a" * 128) == "a" * 128


def test_a_long_refused_value_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidClientVersion) as raised:
        validate_client_version("x" * 500)
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize("repository", ["Upper/Case", "a//b", "has space", "", "a:b:c/d"])
def test_a_bad_repository_setting_is_a_config_error(repository: str) -> None:
    with pytest.raises(ConfigError, match="is not a Docker repository name"):
        image_for_version("v1", local=False, repository=repository)
