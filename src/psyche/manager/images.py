"""Turn a run's on-chain client_version into the Docker image to run, refusing anything unsafe."""

from __future__ import annotations

import re
from dataclasses import dataclass

from psyche.errors import ConfigError, InvalidClientVersion

DEFAULT_REPOSITORY = "nousresearch/psyche-client"
DEFAULT_LOCAL_REPOSITORY = "psyche-solana-client"
DIGEST_PREFIX = "sha256:"

_MAX_TAG = 128
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Docker's reference grammar: an optional registry host (with a dot, a port, or "localhost"),
# then lowercase path components separated by '/'.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9.-]+:[0-9]+|\[[0-9A-Fa-f:]+\](?::[0-9]+)?)"
_REPOSITORY = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """The image the supervisor pulls and runs for one client_version.

    ``reference`` is what Docker gets (``repo:tag``, ``repo@sha256:…``, or a local image ID);
    ``repository``/``tag`` are the pull arguments (``tag`` may be a digest; ``repository`` is None for an
    image ID); ``client_version`` is the CLIENT_VERSION value the container must see.
    """

    reference: str
    client_version: str
    local: bool
    repository: str | None
    tag: str

    @property
    def is_digest(self) -> bool:
        """True when the image is pinned by content (``@sha256:`` or a local image ID)."""
        return self.tag.startswith(DIGEST_PREFIX)


def _refusal(version: str) -> str | None:
    """Why ``version`` cannot be a Docker tag or digest, or None when it can."""
    if not version:
        return "it is empty"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in version):
        return "it contains control characters"
    if any(c.isspace() for c in version):
        return "it contains whitespace"
    if version.startswith(DIGEST_PREFIX):
        if _DIGEST.fullmatch(version):
            return None
        return "it starts with sha256: but is not sha256: followed by 64 lowercase hex digits"
    if "/" in version:
        return "it contains '/' (a repository path or registry host, not a tag)"
    if "@" in version or ":" in version:
        return "it contains '@' or ':' (an image reference, not a tag)"
    if ".." in version:
        return "it contains '..'"
    if len(version) > _MAX_TAG:
        return f"it is {len(version)} characters long (a tag has at most {_MAX_TAG})"
    if not _TAG.fullmatch(version):
        return "a tag may only hold letters, digits, '_', '.' and '-', and may not start with '.' or '-'"
    return None


def validate_client_version(version: str) -> str:
    """Return ``version`` (NUL padding removed) if it is a Docker tag or sha256 digest, else raise.

    Raises:
        InvalidClientVersion: one line naming the value (repr, shortened) and the reason.
    """
    cleaned = version.rstrip("\x00")
    reason = _refusal(cleaned)
    if reason is None:
        return cleaned
    if not cleaned:
        reason += " (the run has no client_version set)"
    raise InvalidClientVersion(
        f"the run's client_version {_shown(cleaned)} is not a Docker tag or sha256 digest: {reason}",
        hint="the run owner must set a valid client_version (update-config --client-version)",
    )


def check_client_version_option(version: str, flag: str = "--client-version") -> str:
    """The owner-side twin of :func:`validate_client_version`: refuse, before sending, what no manager runs.

    Raises:
        ConfigError: one line naming ``flag``, the value and the reason.
    """
    reason = _refusal(version)
    if reason is None:
        return version
    raise ConfigError(
        f"{flag} {_shown(version)} is not a Docker tag or sha256 digest: {reason}",
        hint="every run-manager would refuse the run; give a tag like 'v1.2.0' or 'sha256:<64 hex digits>'",
    )


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _check_repository(repository: str, what: str) -> str:
    if not _REPOSITORY.fullmatch(repository) or len(repository) > 255:
        raise ConfigError(f"{what} {repository!r} is not a Docker repository name (e.g. 'org/name')")
    return repository


def image_for_version(
    version: str,
    *,
    local: bool,
    repository: str = DEFAULT_REPOSITORY,
    local_repository: str = DEFAULT_LOCAL_REPOSITORY,
) -> ImageRef:
    """The image for ``version``, following the reference table (client-contract 1.9).

    ============  ========  =====================================  ================
    version       --local   image                                  CLIENT_VERSION
    ============  ========  =====================================  ================
    sha256:…      no        ``<repository>@sha256:…``              sha256:…
    sha256:…      yes       ``sha256:…`` (a local image ID)        sha256:…
    tag           no        ``<repository>:<tag>``                 tag
    tag           yes       ``<local_repository>:<tag>``           tag
    ============  ========  =====================================  ================

    CLIENT_VERSION is always the on-chain value itself, which is what the client compares against.

    Raises:
        InvalidClientVersion: ``version`` is neither a Docker tag nor a sha256 digest.
        ConfigError: a repository is not a Docker repository name.
    """
    v = validate_client_version(version)
    if local:
        if v.startswith(DIGEST_PREFIX):
            return ImageRef(reference=v, client_version=v, local=True, repository=None, tag=v)
        repo = _check_repository(local_repository, "local image repository")
        return ImageRef(reference=f"{repo}:{v}", client_version=v, local=True, repository=repo, tag=v)
    repo = _check_repository(repository, "image repository")
    sep = "@" if v.startswith(DIGEST_PREFIX) else ":"
    return ImageRef(reference=f"{repo}{sep}{v}", client_version=v, local=False, repository=repo, tag=v)
