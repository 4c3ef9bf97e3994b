"""Supervise the client container: resolve -> pull -> run -> stream -> wait -> decide, reporting events.

One thread (the caller's) makes every decision and emits every event; helper threads only read log
streams, wait for the exit, pull, or stop, and report back through one queue. See docs/supervisor.md.
"""

from __future__ import annotations

import enum
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from psyche.errors import ClientExited, ImagePullFailed, RunManagerError, VersionMismatch
from psyche.manager import events as ev
from psyche.manager import workers
from psyche.manager.chainwait import ChainWait, WaitStopped
from psyche.manager.images import ImageRef, image_for_version, validate_client_version
from psyche.manager.launch import (
    LABEL_CLIENT_VERSION,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_RUN_ID,
    VERSION_MISMATCH_EXIT,
    LaunchConfig,
    RestartPolicy,
    key_delivery,
)
from psyche.manager.logs import OutputDecoder
from psyche.manager.runtime import ContainerHandle, ContainerRuntime

__all__ = [
    "LABEL_CLIENT_VERSION",
    "LABEL_INSTANCE",
    "LABEL_MANAGED",
    "LABEL_RUN_ID",
    "VERSION_MISMATCH_EXIT",
    "LaunchConfig",
    "RestartPolicy",
    "Supervisor",
    "handle_signals",
]


@dataclass(frozen=True, slots=True)
class _Prepull:
    task: int  # 0 when nothing is pulled (--local)
    version: str
    image: ImageRef
    began: float


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: Literal["exited", "stopped", "swap"]
    code: int = 0
    seconds: float = 0.0
    version: str = ""
    image: ImageRef | None = None
    stalled: float | None = None  # seconds without output when the stall timeout stopped it


class _Phase(enum.Enum):
    """Where one container's watch stands."""

    RUNNING = "running"  # nothing asked it to stop
    STOPPING = "stopping"  # the manager sent the stop (see _Why); waiting for the exit
    DRAINING = "draining"  # it exited; reading the output that is left


class _Why(enum.Enum):
    """Why the manager stopped the container; a user's stop wins over the others."""

    USER = "user"
    SWAP = "swap"  # a new client_version is ready
    STALL = "stall"  # --stall-timeout: no log line for too long


@dataclass(slots=True)
class _Watching:
    """The state of one container's watch; only the deciding thread touches it."""

    handle: ContainerHandle
    image: ImageRef
    task: int  # the follow's task (output, exit and stop failures)
    started: float
    phase: _Phase = _Phase.RUNNING
    why: _Why | None = None  # set when the manager stopped it
    killed: bool = False
    prepull: _Prepull | None = None  # a new client_version being pulled while this one runs
    swap_to: _Prepull | None = None  # _Why.SWAP: the pulled version to start next
    last_output: float = field(init=False)  # when the last output arrived (or the start)
    stalled: float | None = None  # _Why.STALL: how long it had been silent
    ran_until_silent: float = 0.0  # _Why.STALL: from the start to its last line
    reading: bool = True  # the output streams have not ended yet
    code: int = 0  # DRAINING: the exit code
    seconds: float = 0.0  # DRAINING: how long it ran
    drain_until: float = 0.0  # DRAINING: give up on silent output streams at this time

    def __post_init__(self) -> None:
        self.last_output = self.started

    def tasks(self) -> tuple[int, int]:
        """The tasks whose messages concern this watch (-1: no pre-pull)."""
        return self.task, self.prepull.task if self.prepull is not None else -1

    def outcome(self) -> _Outcome:
        """What the exit means, once drained: a user's stop, a swap, a stall or a plain exit."""
        if self.why is _Why.USER:
            return _Outcome("stopped", self.code, self.seconds)
        if self.why is _Why.SWAP and self.swap_to is not None:
            return _Outcome("swap", self.code, self.seconds, self.swap_to.version, self.swap_to.image)
        if self.why is _Why.STALL:  # it ran, for the healthy_after rule, only until its last line
            return _Outcome("exited", self.code, self.ran_until_silent, stalled=self.stalled)
        return _Outcome("exited", self.code, self.seconds)


