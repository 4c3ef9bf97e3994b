"""HTTP to the run-down service and to its signed URLs (the one module that does it), and the two transfers.

``RunDownClient`` posts the signed requests ``rundown`` builds and moves bytes: uploads are streamed from
disk with an exact Content-Length; downloads go to ``<name>.part``, resume with ``Range`` after a dropped
connection (a few times in-process, and again on the next run), and are renamed into place only when
complete. The transport is injectable (``httpx.MockTransport`` in unit tests). httpx errors become
RunDownError here and nowhere else; signed URLs are redacted in every message (they carry credentials).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

import httpx

from psyche.backoff import Backoff
from psyche.chain.endpoints import redact
from psyche.errors import ConfigError, RunDownError
from psyche.manager import rundown

if TYPE_CHECKING:
    from solders.keypair import Keypair

CHUNK = 1 << 20
RETRY_CAP_S = 10.0  # a transfer retry waits 0.5, 1, 2 ... s (the project's one backoff formula)
_DETAIL_CHARS = 200


@dataclass(frozen=True, slots=True)
class TransferStarted:
    """A file's transfer (re)starts; ``offset`` > 0 when a download resumes from its .part file."""

    verb: str  # "Downloading" or "Uploading"
    index: int
    count: int
    name: str
    offset: int
    total: int | None


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Bytes of ``name`` done so far (resumed bytes included)."""

    name: str
    done: int
    total: int | None


@dataclass(frozen=True, slots=True)
class TransferDone:
    """A file is complete: uploaded, or renamed into place at ``destination``."""

    name: str
    size: int
    destination: Path | None = None
    resumed_from: int = 0


TransferEvent = TransferStarted | TransferProgress | TransferDone
OnEvent = Callable[[TransferEvent], None]


class _Retry(Exception):
    """A failure worth another attempt (dropped connection, 5xx): its text ends up in the final error."""


def _detail(response: httpx.Response) -> str:
    """The service's reason, one short line: a JSON ``error``/``message`` field, else the body's start."""
    text = ""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        answer = response.json()
        if isinstance(answer, dict):
            text = str(answer.get("error") or answer.get("message") or "")
    if not text:
        with contextlib.suppress(UnicodeDecodeError):
            text = response.text
    text = " ".join(text.split())
    phrase = f"HTTP {response.status_code}"
    if not text:
        return phrase
    return f"{phrase}: {text[:_DETAIL_CHARS]}{'…' if len(text) > _DETAIL_CHARS else ''}"


def _transport_text(exc: httpx.TransportError, url: str) -> str:
    # httpx may quote the URL in its message; a signed URL's query is a credential.
    detail = (str(exc) or type(exc).__name__).replace(url, redact(url))
    return f"{type(exc).__name__}: {detail}"


class RunDownClient:
    """Signed requests to one run-down service, and transfers to and from the URLs it signs."""

    def __init__(
        self,
        base_url: str,
        keypair: Keypair,
        *,
        transport: httpx.BaseTransport | None = None,
        attempts: int = 3,
        retry_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self._keypair = keypair
        self._attempts = max(1, attempts)
        self._backoff = Backoff(retry_delay, RETRY_CAP_S, attempts=self._attempts)
        self._sleep = sleep
        self._nonces = rundown.Nonces()
        self._http = httpx.Client(
            transport=transport, timeout=httpx.Timeout(timeout, connect=15.0), follow_redirects=True
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> RunDownClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the service ------------------------------------------------------------------------------------

    def upload_url(self, run_id: str, filename: str, expires_in_seconds: int) -> str:
        """A signed PUT URL for ``filename`` of ``run_id`` (one fresh nonce per request).

        Raises:
            RunDownError: the service refused or gave an answer that is not an upload URL.
        """
        request = rundown.upload_url_request(
            self.base_url, self._keypair, run_id, filename, expires_in_seconds, self._nonces.new()
        )
        return rundown.parse_upload_url(self._post(request, run_id))

    def download_urls(self, run_id: str, expires_in_seconds: int) -> list[rundown.RemoteFile]:
        """Every file of ``run_id`` with a signed GET URL.

        Raises:
            RunDownError: the service refused or gave a malformed or unsafe file list.
        """
        request = rundown.download_urls_request(
            self.base_url, self._keypair, run_id, expires_in_seconds, self._nonces.new()
        )
        return rundown.parse_download_urls(self._post(request, run_id))

    def _post(self, request: rundown.SignedRequest, run_id: str) -> object:
        where = redact(self.base_url)
        try:
            response = self._http.post(request.url, headers=dict(request.headers), json=dict(request.body))
        except httpx.TransportError as exc:
            raise RunDownError(
                f"cannot reach the run-down service at {where} ({_transport_text(exc, request.url)}); "
                "check RUN_DOWN_SERVICE_URL and your network"
            ) from exc
        status = response.status_code
        if status in (401, 403):
            raise RunDownError(
                f"the run-down service refused the signature for run '{run_id}' ({_detail(response)}); "
                f"sign with the wallet the service knows for this run (-w/--wallet-private-key-path); "
                f"this one is {self._keypair.pubkey()}"
            )
        if status == 404:
            raise RunDownError(
                f"the run-down service at {where} has no run '{run_id}' ({_detail(response)}); "
                "check --run-id / RUN_ID"
            )
        if status >= 500 or status == 429:
            raise RunDownError(
                f"the run-down service at {where} failed ({_detail(response)}); try again in a few minutes"
            )
        if not 200 <= status < 300:
            raise RunDownError(f"the run-down service at {where} refused the request ({_detail(response)})")
        try:
            return response.json()
        except ValueError as exc:
            raise RunDownError(
                f"the run-down service at {where} answered HTTP {status} but not JSON"
            ) from exc

    # -- the signed URLs --------------------------------------------------------------------------------

    def _with_retries(self, what: str, attempt: Callable[[], TransferDone]) -> TransferDone:
        last = ""
        for number in range(self._attempts):
            if number:
                self._sleep(self._backoff.delay(number))
            try:
                return attempt()
            except _Retry as exc:
                last = str(exc)
        raise RunDownError(f"{what} failed after {self._attempts} attempts: {last}")

    def upload(
        self, url: str, local: rundown.LocalFile, index: int, count: int, on_event: OnEvent
    ) -> TransferDone:
        """PUT ``local`` to the signed ``url``, streamed with its exact size; retried on drops and 5xx.

        Raises:
            RunDownError: the upload still failed after the retries.
        """
        return self._with_retries(
            f"uploading {local.name}", lambda: self._upload_once(url, local, index, count, on_event)
        )

    def _upload_once(
        self, url: str, local: rundown.LocalFile, index: int, count: int, on_event: OnEvent
    ) -> TransferDone:
        on_event(TransferStarted("Uploading", index, count, local.name, 0, local.size))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(local.size)}
        try:
            response = self._http.put(url, headers=headers, content=_read_exactly(local, on_event))
        except httpx.TransportError as exc:
            raise _Retry(_transport_text(exc, url)) from exc
        if not 200 <= response.status_code < 300:
            _refuse_or_retry(f"uploading {local.name} to {redact(url)}", response)
        done = TransferDone(local.name, local.size)
        on_event(done)
        return done

    def download(
        self, url: str, name: str, destination: Path, index: int, count: int, on_event: OnEvent
    ) -> TransferDone:
        """GET the signed ``url`` into ``destination`` through its .part file (resumed with Range if present).

        On failure only the .part file is left (when it holds bytes), never a file at ``destination``.

        Raises:
            RunDownError: the transfer failed (the message says to run the command again to resume).
        """
        part = rundown.part_path(destination)
        try:
            return self._with_retries(
                f"downloading {name}",
                lambda: self._download_once(url, name, destination, part, index, count, on_event),
            )
        except RunDownError as exc:
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
            if part.exists():
                raise RunDownError(
                    f"{exc.message}; run the same command again to resume from {part}"
                ) from exc
            raise

    def _download_once(
        self, url: str, name: str, destination: Path, part: Path, index: int, count: int, on_event: OnEvent
    ) -> TransferDone:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                start, total = self._accept(response, name, url, part, offset)
                done = start
                on_event(TransferStarted("Downloading", index, count, name, start, total))
                # Chunks as they arrive (no re-chunking buffer, whose bytes a dropped connection would lose);
                # a 416 for a complete .part has an error page for a body: nothing of it belongs to the file.
                body = iter(()) if response.status_code == 416 else response.iter_bytes()
                try:
                    with part.open("ab" if start else "wb") as out:
                        for chunk in body:
                            out.write(chunk)
                            done += len(chunk)
                            on_event(TransferProgress(name, done, total))
                        out.flush()
                        os.fsync(out.fileno())
                except OSError as exc:
                    raise RunDownError(
                        f"writing {part}: {exc.strerror or exc}; free some space or fix the permissions "
                        "of --output-dir"
                    ) from exc
        except httpx.TransportError as exc:
            raise _Retry(_transport_text(exc, url)) from exc
        if total is not None and done != total:
            if done > total:
                part.unlink()
            raise _Retry(f"the download of {name} ended at {done} of {total} bytes")
        try:
            os.replace(part, destination)
        except OSError as exc:
            raise RunDownError(f"moving {part} to {destination}: {exc.strerror or exc}") from exc
        finished = TransferDone(name, done, destination, start)
        on_event(finished)
        return finished

    def _accept(
        self, response: httpx.Response, name: str, url: str, part: Path, offset: int
    ) -> tuple[int, int | None]:
        """Where the body starts and the file's full size, from the status and headers; or why not."""
        status = response.status_code
        content_range = rundown.parse_content_range(response.headers.get("content-range"))
        if status == 416 and offset:
            if content_range is not None and content_range.total == offset:
                # The .part file already holds everything: an earlier run died between the last byte and
                # the rename. An empty body finishes it.
                return offset, offset
            part.unlink()
            raise _Retry(f"{part} no longer matches the remote file; starting over")
        if status == 206:
            if content_range is None or content_range.start != offset:
                part.unlink(missing_ok=True)
                raise _Retry(f"the server resumed {name} at another offset; starting over")
            return offset, content_range.total
        if status == 200:
            length = response.headers.get("content-length")
            return 0, int(length) if length and length.isdigit() else None
        response.read()
        _refuse_or_retry(f"downloading {name} from {redact(url)}", response)


