"""Docker-tier fixtures: the engine, the loopback registry, a pushed busybox image, and container cleanup."""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
import warnings
from collections.abc import Callable, Iterator

import docker
import httpx
import pytest
import requests

# The client image (scripts/build-client-image), built at most once per content hash; shared by every test.
from tests.support.client_image import client_image as client_image

# The chain commands' fixtures (a local chain per module, reached on RPC and through a dead RPC + RPC_2).
from tests.support.commands import cli as cli
from tests.support.commands import endpoints as endpoints
from tests.support.commands import net as net
from tests.support.engine import (
    BUSYBOX,
    BUSYBOX_REPOSITORY,
    PODMAN_HOST,
    SESSION_ID,
    SESSION_LABEL,
    TEST_LABEL,
    BuildImage,
    Engine,
    PushedImage,
    busybox_rootfs,
    delete_from_registry,
    unavailable,
)

# Tests that use any of these get the `docker` marker automatically, so `-m "not docker"` deselects them.
DOCKER_FIXTURES = frozenset({"docker_client", "registry", "busybox_image", "container_labels", "engine"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("engine") == "podman":
            item.add_marker(pytest.mark.podman)


def _connected(
    connect: Callable[[], docker.DockerClient], unreachable: str, start: str
) -> docker.DockerClient:
    """A client that answered a ping; else skipped (CI: failed) with what is missing and how to start it."""
    reason = None
    # docker-py leaves the socket of a failed connect unclosed; with warnings as errors its ResourceWarning
    # would surface in some later test, so drop it here, quietly, before skipping.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = connect()
            client.ping()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            reason = f"{unreachable}: {exc} (start one: {start})"
        gc.collect()
    if reason is not None:
        unavailable(reason)
    return client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """docker.from_env() after a ping; skipped (CI: failed) with the reason when no engine answers."""
    where = os.environ.get("DOCKER_HOST", "the default socket")
    client = _connected(
        lambda: docker.from_env(timeout=60), f"no Docker engine at {where}", "scripts/services start"
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def podman_client() -> Iterator[docker.DockerClient]:
    """A client of the private Podman service (PSYCHE_PODMAN_HOST); skipped (CI: failed) when it is down.

    At the end it removes the images this session pulled into Podman (their tags carry the session id).
    """
    client = _connected(
        lambda: docker.DockerClient(base_url=PODMAN_HOST, version="1.41", timeout=60),
        f"no Podman service at {PODMAN_HOST}",
        "scripts/services start --engine podman",
    )
    try:
        yield client
    finally:
        for image in client.images.list():
            if any(SESSION_ID in tag for tag in image.tags):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(image.id, force=True)
        client.close()


@pytest.fixture
def engine(request: pytest.FixtureRequest, docker_client: docker.DockerClient) -> Engine:
    """Docker (the default), or Podman for tests parametrised with ``indirect=["engine"]``."""
    name = getattr(request, "param", "docker")
    if name == "podman":
        return Engine("podman", PODMAN_HOST, request.getfixturevalue("podman_client"))
    return Engine("docker", os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), docker_client)


@pytest.fixture(scope="session")
def registry() -> str:
    """The loopback registry's host:port, checked via /v2/ (RUN_MANAGER_TEST_REGISTRY; 127.0.0.1:5000)."""
    address = os.environ.get("RUN_MANAGER_TEST_REGISTRY", "127.0.0.1:5000")
    host = address.rsplit(":", 1)[0]
    if not (host.startswith("127.") or host == "localhost"):
        pytest.fail(f"RUN_MANAGER_TEST_REGISTRY must be a loopback host:port, got {address!r}")
    try:
        answer = httpx.get(f"http://{address}/v2/", timeout=5, trust_env=False)
    except httpx.HTTPError as exc:
        unavailable(f"no registry at http://{address}/v2/: {exc!r} (start one: scripts/services start)")
    if answer.status_code != 200:
        unavailable(f"http://{address}/v2/ answered {answer.status_code}, not a registry without auth")
    return address


@pytest.fixture(scope="session")
def busybox_image(
    docker_client: docker.DockerClient, registry: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuildImage]:
    """Factory: tag -> a pushed `FROM scratch` busybox image, <registry>/psyche-test-bb:<tag>-<session>.

    The image has /bin/busybox plus a symlink per applet (sh, echo, sleep, wget, ...) and no entrypoint, so a
    command such as ["sh", "-c", "exit 3"] runs as written. The same tag in one session gives the same image.
    Every such image shares one layer; ``unique=True`` adds a file of its own so its layer is new to the
    engine (a pull then really downloads it, whatever else the engine holds).
    """
    if not BUSYBOX.is_file():
        unavailable(f"{BUSYBOX} not found: the busybox image needs it (apt-get install busybox-static)")
    repository = f"{registry}/{BUSYBOX_REPOSITORY}"
    pushed: dict[str, PushedImage] = {}

    def build(tag: str, *, unique: bool = False) -> PushedImage:
        if tag in pushed:
            return pushed[tag]
        image = PushedImage(repository, f"{tag}-{SESSION_ID}")
        context = tmp_path_factory.mktemp("busybox-image")
        busybox_rootfs(context / "rootfs")
        if unique:
            (context / "rootfs" / "image-id").write_text(f"{image.ref} {uuid.uuid4()}\n")
        (context / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD ["sh"]\n')
        # The legacy builder (all docker-py has) is enough for FROM scratch + COPY; nothing is pulled.
        docker_client.images.build(path=str(context), tag=image.ref, rm=True, forcerm=True)
        for event in docker_client.api.push(image.repository, tag=image.tag, stream=True, decode=True):
            if "error" in event:
                pytest.fail(f"push of {image.ref} failed: {event['error']}")
        pushed[tag] = image
        return image

    yield build

    for image in pushed.values():
        with contextlib.suppress(docker.errors.ImageNotFound):  # a test removed it to prove a pull
            docker_client.images.remove(image.ref, force=True)
        delete_from_registry(registry, image)


@pytest.fixture
def container_labels() -> dict[str, str]:
    """Labels every test container must carry, so teardown finds and removes it."""
    return {TEST_LABEL: "1", SESSION_LABEL: SESSION_ID}


@pytest.fixture(autouse=True)
def _remove_test_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that uses the engine, remove the containers this session labelled (running or not)."""
    if "docker_client" not in request.fixturenames:
        yield
        return
    client: docker.DockerClient = request.getfixturevalue("docker_client")
    yield
    for container in client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={SESSION_ID}"}):
        container.remove(force=True)
