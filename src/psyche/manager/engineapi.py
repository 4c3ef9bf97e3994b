"""Which Docker Engine API version to speak: the engine's range against ours (pure; runtime.py asks)."""

from __future__ import annotations

from collections.abc import Mapping

from psyche.errors import ContainerRuntimeError

# Docker 20.10 (Debian's docker.io): the first API with device requests (--gpus), and everything else we use.
MIN_API_VERSION = "1.41"
_MIN = (1, 41)


def _parse(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def negotiate(answer: Mapping[str, object], sdk_max: str) -> str:
    """The highest API version both sides speak, from the engine's unversioned ``GET /version`` answer.

    Like the docker CLI: the engine's ApiVersion capped at the newest the SDK knows (``sdk_max``). It must
    not fall below MIN_API_VERSION (what we need) nor below the engine's MinAPIVersion (what it accepts).

    Raises:
        ContainerRuntimeError: no version fits; one line naming both ranges and what to do.
    """
    engine = str(answer.get("Version") or "?")
    newest = str(answer.get("ApiVersion") or "")
    oldest = str(answer.get("MinAPIVersion") or "")
    top, bottom, sdk = _parse(newest), _parse(oldest) if oldest else (), _parse(sdk_max)
    if top is None or bottom is None or sdk is None:
        raise ContainerRuntimeError(
            f"Docker engine {engine} gave an unreadable API version (ApiVersion {newest!r}, "
            f"MinAPIVersion {oldest!r}): is DOCKER_HOST a Docker-compatible engine?"
        )
    chosen = min(top, sdk)
    if chosen >= _MIN and chosen >= bottom:
        return ".".join(map(str, chosen))
    if chosen < _MIN:
        fix = (
            f"upgrade Docker to 20.10 or newer (API {MIN_API_VERSION} brings the GPU device requests "
            "the client container needs)"
        )
    else:
        fix = f"upgrade run-manager (its docker Python package speaks API up to {sdk_max})"
    accepts = f"{oldest}-{newest}" if oldest else f"up to {newest}"
    raise ContainerRuntimeError(
        f"Docker engine {engine} accepts API {accepts}; this run-manager speaks API "
        f"{MIN_API_VERSION}-{sdk_max}: {fix}"
    )