def _refuse_or_retry(action: str, response: httpx.Response) -> NoReturn:
    """A signed URL answered a failure: refused (401/403: expired or wrong), retried (429, 5xx) or final."""
    status = response.status_code
    if status in (401, 403):
        raise RunDownError(
            f"{action} was refused ({_detail(response)}); the signed URL "
            "may have expired: run again, or raise --expires-in-seconds"
        )
    if status >= 500 or status == 429:
        raise _Retry(_detail(response))
    raise RunDownError(f"{action} failed ({_detail(response)})")


def _read_exactly(local: rundown.LocalFile, on_event: OnEvent) -> Iterator[bytes]:
    done = 0
    on_event(TransferProgress(local.name, 0, local.size))
    try:
        with local.path.open("rb") as source:
            while done < local.size:
                chunk = source.read(min(CHUNK, local.size - done))
                if not chunk:
                    break
                done += len(chunk)
                yield chunk
                on_event(TransferProgress(local.name, done, local.size))
    except OSError as exc:
        raise RunDownError(
            f"reading {local.path}: {exc.strerror or exc}; check the file and run again"
        ) from exc
    if done != local.size:
        raise RunDownError(
            f"{local.path} shrank while it was uploaded ({done} of {local.size} bytes); run again"
        )


# -- the two commands' work ---------------------------------------------------------------------------


