"""The `client_image` session fixture: the client image built (or reused) by scripts/build-client-image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.paths import PROJECT_ROOT

BUILD_SCRIPT = PROJECT_ROOT / "scripts" / "build-client-image"
# Cold: base ~50 s + torch build ~50 s + push ~50 s (docs/client-image.md); leave room for a busy machine.
BUILD_TIMEOUT_S = 900


@dataclass(frozen=True, slots=True)
class ClientImage:
    """The client image as pushed: `ref` is the version tag, `content_ref` the immutable content-hash tag."""

    repository: str
    tag: str  # the version, with the torch variant appended when it is not cpu (0.2.0, 0.2.0-cu130)
    version: str
    content_hash: str
    summary: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def content_ref(self) -> str:
        return f"{self.repository}:content-{self.content_hash}"


def build_client_image(registry: str, json_path: Path) -> ClientImage:
    """Run the build script; it skips the build and push when the registry already has this content hash."""
    if not BUILD_SCRIPT.is_file():
        pytest.fail(f"{BUILD_SCRIPT} is missing")
    env = {**os.environ, "PSYCHE_REGISTRY_ADDR": registry}
    try:
        done = subprocess.run(
            [sys.executable, str(BUILD_SCRIPT), "--json", str(json_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            cwd=PROJECT_ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/build-client-image took over {BUILD_TIMEOUT_S} s")
    if done.returncode != 0:
        if "mmdebstrap not found" in done.stderr:
            from tests.support.engine import unavailable

            unavailable("mmdebstrap is not installed (scripts/setup --system installs it)")
        pytest.fail(f"scripts/build-client-image exited {done.returncode}:\n{done.stderr[-4000:]}")
    summary: dict[str, Any] = json.loads(json_path.read_text())
    repository, _, tag = summary["refs"][0].rpartition(":")
    return ClientImage(repository, tag, summary["version"], summary["content_hash"], summary)


@pytest.fixture(scope="session")
def client_image(
    docker_client: docker.DockerClient, registry: str, tmp_path_factory: pytest.TempPathFactory
) -> ClientImage:
    """The client image, in the registry AND in the engine, built at most once per content hash.

    Every test (the end-to-end ones too) that needs the real client image should use this fixture: the
    script runs once per session, and not at all for the build and push when the registry already has
    the content-hash tag. The image is left in place for the next session; tests must not remove its
    version tag (removing `content_ref` locally is fine: the version tag keeps the layers).
    """
    image = build_client_image(registry, tmp_path_factory.mktemp("client-image") / "summary.json")
    try:
        docker_client.images.get(image.content_ref)
    except docker.errors.ImageNotFound:
        # Built by an earlier session against a registry that outlived the engine: fetch it once.
        docker_client.images.pull(image.repository, tag=f"content-{image.content_hash}")
    return image