class Supervisor:
    """Keeps the run's client container running; ``run()`` returns 0 or raises a RunManagerError.

    Args:
        runtime: the container engine (DockerRuntime, or a fake in tests).
        launch: what every container gets (run id, env, flags).
        version_source: reads the run's client_version from chain; called at start and on every restart,
            and retried with ``policy.chain_retry`` backoff while no RPC endpoint answers (chainwait.py).
        on_event: receives every event, always from the thread that called ``run()``.
        policy: restart, backoff and stop timings.
        sleep, monotonic: time, injectable for tests.
    """

    def __init__(
        self,
        runtime: ContainerRuntime,
        launch: LaunchConfig,
        version_source: Callable[[], str],
        *,
        on_event: Callable[[ev.Event], None] = lambda _event: None,
        policy: RestartPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        poll_interval: float = 0.1,
    ) -> None:
        self._runtime = runtime
        self._launch = launch
        self._version_source = version_source
        self._emit = on_event
        self._policy = policy or RestartPolicy()
        self._sleep_fn = sleep
        self._monotonic = monotonic
        self._poll = poll_interval
        self._workers = workers.Workers(runtime, timestamps=launch.timestamps)
        self._stop = threading.Event()
        self._force = threading.Event()
        self._notice_lock = threading.Lock()
        self._notice: str | None = None
        self._containers = 0
        self._key_via = "env"  # how the last container got the wallet key; a change is announced
        self._last_lines: deque[str] = deque(maxlen=self._policy.last_lines)
        self._chain = ChainWait(self._policy.chain_retry, self._sleep, self._emit, monotonic=monotonic)

    # -- called from other threads ------------------------------------------------------------

    def notify_version_changed(self, version: str) -> None:
        """A watcher saw the run's client_version become ``version`` (thread-safe, never blocks)."""
        with self._notice_lock:
            self._notice = version.rstrip("\x00")
        self._workers.wake()

    def request_stop(self) -> None:
        """Stop gracefully; a second call kills. Safe in a signal handler: it only sets two Events."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until the client finishes (0), a stop is requested (0), or giving up (raises)."""
        policy = self._policy
        first = self._read_version()
        if first is None:
            return self._stopped()
        version = validate_client_version(first)  # refused before any Docker call
        self._remove_orphans()
        ready: ImageRef | None = None
        crashes = mismatches = 0
        while True:
            if self._stop.is_set():
                return self._stopped()
            image = self._resolve(version)
            if image != ready and not self._obtain(image):
                return self._stopped()
            ready = None
            outcome = self._watch(self._start(image), image)
            if outcome.kind == "stopped":
                return self._stopped()
            if outcome.kind == "swap":
                version, ready, crashes, mismatches = outcome.version, outcome.image, 0, 0
                continue
            code = outcome.code
            if code == 0 and outcome.stalled is None:
                self._emit(ev.Finished(0))
                return 0
            if outcome.seconds >= policy.healthy_after:
                crashes = mismatches = 0
            if code == VERSION_MISMATCH_EXIT and outcome.stalled is None:
                latest = self._read_version()
                if latest is None:
                    return self._stopped()
                if latest != version:
                    self._emit(ev.VersionChanged(version, latest, live=False))
                    version, mismatches = latest, 0
                    continue  # the fix is already on chain: no sleep
                mismatches += 1
                if mismatches > policy.max_version_retries:
                    self._give_up(f"exit code 10 on an unchanged client_version {version!r}", code)
                    raise VersionMismatch(
                        f"the client exited 10 (version mismatch) {mismatches} times while the run's "
                        f"client_version stayed {version!r}"
                    )
                delay = policy.backoff(mismatches)
                reason = f"exit code 10 (version mismatch) but client_version is still {version!r}"
                self._emit(ev.Restarting(mismatches, delay, reason))
            else:
                crashes += 1
                if crashes > policy.max_restarts:
                    self._give_up(f"{_exit_reason(outcome)}, {crashes} quick failures in a row", code)
                    raise ClientExited(
                        code,
                        f"the client kept failing: exit code {code}, {crashes} times in a row, each within "
                        f"{policy.healthy_after:g} s of starting",
                    )
                delay = policy.backoff(crashes)
                self._emit(ev.Restarting(crashes, delay, _exit_reason(outcome)))
            if not self._sleep(delay, version):
                return self._stopped()
            latest = self._read_version()
            if latest is None:
                return self._stopped()
            if latest != version:
                self._emit(ev.VersionChanged(version, latest, live=False))
                version, mismatches = latest, 0

    # -- steps ----------------------------------------------------------------------------------

    def _read_version(self) -> str | None:
        """The run's client_version, waiting out chain outages; None when a stop request came first."""
        try:
            return self._chain.read(self._version_source).rstrip("\x00")
        except WaitStopped:
            return None

    def _resolve(self, version: str) -> ImageRef:
        launch = self._launch
        image = image_for_version(
            version,
            local=launch.local,
            repository=launch.repository,
            local_repository=launch.local_repository,
        )
        self._emit(ev.ImageResolved(image.client_version, image.reference, image.local))
        return image

    def _remove_orphans(self) -> None:
        for found in self._runtime.list_by_label(self._launch.scope_labels()):
            if found.labels.get(LABEL_INSTANCE) == self._launch.instance_id:
                continue
            self._emit(ev.OrphanFound(found.id, found.name, found.status))
            self._runtime.remove(ContainerHandle(found.id, found.name))
            self._emit(ev.OrphanRemoved(found.id, found.name))

    def _obtain(self, image: ImageRef) -> bool:
        """Make ``image`` present; False when a stop request interrupted the pull."""
        if image.local:
            if not self._runtime.image_exists(image.reference):
                raise ImagePullFailed(
                    f"local image {image.reference} not found (--local skips the pull)",
                    hint="build or load that image, or run without --local",
                )
            self._emit(ev.UsingLocalImage(image.reference))
            return True
        backoff = self._policy.pull_retry
        for attempt in range(1, self._policy.pull_attempts + 1):
            self._emit(ev.PullStarted(image.reference, attempt))
            began = self._monotonic()
            task = self._workers.pull(image)
            done: workers.Done | None = None
            while done is None:
                if self._stop.is_set():
                    return False
                msg = self._next()
                if isinstance(msg, workers.Progress) and msg.task == task:
                    self._emit(msg.progress)
                elif isinstance(msg, workers.Done) and msg.task == task:
                    done = msg
            if done.error is None:
                self._emit(ev.PullDone(image.reference, self._monotonic() - began))
                return True
            error = done.error
            retry = isinstance(error, ImagePullFailed) and backoff.retries_after(attempt)
            delay = backoff.delay(attempt) if retry else None
            self._emit(ev.PullFailed(image.reference, attempt, str(error), delay))
            if delay is None:
                raise error
            if not self._sleep(delay):
                return False
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self, image: ImageRef) -> ContainerHandle:
        self._containers += 1
        key_file = self._key_file(image)
        handle = self._runtime.run(self._launch.spec_for(image, self._containers, key_file=key_file))
        self._emit(ev.ContainerStarted(handle.id, handle.name, image.reference, image.client_version))
        return handle

    def _watch(self, handle: ContainerHandle, image: ImageRef) -> _Outcome:
        """Stream, wait, and react to stop requests and version notices until the container is gone.

        A state machine (``_Watching``): RUNNING until the manager asks the container to stop (STOPPING)
        or it exits (DRAINING); DRAINING until both output streams have ended or stayed silent for
        ``log_drain_timeout``. Every time it reads comes from the injected clock.
        """
        started = self._monotonic()  # before the follow: its wait thread may move a fake clock
        watch = _Watching(handle, image, self._workers.follow(handle), started)
        self._last_lines.clear()
        output = OutputDecoder(timestamped=self._launch.timestamps)
        removed = False
        try:
            while not self._drained(watch):
                if watch.phase is not _Phase.DRAINING:
                    self._react(watch)
                msg = self._next()
                if msg is not None and not isinstance(msg, workers.Wake) and msg.task in watch.tasks():
                    self._receive(watch, msg, output)
            self._emit(ev.ContainerExited(handle.id, watch.code, watch.seconds))
            self._runtime.remove(handle)
            removed = True
            self._emit(ev.ContainerRemoved(handle.id))
        finally:
            if not removed:  # an error is on its way out: never leave the container behind
                self._quietly(self._runtime.remove, handle)
        return watch.outcome()

    def _drained(self, watch: _Watching) -> bool:
        """DRAINING is over: both streams ended, or none said anything for ``log_drain_timeout``."""
        return watch.phase is _Phase.DRAINING and (
            not watch.reading or self._monotonic() >= watch.drain_until
        )

    def _react(self, watch: _Watching) -> None:
        """Before the exit: act on a stop or kill request, a version notice, or a stall."""
        if self._stop.is_set() and watch.why is not _Why.USER:
            if watch.phase is _Phase.RUNNING:
                self._begin_stop(watch, _Why.USER, "stop requested")
            watch.why = _Why.USER  # also over a swap or stall already stopping it
        if self._force.is_set() and not watch.killed:
            watch.killed = True
            self._emit(ev.Killing(watch.handle.id))
            self._quietly(self._runtime.kill, watch.handle)
        if watch.phase is not _Phase.RUNNING:
            return
        notice = self._take_notice()
        if notice is None:
            pass
        elif notice == watch.image.client_version:
            watch.prepull = None  # back to the running version (or a pause): nothing to swap to
        elif watch.prepull is None or watch.prepull.version != notice:
            watch.prepull = self._prepare_swap(watch.image.client_version, notice)
            if watch.prepull is not None and watch.prepull.task == 0:  # --local: nothing to pull
                watch.swap_to = watch.prepull
                self._begin_stop(watch, _Why.SWAP, f"client_version changed to {notice!r}")
        stall_after = self._policy.stall_timeout
        if stall_after is not None and watch.phase is _Phase.RUNNING:
            silent = self._monotonic() - watch.last_output
            if silent >= stall_after:
                # For the healthy_after rule it ran only until its last line (not its TERM words).
                watch.stalled, watch.ran_until_silent = silent, watch.last_output - watch.started
                self._emit(ev.Stalled(watch.handle.id, silent, stall_after))
                self._begin_stop(watch, _Why.STALL, f"no log line for {silent:.0f}s")

    def _receive(self, watch: _Watching, msg: workers.Message, output: OutputDecoder) -> None:
        """One helper-thread message for this container (or its pre-pull)."""
        if isinstance(msg, workers.Output):
            watch.last_output = self._monotonic()
            self._log(output.feed_all((m.stream, m.data) for m in self._workers.batch(msg)))
            if (
                watch.phase is _Phase.DRAINING
            ):  # still catching up after the exit: an idle timeout, not a total
                watch.drain_until = watch.last_output + self._policy.log_drain_timeout
        elif isinstance(msg, workers.OutputEnd):
            watch.reading = False
            self._log(output.finish())
            if msg.error is not None:
                self._emit(ev.Notice(f"lost the client's output: {msg.error}"))
        elif isinstance(msg, workers.Exit):
            if msg.error is not None:
                raise msg.error
            now = self._monotonic()
            watch.code, watch.seconds = msg.code, now - watch.started
            watch.phase, watch.drain_until = _Phase.DRAINING, now + self._policy.log_drain_timeout
        elif isinstance(msg, workers.Progress):
            self._emit(msg.progress)
        elif isinstance(msg, workers.Done) and watch.prepull is not None and msg.task == watch.prepull.task:
            pulled, watch.prepull = watch.prepull, None
            if msg.error is not None:
                self._emit(ev.PullFailed(pulled.image.reference, 1, str(msg.error), None))
                self._emit(ev.Notice(f"keeping client_version {watch.image.client_version!r} running"))
            elif watch.phase is _Phase.RUNNING:
                self._emit(ev.PullDone(pulled.image.reference, self._monotonic() - pulled.began))
                watch.swap_to = pulled
                self._begin_stop(watch, _Why.SWAP, f"client_version changed to {pulled.version!r}")
        elif isinstance(msg, workers.Done) and msg.error is not None:  # the stop request failed
            self._emit(ev.Notice(f"stopping {watch.handle.name} failed: {msg.error}"))

    def _key_file(self, image: ImageRef) -> bool:
        """Whether ``image`` gets the wallet key as a file (--wallet-key-via, the image's label for auto)."""
        via = self._launch.wallet_key_via
        labels = self._runtime.image_labels(image.reference) if via == "auto" else {}
        chosen = key_delivery(via, labels)
        if chosen != self._key_via:
            self._key_via = chosen
            self._emit(ev.WalletKeyDelivery(chosen, image.reference, via))
        return chosen == "file"

    def _prepare_swap(self, old: str, new: str) -> _Prepull | None:
        """Resolve ``new`` and start pulling it while the old client runs; task 0 means nothing to pull."""
        launch = self._launch
        try:
            image = image_for_version(
                new,
                local=launch.local,
                repository=launch.repository,
                local_repository=launch.local_repository,
            )
        except RunManagerError as exc:
            self._emit(ev.Notice(f"ignoring the client_version change: {exc}"))
            return None
        self._emit(ev.VersionChanged(old, new, live=True))
        self._emit(ev.ImageResolved(image.client_version, image.reference, image.local))
        if image.local:
            if not self._runtime.image_exists(image.reference):
                self._emit(ev.Notice(f"local image {image.reference} not found; keeping the running client"))
                return None
            self._emit(ev.UsingLocalImage(image.reference))
            return _Prepull(0, new, image, self._monotonic())
        self._emit(ev.PullStarted(image.reference, 1, background=True))
        return _Prepull(self._workers.pull(image), new, image, self._monotonic())

    def _begin_stop(self, watch: _Watching, why: _Why, reason: str) -> None:
        """RUNNING -> STOPPING: SIGTERM now, SIGKILL after the grace period (in a helper thread)."""
        grace = self._policy.stop_grace
        self._emit(ev.Stopping(watch.handle.id, reason, grace))
        self._workers.stop(watch.task, watch.handle, grace)
        watch.phase, watch.why = _Phase.STOPPING, why

    def _log(self, lines: tuple[ev.LogLine, ...]) -> None:
        if lines:
            self._last_lines.extend(line.text for line in lines[-self._policy.last_lines :])
            self._emit(ev.LogLines(lines))

    def _give_up(self, reason: str, code: int) -> None:
        self._emit(ev.GivingUp(reason, code, tuple(self._last_lines)))

    def _stopped(self) -> int:
        self._emit(ev.Stopped("stop requested"))
        return 0

    def _sleep(self, delay: float, version: str | None = None) -> bool:
        """Sleep ``delay`` on the injected clock; False if a stop came first.

        A pending notice of a client_version other than ``version`` ends the sleep early: the fix is on chain.
        """
        deadline = self._monotonic() + delay
        while not self._stop.is_set():
            left = deadline - self._monotonic()
            with self._notice_lock:
                moved = version is not None and self._notice is not None and self._notice != version
            if left <= 0 or moved:
                return True
            self._sleep_fn(min(left, self._poll))
        return False

    # -- helper threads -------------------------------------------------------------------------

    def _next(self) -> workers.Message | None:
        return self._workers.next(self._poll)

    def _take_notice(self) -> str | None:
        with self._notice_lock:
            notice, self._notice = self._notice, None
        return notice

    def _quietly(self, action: Callable[[ContainerHandle], None], handle: ContainerHandle) -> None:
        try:
            action(handle)
        except RunManagerError as exc:
            self._emit(ev.Notice(f"{action.__name__} {handle.name} failed: {exc}"))


def _exit_reason(outcome: _Outcome) -> str:
    if outcome.stalled is not None:
        return f"no log line for {outcome.stalled:.0f}s (stall timeout), exit code {outcome.code}"
    return f"exit code {outcome.code}"


@contextmanager
def handle_signals(
    request_stop: Callable[[], None], signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """Route Ctrl+C and SIGTERM to ``request_stop`` (main thread only); restore the old handlers after."""
    previous = {sig: signal.signal(sig, lambda _signum, _frame: request_stop()) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
