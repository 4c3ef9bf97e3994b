"""The run-down service's requests, built and checked in pure code: signed messages, bodies, answers, paths.

The service hands out signed URLs for a run's files (upload-data, download-results). Each request is
authenticated by an ed25519 signature of ``nous-run-down-service:{run_id}:{expires_in_seconds}:{nonce}``
made with the wallet, base58 in the ``X-Solana-Signature`` header; the service looks the run's key up
itself, so no public key travels. Nothing here does I/O: ``rundown_client`` sends what this module builds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from psyche.errors import ConfigError, RunDownError

if TYPE_CHECKING:
    from solders.keypair import Keypair

MESSAGE_PREFIX = "nous-run-down-service"
SIGNATURE_HEADER = "X-Solana-Signature"
DEFAULT_EXPIRES_IN_SECONDS = 3600
PART_SUFFIX = ".part"
_U64 = 2**64


def signing_message(run_id: str, expires_in_seconds: int, nonce: int) -> bytes:
    """The exact bytes the wallet signs for one request."""
    return f"{MESSAGE_PREFIX}:{run_id}:{expires_in_seconds}:{nonce}".encode()


def sign(keypair: Keypair, run_id: str, expires_in_seconds: int, nonce: int) -> str:
    """The base58 ed25519 signature of :func:`signing_message` by ``keypair``."""
    return str(keypair.sign_message(signing_message(run_id, expires_in_seconds, nonce)))


@dataclass(slots=True)
class Nonces:
    """Random u64 nonces, never the same twice from one instance (the service refuses a replayed nonce)."""

    _used: set[int] = field(default_factory=set)

    def new(self) -> int:
        """A random u64 this instance has not given out before."""
        while True:
            nonce = secrets.randbelow(_U64)
            if nonce not in self._used:
                self._used.add(nonce)
                return nonce


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """One POST to the service: where, the signature header and the JSON body."""

    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]


def _endpoint(base_url: str, action: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/{action}/{quote(run_id, safe='')}"


def upload_url_request(
    base_url: str, keypair: Keypair, run_id: str, filename: str, expires_in_seconds: int, nonce: int
) -> SignedRequest:
    """``POST {base}/upload/{run_id}`` with ``{filename, expiresInSeconds, nonce}``: one file's upload URL."""
    return SignedRequest(
        _endpoint(base_url, "upload", run_id),
        {SIGNATURE_HEADER: sign(keypair, run_id, expires_in_seconds, nonce)},
        {"filename": filename, "expiresInSeconds": expires_in_seconds, "nonce": str(nonce)},
    )


def download_urls_request(
    base_url: str, keypair: Keypair, run_id: str, expires_in_seconds: int, nonce: int
) -> SignedRequest:
    """``POST {base}/download/{run_id}`` with ``{expiresInSeconds, nonce}``: every file's download URL."""
    return SignedRequest(
        _endpoint(base_url, "download", run_id),
        {SIGNATURE_HEADER: sign(keypair, run_id, expires_in_seconds, nonce)},
        {"expiresInSeconds": expires_in_seconds, "nonce": str(nonce)},
    )


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a run as the service lists it: its relative path and a signed GET URL."""

    path: PurePosixPath
    url: str


def _string(answer: Mapping[str, Any], key: str, what: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise RunDownError(f"the run-down service's {what} answer has no {key!r} string")
    return value


def parse_upload_url(answer: object) -> str:
    """The signed PUT URL from ``{url, expiresAt}``.

    Raises:
        RunDownError: the answer is not an object with a URL.
    """
    if not isinstance(answer, Mapping):
        raise RunDownError("the run-down service's upload answer is not a JSON object")
    return _string(answer, "url", "upload")


def parse_download_urls(answer: object) -> list[RemoteFile]:
    """The files from ``{urls: [{path, url}], expiresAt}``, each path checked by ``safe_relative_path``.

    Raises:
        RunDownError: the answer is malformed, names a path twice, or names an unsafe path.
    """
    if not isinstance(answer, Mapping) or not isinstance(answer.get("urls"), list):
        raise RunDownError("the run-down service's download answer has no 'urls' list")
    files: list[RemoteFile] = []
    seen: set[PurePosixPath] = set()
    for entry in answer["urls"]:
        if not isinstance(entry, Mapping):
            raise RunDownError(
                "the run-down service's download answer has a 'urls' entry that is not an object"
            )
        path = safe_relative_path(_string(entry, "path", "download"))
        if path in seen:
            raise RunDownError(f"the run-down service listed {str(path)!r} twice")
        seen.add(path)
        files.append(RemoteFile(path, _string(entry, "url", "download")))
    return files


def safe_relative_path(text: str) -> PurePosixPath:
    """A service-given path that stays inside the output directory: relative, no ``..``, no empty parts.

    Raises:
        RunDownError: the path would leave the output directory.
    """
    path = PurePosixPath(text)
    parts = text.split("/")
    if (
        path.is_absolute()
        or "\\" in text
        or "\0" in text
        or any(part in ("", ".", "..") for part in parts)
        or path.name.endswith(PART_SUFFIX)
    ):
        raise RunDownError(f"the run-down service listed an unsafe file path {text!r}; refusing to write it")
    return path


def part_path(destination: Path) -> Path:
    """Where a download is written until it is complete (kept on failure, for resuming)."""
    return destination.with_name(destination.name + PART_SUFFIX)


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file to upload and the name the service stores it under (relative, ``/``-separated)."""

    path: Path
    name: str
    size: int


def upload_plan(path: Path) -> list[LocalFile]:
    """Every file to upload for ``--path``: the file itself (named by its basename), or a directory's files
    recursively (named relative to it, sorted). Raises ConfigError naming the path and the fix."""
    if path.is_file():
        return [LocalFile(path, path.name, path.stat().st_size)]
    if not path.exists():
        raise ConfigError(f"--path {path}: no such file or directory; pass an existing file or directory")
    if not path.is_dir():
        raise ConfigError(f"--path {path}: not a regular file or directory; pass a file or a directory")
    files: list[LocalFile] = []
    for child in sorted(_walk(path)):
        files.append(LocalFile(child, child.relative_to(path).as_posix(), child.stat().st_size))
    return files


def _walk(directory: Path) -> Iterable[Path]:
    try:
        entries = list(directory.iterdir())
    except OSError as exc:
        raise ConfigError(
            f"--path {directory}: cannot list it ({exc.strerror}); fix its permissions"
        ) from exc
    for entry in entries:
        if entry.is_file():
            yield entry
        elif entry.is_dir():
            yield from _walk(entry)


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A parsed ``Content-Range: bytes start-end/total`` (``start``/``end`` None for ``bytes */total``)."""

    start: int | None
    end: int | None
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse a ``Content-Range`` header; None when absent or malformed."""
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    if unit != "bytes":
        return None
    span, _, total_text = spec.partition("/")
    try:
        total = None if total_text == "*" else int(total_text)
        if span == "*":
            return ContentRange(None, None, total)
        start_text, _, end_text = span.partition("-")
        start, end = int(start_text), int(end_text)
    except ValueError:
        return None
    if start > end or (total is not None and end >= total):
        return None
    return ContentRange(start, end, total)
