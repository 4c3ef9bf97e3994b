"""Render supervisor events for people: client logs verbatim on stdout, the manager's own lines on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, assert_never

from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

from psyche.manager import events as ev
from psyche.manager.launch import KEY_FILE_LABEL
from psyche.manager.ui import UI

MANAGER_PREFIX = "[run-manager]"


class PullDisplay:
    """Pull progress: a rich bar per layer on a terminal, a summary line every few seconds elsewhere."""

    def __init__(self, ui: UI, image: str, *, monotonic: Callable[[], float], every: float = 5.0) -> None:
        self._ui = ui
        self._image = image
        self._monotonic = monotonic
        self._every = every
        self._last_line = monotonic()
        self._layers: dict[str, tuple[int, int]] = {}
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if ui.interactive:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                console=ui.err,
                transient=True,
            )
            self._progress.start()

    def update(self, event: ev.PullProgress) -> None:
        """Record one layer's progress: move its bar, or print the summary line when one is due."""
        current = event.current or 0
        total = event.total or 0
        previous = self._layers.get(event.layer, (0, 0))
        if event.status in ("Pull complete", "Already exists", "Download complete"):
            total = total or previous[1]
            current = total
        self._layers[event.layer] = (max(current, previous[0]), max(total, previous[1]))
        if self._progress is not None:
            task = self._tasks.get(event.layer)
            if task is None:
                task = self._progress.add_task(f"{event.layer} {event.status}", total=total or None)
                self._tasks[event.layer] = task
            self._progress.update(
                task, completed=current, total=total or None, description=f"{event.layer} {event.status}"
            )
            return
        now = self._monotonic()
        if now - self._last_line >= self._every:
            self._last_line = now
            self._ui.info(f"{MANAGER_PREFIX} pulling {self._image}: {self.summary()}")

    def summary(self) -> str:
        """Layers done of layers seen, and megabytes so far of the total, e.g. ``2/5 layers, 3.1/40.0 MB``."""
        done = sum(1 for cur, tot in self._layers.values() if tot and cur >= tot)
        current = sum(cur for cur, _ in self._layers.values())
        total = sum(tot for _, tot in self._layers.values())
        return f"{done}/{len(self._layers)} layers, {current / 1e6:.1f}/{total / 1e6:.1f} MB"

    def close(self) -> None:
        """Take the bars off the terminal (a no-op without them, or when already closed)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _stamp(line: ev.LogLine) -> str:
    return "" if line.timestamp is None else line.timestamp.isoformat(timespec="milliseconds") + " "


class EventRenderer:
    """Turns supervisor events into output. Client log lines are written straight to ``stdout`` (no rich),
    one write and one flush per batch, so a chatty client never makes the manager fall behind and a
    quiet one's line shows at once."""

    def __init__(
        self,
        ui: UI,
        *,
        stdout: IO[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        timestamps: bool = False,
        process: bool = False,
    ) -> None:
        self._ui = ui
        # --runtime process: the "container" is a child process and its "image" the installed client.
        self._unit = "client process" if process else "container"
        self._process = process
        self._stdout = stdout if stdout is not None else sys.stdout
        self._monotonic = monotonic
        self._timestamps = timestamps
        self._pull: PullDisplay | None = None
        self.last_log_at: float | None = None
        self.log_lines = 0

    def _say(self, message: str) -> None:
        self._ui.info(f"{MANAGER_PREFIX} {message}")

    def __call__(self, event: ev.Event) -> None:
        """Show one event: client lines on stdout, pull progress on the bar, the rest as a manager line.

        The match names every member of ``ev.Event``: an event added there without a case here is a
        mypy error (``assert_never``), not a dataclass repr on the user's screen.
        """
        if not isinstance(event, ev.LogLine | ev.LogLines | ev.PullProgress | ev.PullStarted):
            self._close_pull()  # the pull is over once the manager says anything else
        unit = self._unit
        match event:
            case ev.LogLines():
                self._log(event.lines)
            case ev.LogLine():
                self._log((event,))
            case ev.PullProgress():
                if self._pull is not None:
                    self._pull.update(event)
            case ev.OrphanFound():
                self._warn(
                    f"found container {event.name} ({event.container_id[:12]}, {event.status}) "
                    "left by an earlier run-manager; removing it"
                )
            case ev.OrphanRemoved():
                self._say(f"removed leftover container {event.name}")
            case ev.ImageResolved():
                target = f"installed client {event.image}" if self._process else f"image {event.image}"
                self._say(f"run's client_version {event.client_version!r} -> {target}")
            case ev.UsingLocalImage():
                if self._process:
                    self._say(f"{event.image} is installed (python -m psyche.client)")
                else:
                    self._say(f"using local image {event.image} (no pull)")
            case ev.PullStarted():
                where = " in the background" if event.background else ""
                retry = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                self._say(f"pulling {event.image}{where}{retry}")
                self._close_pull()
                self._pull = PullDisplay(self._ui, event.image, monotonic=self._monotonic)
            case ev.PullDone():
                self._say(f"pulled {event.image} in {event.seconds:.1f}s")
            case ev.PullFailed():
                retry = f"; retrying in {event.retry_in:.0f}s" if event.retry_in is not None else ""
                self._warn(f"pull of {event.image} failed: {event.error}{retry}")
            case ev.WalletKeyDelivery():
                self._say(f"wallet key for {event.image}: {_key_delivery(event, process=self._process)}")
            case ev.ContainerStarted():
                what = f"pid {event.container_id}" if self._process else event.container_id[:12]
                version = event.client_version
                self._say(f"started {event.name} ({what}) from {event.image}, CLIENT_VERSION={version}")
            case ev.ContainerExited():
                self._say(
                    f"{unit} {event.container_id[:12]} exited with code {event.exit_code} "
                    f"after {event.seconds:.0f}s"
                )
            case ev.ContainerRemoved():
                self._say(f"removed {unit} {event.container_id[:12]}")
            case ev.VersionChanged():
                how = (
                    "on chain while the client runs" if event.live else "after the client reported a mismatch"
                )
                self._say(f"client_version changed {event.old!r} -> {event.new!r} ({how})")
            case ev.Restarting():
                self._warn(
                    f"restarting the client in {event.delay:g}s (attempt {event.attempt}): {event.reason}"
                )
            case ev.Stopping():
                cid, why = event.container_id[:12], event.reason
                self._say(f"stopping container {cid} ({why}; up to {event.grace:.0f}s)")
            case ev.Stalled():
                self._warn(
                    f"the client wrote no log line for {event.silent_for:.0f}s "
                    f"(--stall-timeout {event.timeout:g}): restarting it"
                )
            case ev.Killing():
                self._warn(f"killing container {event.container_id[:12]}")
            case ev.Notice():
                self._say(event.message)
            case ev.ChainUnreachable():
                self._warn(
                    "chain unreachable, retrying until it answers "
                    f"(next try in {event.retry_in:g}s): {event.reason}"
                )
            case ev.ChainReachable():
                self._say(f"chain reachable again after {event.seconds:.0f}s")
            case ev.GivingUp():
                # A warning: the one `Error:` line is the error the supervisor raises right after.
                self._warn(f"giving up: {event.reason}")
                if event.last_lines:
                    self._say(f"last {len(event.last_lines)} client log lines:")
                    for line in event.last_lines:
                        self._ui.info(f"  {line}")
            case ev.Stopped():
                self._say(f"stopped: {event.reason}")
            case ev.Finished():
                self._say(f"client finished with exit code {event.exit_code}")
            case _:
                assert_never(event)

    def _warn(self, message: str) -> None:
        self._ui.warning(f"{MANAGER_PREFIX} {message}")

    def _log(self, lines: tuple[ev.LogLine, ...]) -> None:
        if self._timestamps:
            text = "".join(f"{_stamp(line)}{line.text}\n" for line in lines)
        else:
            text = "".join([f"{line.text}\n" for line in lines])
        self._stdout.write(text)
        self._stdout.flush()  # once per batch: the end of what has arrived, so nothing waits on a buffer
        self.last_log_at = self._monotonic()
        self.log_lines += len(lines)

    def _close_pull(self) -> None:
        if self._pull is not None:
            self._pull.close()
            self._pull = None

    def close(self) -> None:
        """Stop the pull display, if one is showing."""
        self._close_pull()


def _key_delivery(event: ev.WalletKeyDelivery, *, process: bool) -> str:
    """How the wallet key reaches the client, and why that way (the setting, or what the image says)."""
    if process:
        if event.via == "file":
            how = "a 0400 file on /dev/shm (WALLET_PRIVATE_KEY_PATH), not in the client's environment"
        else:
            how = "RAW_WALLET_PRIVATE_KEY in the client's environment"
        why = (
            "the installed reference client reads the file"
            if event.chosen_by == "auto"
            else "--wallet-key-via"
        )
        return f"{how} ({why})"
    if event.via == "file":
        how = "a read-only file on a tmpfs mount, not in the container's environment"
        why = f"its label {KEY_FILE_LABEL}=1"
    else:
        how = "RAW_WALLET_PRIVATE_KEY in the container's environment"
        why = f"no {KEY_FILE_LABEL} label"
    return f"{how} ({why if event.chosen_by == 'auto' else '--wallet-key-via'})"
