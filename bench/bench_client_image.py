"""Benchmark: scripts/build-client-image: no-cache and cached build time, image size, push time."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build-client-image"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def build(repository: str, *flags: str) -> dict[str, Any]:
    """One run of the build script; its JSON summary plus the wall time seen from here."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--repository", repository, "--json", str(out), *flags],
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"build-client-image {' '.join(flags)} failed:\n{done.stderr[-3000:]}")
        summary: dict[str, Any] = json.loads(out.read_text())
    summary["wall_s"] = wall
    return summary


def docker(*args: str) -> None:
    env = {
        **os.environ,
        "DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///tmp/psyche-docker/docker.sock"),
    }
    cli = os.environ.get("PSYCHE_DOCKER_CLI", "/usr/bin/docker")
    subprocess.run([cli, *args], env=env, capture_output=True, check=False)


def drop_from_registry(repository: str, tag: str) -> None:
    """Delete the bench manifest (bench repository only: a DELETE drops every tag of that manifest)."""
    address, name = repository.split("/", 1)
    url = f"http://{address}/v2/{name}/manifests/"
    http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with http.open(urllib.request.Request(url + tag, method="HEAD", headers={"Accept": MANIFEST_V2})) as r:
        digest = r.headers["Docker-Content-Digest"]
    http.open(urllib.request.Request(url + digest, method="DELETE")).close()


def gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    registry = os.environ.get("PSYCHE_REGISTRY_ADDR") or os.environ.get("RUN_MANAGER_TEST_REGISTRY")
    parser.add_argument("--repository", default=f"{registry or '127.0.0.1:5000'}/psyche-client-bench")
    parser.add_argument("--cold-base", action="store_true", help="rebuild the mmdebstrap base too (~50 s)")
    parser.add_argument("--push", action="store_true", help="also time the push of the ~1 GB image")
    args = parser.parse_args()

    # A repository of its own: the bench's --force rebuild must not retag the image the tests use.
    cold_flags = ["--force", "--no-cache", "--no-push", *(["--rebuild-base"] if args.cold_base else [])]
    cold = build(args.repository, *cold_flags)
    warm = build(args.repository, "--force", "--no-push")
    base = "base cached" if cold["base_cached"] else f"base built in {cold['steps']['base image']:.1f} s"
    build_s, torch = cold["steps"]["docker build"], cold["torch_variant"]
    print(
        f"client image build: {cold['wall_s']:.1f} s ({base}, docker build --no-cache {build_s:.1f} s), "
        f"size {gb(cold['size_bytes'])}, torch {torch}"
    )
    print(f"client image rebuild with layer cache: {warm['wall_s']:.1f} s")
    if args.push:
        pushed = build(args.repository)
        push_s = pushed["steps"].get("push", 0.0)
        print(f"client image push: {push_s:.1f} s, {gb(pushed['registry_bytes'])} compressed in the registry")
        drop_from_registry(args.repository, f"content-{pushed['content_hash']}")
    for ref in {cold["content_ref"], warm["content_ref"], *cold["refs"]}:
        docker("rmi", ref)


if __name__ == "__main__":
    main()
