"""Which client the process runtime may run: the run's client_version against the installed package (pure).

The client image is tagged with the package version it was built from (scripts/build-client-image pushes
``<repository>:<version>`` beside ``content-<hash>``), so a run whose client_version is ``0.2.0`` runs the
code of psyche-run-manager 0.2.0. The process runtime runs the installed ``psyche-run-manager[client]``
instead of an image, and only for a run whose client_version is that installed version (a leading ``v``
allowed). A content-hash tag or an image digest names an image, not a release: no installed package can
be shown to be it, so such a run is refused with the way out (the container runtime, or a version tag).
"""

from __future__ import annotations

import re

from psyche.errors import ClientNotInstalled

DISTRIBUTION = "psyche-run-manager"
REQUIREMENT = f"{DISTRIBUTION}[client]"
# A release version as the image tags carry it: digits and dots, an optional pre/post/dev suffix.
_RELEASE = re.compile(r"v?(\d+(?:\.\d+)*(?:[-.]?(?:a|b|rc|alpha|beta|post|dev)\d*)*)", re.IGNORECASE)


def release_of(client_version: str) -> str | None:
    """The package version a client_version names (``v0.2.0`` -> ``0.2.0``), or None for other tags."""
    match = _RELEASE.fullmatch(client_version.strip())
    return match[1] if match else None


def _normal(version: str) -> str:
    return version.lower().replace("-", "").replace("_", "")


def require_installed(client_version: str, installed: str | None) -> str:
    """The installed version when ``client_version`` names it; otherwise one line saying what to do.

    Raises:
        ClientNotInstalled: no client installed, a client_version that names no release, or another version.
    """
    wanted = release_of(client_version)
    if installed is None:
        pin = f"=={wanted}" if wanted else ""
        raise ClientNotInstalled(
            f"the process runtime needs {REQUIREMENT} installed: pip install '{REQUIREMENT}{pin}'"
        )
    if wanted is None:
        raise ClientNotInstalled(
            f"the run's client_version {client_version!r} names an image, not a {DISTRIBUTION} release: the "
            f"process runtime runs only a run whose client_version is the installed version ({installed!r})",
            hint="use the container runtime (--runtime docker) for this run, or ask the run owner for a "
            "release tag such as '0.2.0'",
        )
    if _normal(wanted) != _normal(installed):
        raise ClientNotInstalled(
            f"the run wants client_version {client_version!r} but {REQUIREMENT} {installed} is installed: "
            f"pip install '{REQUIREMENT}=={wanted}'"
        )
    return installed