def upload_data(
    client: RunDownClient,
    run_id: str,
    files: Sequence[rundown.LocalFile],
    expires_in_seconds: int,
    on_event: OnEvent,
) -> list[TransferDone]:
    """Upload each file: a signed URL for it (its own nonce), then the PUT. Nothing is written locally."""
    done: list[TransferDone] = []
    for index, local in enumerate(files, 1):
        url = client.upload_url(run_id, local.name, expires_in_seconds)
        done.append(client.upload(url, local, index, len(files), on_event))
    return done


def download_results(
    client: RunDownClient,
    run_id: str,
    output_dir: Path,
    expires_in_seconds: int,
    overwrite: bool,
    on_event: OnEvent,
) -> list[TransferDone]:
    """Download every file of ``run_id`` under ``output_dir``; refuses to replace files without ``overwrite``.

    Checks run before any byte moves: the output directory is writable, and no target exists (or is a
    directory). Directories this call created are removed again when it fails and they are still empty.

    Raises:
        ConfigError: a target exists (without ``overwrite``) or is a directory, or the output directory is not
            writable.
        RunDownError: the service refused or a transfer failed.
    """
    created = _make_dirs(output_dir)
    try:
        _check_writable(output_dir)
        remote = client.download_urls(run_id, expires_in_seconds)
        targets = [(item, output_dir.joinpath(*item.path.parts)) for item in remote]
        for _, target in targets:
            if target.is_dir():
                raise ConfigError(f"{target} is a directory; remove it or choose another --output-dir")
            if target.exists() and not overwrite:
                raise ConfigError(
                    f"{target} already exists; pass --overwrite to replace it, or choose another --output-dir"
                )
        done: list[TransferDone] = []
        for index, (item, target) in enumerate(targets, 1):
            created += _make_dirs(target.parent)
            done.append(client.download(item.url, str(item.path), target, index, len(targets), on_event))
        return done
    except BaseException:
        for directory in reversed(created):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only empty ones go; a .part file keeps its directory
        raise


def _make_dirs(directory: Path) -> list[Path]:
    """``mkdir -p``, returning the directories it created (outermost first)."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise ConfigError(
                    f"--output-dir {directory}: {path} is a file; choose another directory"
                ) from None
        except OSError as exc:
            raise ConfigError(
                f"--output-dir {directory}: cannot create {path} ({exc.strerror}); choose a directory you "
                "can write to"
            ) from exc
    return list(reversed(missing))


def _check_writable(directory: Path) -> None:
    if not directory.is_dir():
        raise ConfigError(f"--output-dir {directory}: not a directory; choose another directory")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--output-dir {directory}: not writable ({exc.strerror}); choose a directory you can write to "
            "or fix its permissions"
        ) from exc
