"""download-results and upload-data: a run's files through the run-down service's signed URLs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from psyche.manager.app import App
from psyche.manager.commands.common import chain_command, emit, env_option, run_id_option
from psyche.manager.constants import DEFAULT_RUN_DOWN_SERVICE_URL
from psyche.manager.ui import UI

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from psyche.manager.rundown_client import RunDownClient, TransferDone, TransferEvent, TransferStarted

F = TypeVar("F", bound=Callable[..., Any])

MAX_EXPIRES_IN_SECONDS = 7 * 24 * 3600  # the longest a GCS V4 signed URL may live
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _service_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"not an http(s) URL: {value!r}", ctx, param)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise click.BadParameter(
            f"plain http to {parts.hostname} would expose the signed URLs; use https://", ctx, param
        )
    return value


def _transfer_options(f: F) -> F:
    f = env_option(
        "--service-url",
        env="RUN_DOWN_SERVICE_URL",
        default=DEFAULT_RUN_DOWN_SERVICE_URL,
        show_default=True,
        callback=_service_url,
        help="Base URL of the run-down service (plain http only to 127.0.0.1/localhost).",
    )(f)
    f = env_option(
        "--expires-in-seconds",
        env="EXPIRES_IN_SECONDS",
        type=click.IntRange(1, MAX_EXPIRES_IN_SECONDS),
        default=3600,
        show_default=True,
        help="How long the signed URLs stay valid.",
    )(f)
    return run_id_option(f)


def _client(app: App, service_url: str) -> RunDownClient:
    from psyche.manager.rundown_client import RunDownClient

    return RunDownClient(service_url, app.wallet.keypair())


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class TransferDisplay:
    """Transfer progress: a rich bar per file on a terminal; elsewhere a line per file and every 5 s."""

    def __init__(
        self, ui: UI, *, monotonic: Callable[[], float] = time.monotonic, every: float = 5.0
    ) -> None:
        self._ui = ui
        self._monotonic = monotonic
        self._every = every
        self._last_line = monotonic()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if ui.interactive:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=ui.err,
                transient=True,
            )
            self._progress.start()

    def __call__(self, event: TransferEvent) -> None:
        """Show one transfer event (a bar on a terminal; elsewhere a line, at most every few seconds)."""
        from psyche.manager.rundown_client import TransferDone, TransferStarted

        if isinstance(event, TransferStarted):
            self._started(event)
        elif isinstance(event, TransferDone):
            if self._progress is None:
                self._ui.success(f"{event.name} ({event.size} bytes)")
            else:
                task = self._tasks.get(event.name)
                if task is not None:
                    self._progress.update(task, completed=event.size, total=event.size)
        elif self._progress is not None:
            task = self._tasks.get(event.name)
            if task is not None:
                self._progress.update(task, completed=event.done, total=event.total)
        else:
            now = self._monotonic()
            if now - self._last_line >= self._every:
                self._last_line = now
                total = "?" if event.total is None else _mb(event.total)
                self._ui.info(f"  {event.name}: {_mb(event.done)} of {total}")

    def _started(self, event: TransferStarted) -> None:
        size = "" if event.total is None else f" ({_mb(event.total)})"
        where = f" at {_mb(event.offset)}" if event.offset else ""
        verb = "Resuming" if event.offset else event.verb
        if self._progress is None:
            self._ui.info(f"{verb} {event.index}/{event.count}: {event.name}{where}{size}")
            self._last_line = self._monotonic()
            return
        task = self._tasks.get(event.name)
        if task is None:
            self._tasks[event.name] = self._progress.add_task(
                event.name, total=event.total, completed=event.offset
            )
        else:
            self._progress.reset(task, total=event.total, completed=event.offset)

    def close(self) -> None:
        """Stop the progress display (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _run(app: App, work: Callable[[TransferDisplay], list[TransferDone]]) -> list[TransferDone]:
    display = TransferDisplay(app.ui)
    try:
        return work(display)
    finally:
        display.close()


@chain_command("download-results", wallet=True)
@_transfer_options
@env_option(
    "-o",
    "--output-dir",
    env="OUTPUT_DIR",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory the run's files are written to (created if missing; subdirectories kept).",
)
@click.option("--overwrite", is_flag=True, help="Replace files that already exist in --output-dir.")
def download_results(
    app: App,
    as_json: bool,
    run_id: str,
    expires_in_seconds: int,
    service_url: str,
    output_dir: Path,
    overwrite: bool,
) -> None:
    """Download a run's result files from the run-down service (resumable; never a half-written file)."""
    from psyche.manager import rundown_client

    with _client(app, service_url) as client:
        done = _run(
            app,
            lambda display: rundown_client.download_results(
                client, run_id, output_dir, expires_in_seconds, overwrite, display
            ),
        )
    total = sum(item.size for item in done)
    data = {
        "run_id": run_id,
        "output_dir": str(output_dir),
        "files": [
            {
                "path": item.name,
                "destination": str(item.destination),
                "bytes": item.size,
                "resumed_from": item.resumed_from,
            }
            for item in done
        ],
    }
    lines = [f"✓ Downloaded {len(done)} file(s) ({_mb(total)}) of run {run_id} to {output_dir}"]
    for item in done:
        resumed = f", resumed at {item.resumed_from}" if item.resumed_from else ""
        lines.append(f"  {item.destination} ({item.size} bytes{resumed})")
    emit(app, as_json, data, lines)


@chain_command("upload-data", wallet=True)
@_transfer_options
@click.option(
    "-p",
    "--path",
    type=click.Path(path_type=Path),
    required=True,
    help="A file, or a directory whose files are uploaded recursively (names relative to it).",
)
def upload_data(
    app: App, as_json: bool, run_id: str, expires_in_seconds: int, service_url: str, path: Path
) -> None:
    """Upload a file or a directory's files to a run through the run-down service's signed URLs."""
    from psyche.manager import rundown, rundown_client

    files = rundown.upload_plan(path)
    if not files:
        app.ui.info(f"No files found to upload under {path}")
        emit(app, as_json, {"run_id": run_id, "files": []}, [])
        return
    app.ui.info(f"Found {len(files)} file(s) to upload to run {run_id}")
    with _client(app, service_url) as client:
        done = _run(
            app,
            lambda display: rundown_client.upload_data(client, run_id, files, expires_in_seconds, display),
        )
    total = sum(item.size for item in done)
    data = {"run_id": run_id, "files": [{"name": item.name, "bytes": item.size} for item in done]}
    lines = [f"✓ Uploaded {len(done)} file(s) ({_mb(total)}) to run {run_id}"]
    lines += [f"  {item.name} ({item.size} bytes)" for item in done]
    emit(app, as_json, data, lines)
