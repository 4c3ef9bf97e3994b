"""The Docker tier runs for real: push to the loopback registry, pull via docker-py, run, exit code, 404."""

from __future__ import annotations

from typing import Any

import docker
import httpx
import pytest

from tests.support.engine import BUSYBOX_REPOSITORY, BuildImage

pytestmark = pytest.mark.docker


def test_pulls_from_loopback_registry_then_runs_with_chosen_exit_code(
    docker_client: docker.DockerClient,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    image = busybox_image("pull-run")
    docker_client.images.remove(image.ref, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image.ref)

    events: list[dict[str, Any]] = list(
        docker_client.api.pull(image.repository, tag=image.tag, stream=True, decode=True)
    )

    statuses = [event.get("status", "") for event in events]
    assert [event["error"] for event in events if "error" in event] == []
    assert statuses[0] == f"Pulling from {BUSYBOX_REPOSITORY}"
    assert any(status.startswith("Digest: sha256:") for status in statuses)
    assert statuses[-1] == f"Status: Downloaded newer image for {image.ref}"

    container = docker_client.containers.run(
        image.ref,
        ["sh", "-c", 'echo "$GREETING from the container"; exit 7'],
        environment={"GREETING": "psyche docker tier"},
        network_mode="host",
        labels=container_labels,
        detach=True,
    )
    assert container.wait(timeout=60)["StatusCode"] == 7
    assert container.logs() == b"psyche docker tier from the container\n"


def test_host_network_reaches_loopback_services(
    docker_client: docker.DockerClient,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
    registry: str,
) -> None:
    # The engine has no bridge (--bridge=none): network_mode="host" is how a client container reaches a
    # chain or registry on the host's 127.0.0.1.
    image = busybox_image("host-net")
    container = docker_client.containers.run(
        image.ref,
        ["wget", "-q", "-O", "-", f"http://{registry}/v2/"],
        network_mode="host",
        labels=container_labels,
        detach=True,
    )
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert container.logs().strip() == b"{}"


def test_missing_tag_is_the_registrys_404(
    docker_client: docker.DockerClient, busybox_image: BuildImage, registry: str
) -> None:
    image = busybox_image("present")

    with pytest.raises(docker.errors.NotFound) as raised:
        docker_client.images.pull(image.repository, tag="no-such-tag")

    assert raised.value.status_code == 404
    assert "manifest unknown" in str(raised.value.explanation)
    answer = httpx.get(
        f"http://{registry}/v2/{BUSYBOX_REPOSITORY}/manifests/no-such-tag", timeout=5, trust_env=False
    )
    assert answer.status_code == 404
    assert [error["code"] for error in answer.json()["errors"]] == ["MANIFEST_UNKNOWN"]
