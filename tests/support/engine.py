"""The Docker tier's shared parts: session labels, the engines, the busybox image in the loopback registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

import docker
import httpx
import pytest

# Every container a test creates carries both labels (use the `container_labels` fixture). The session
# label scopes teardown to this run: several developers share one engine, and a sweep of `psyche.test=1`
# alone would kill their running tests' containers.
TEST_LABEL = "psyche.test"
SESSION_LABEL = "psyche.test.session"
SESSION_ID = uuid.uuid4().hex[:10]


# The private Podman service of scripts/services (start --engine podman): its Docker-compatible socket.
PODMAN_HOST = os.environ.get("PSYCHE_PODMAN_HOST", "unix:///tmp/psyche-podman/podman.sock")

BUSYBOX = Path(os.environ.get("PSYCHE_TEST_BUSYBOX", "/bin/busybox"))
BUSYBOX_REPOSITORY = "psyche-test-bb"
_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1"}


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; fail under CI=true, where the Docker tier must prove it ran."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the Docker tier must run, so this fails instead of skipping)")
    pytest.skip(reason)


@dataclass(frozen=True, slots=True)
class PushedImage:
    """An image that is in the loopback registry (and, until a test removes it, in the local engine)."""

    repository: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


class BuildImage(Protocol):
    """The ``busybox_image`` fixture: tag -> that busybox image, pushed (``unique``: a layer of its own)."""

    def __call__(self, tag: str, *, unique: bool = False) -> PushedImage: ...


@dataclass(frozen=True, slots=True)
class Engine:
    """The engine a test drives: its name, the DOCKER_HOST a run-manager gets, and a client to inspect it."""

    name: str  # "docker" or "podman"
    host: str
    client: docker.DockerClient


def busybox_rootfs(rootfs: Path) -> None:
    bin_dir = rootfs / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            (bin_dir / applet).symlink_to("busybox")


def delete_from_registry(registry: str, image: PushedImage) -> None:
    """Drop the tag's manifest so a shared development registry does not fill with per-session tags."""
    manifest = f"http://{registry}/v2/{BUSYBOX_REPOSITORY}/manifests/"
    with httpx.Client(timeout=10, trust_env=False) as http:
        head = http.head(manifest + image.tag, headers={"Accept": _MANIFEST_V2})
        if head.status_code == 200:
            http.delete(manifest + head.headers["Docker-Content-Digest"]).raise_for_status()
