"""FakeRuntime: an in-memory ContainerRuntime with scripted containers, a fake clock, and recorded calls."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from psyche.errors import GpuRuntimeMissing, ImagePullFailed
from psyche.manager.events import PullProgress
from psyche.manager.images import ImageRef
from psyche.manager.logs import Stream
from psyche.manager.runtime import ContainerHandle, ContainerInfo, ContainerRuntime, ContainerSpec
from tests.support.clock import FakeClock

SIGTERM_EXIT = 143
SIGKILL_EXIT = 137
# Real-time safety net: a scripted container that nobody stops ends after this, so a broken test fails
# instead of hanging.
_HANG_LIMIT = 10.0


@dataclass
class Script:
    """How one container behaves: its output, how long it runs (fake seconds), and its exit code.

    With ``until_stopped`` it runs until stop() (exit 143, unless ``ignores_term``) or kill() (137).
    ``on_running`` is called once, from the waiting thread, after the container started.
    """

    exit_code: int = 0
    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    runs_for: float = 1.0
    until_stopped: bool = False
    ignores_term: bool = False
    on_running: Callable[[], None] | None = None
    chunk_size: int = 7  # bytes per piece logs() yields
    unterminated: str = ""  # written to stdout after its lines, with no newline
    last_words: tuple[str, ...] = ()  # ``until_stopped``: stdout lines once it is stopped (a TERM trap's)
    output_hangs: bool = False  # its output streams stay open after the exit, until release_output is set


@dataclass
class FakeContainer:
    handle: ContainerHandle
    spec: ContainerSpec
    script: Script
    ended: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None


class FakeRuntime(ContainerRuntime):
    """ContainerRuntime in memory. ``calls`` records (method, subject) in order."""

    def __init__(
        self,
        clock: FakeClock,
        scripts: list[Script],
        *,
        images: set[str] | None = None,
        pull_failures: Mapping[str, int] | None = None,
        gpu_available: bool = True,
        orphans: list[ContainerInfo] | None = None,
        image_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.clock = clock
        self.scripts = list(scripts)
        self.images = set(images or ())
        self.pull_failures = dict(pull_failures or {})
        self.gpu_available = gpu_available
        self.calls: list[tuple[str, str]] = []
        self.running_during_pull: dict[str, list[str]] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.orphans = {o.id: o for o in orphans or []}
        self.specs: list[ContainerSpec] = []
        self.labels_of_images = {image: dict(labels) for image, labels in (image_labels or {}).items()}
        self._lock = threading.Lock()
        self._seq = 0
        self.release_output = threading.Event()  # ends the output of ``output_hangs`` containers

    def _record(self, method: str, subject: str) -> None:
        with self._lock:
            self.calls.append((method, subject))

    def live(self) -> list[str]:
        """Ids of containers that exist (not removed), orphans included."""
        return [*self.containers, *self.orphans]

    def finish(self, container_id: str, code: int) -> None:
        """Make an ``until_stopped`` container exit by itself with ``code``."""
        c = self.containers[container_id]
        c.exit_code = code
        c.ended.set()

    # -- ContainerRuntime ---------------------------------------------------------------------

    def version(self) -> str:
        return "fake"

    def has_nvidia_runtime(self) -> bool:
        return self.gpu_available

    def image_exists(self, image: str) -> bool:
        self._record("image_exists", image)
        return image in self.images

    def pull(self, image: ImageRef, on_progress: Callable[[PullProgress], None]) -> None:
        self._record("pull", image.reference)
        self.running_during_pull[image.reference] = [
            cid for cid, c in self.containers.items() if not c.ended.is_set()
        ]
        if self.pull_failures.get(image.reference, 0) > 0:
            self.pull_failures[image.reference] -= 1
            raise ImagePullFailed(f"pulling {image.reference} failed: manifest unknown")
        on_progress(PullProgress("aaa111", "Downloading", 1, 2))
        on_progress(PullProgress("aaa111", "Pull complete"))
        self.images.add(image.reference)

    def run(self, spec: ContainerSpec) -> ContainerHandle:
        self._record("run", spec.image)
        self.specs.append(spec)
        if spec.gpus and not self.gpu_available:
            # Like DockerRuntime: the created container is removed before the error is raised.
            raise GpuRuntimeMissing("the Docker engine cannot give the container GPUs")
        self._seq += 1
        handle = ContainerHandle(f"c{self._seq}", spec.name or f"fake-{self._seq}")
        self.containers[handle.id] = FakeContainer(handle, spec, self.scripts.pop(0))
        return handle

    def logs(self, handle: ContainerHandle, *, timestamps: bool = False) -> Iterator[tuple[Stream, bytes]]:
        c = self.containers[handle.id]
        streams: tuple[tuple[Stream, tuple[str, ...]], ...] = (
            ("stdout", c.script.stdout),
            ("stderr", c.script.stderr),
        )
        for stream, lines in streams:
            data = "".join(f"{line}\n" for line in lines).encode()
            if stream == "stdout":
                data += c.script.unterminated.encode()
            # Odd chunk sizes, so lines and UTF-8 characters straddle chunks as they do with Docker.
            size = c.script.chunk_size
            for start in range(0, len(data), size):
                yield stream, data[start : start + size]
        if c.script.until_stopped:
            c.ended.wait(_HANG_LIMIT)
            if c.script.last_words:
                yield "stdout", "".join(f"{line}\n" for line in c.script.last_words).encode()
        if c.script.output_hangs:
            self.release_output.wait(_HANG_LIMIT)

    def wait(self, handle: ContainerHandle) -> int:
        c = self.containers[handle.id]
        if c.script.on_running is not None:
            c.script.on_running()
        if c.script.until_stopped:
            if not c.ended.wait(_HANG_LIMIT):
                raise AssertionError(f"{handle.id} was never stopped")
            self.clock.advance(c.script.runs_for)
            assert c.exit_code is not None
            return c.exit_code
        self.clock.advance(c.script.runs_for)
        c.exit_code = c.script.exit_code
        c.ended.set()
        return c.exit_code

    def stop(self, handle: ContainerHandle, grace: float) -> None:
        self._record("stop", handle.id)
        c = self.containers.get(handle.id)
        if c is not None and not c.ended.is_set() and not c.script.ignores_term:
            c.exit_code = SIGTERM_EXIT
            c.ended.set()

    def kill(self, handle: ContainerHandle) -> None:
        self._record("kill", handle.id)
        c = self.containers.get(handle.id)
        if c is not None and not c.ended.is_set():
            c.exit_code = SIGKILL_EXIT
            c.ended.set()

    def remove(self, handle: ContainerHandle) -> None:
        self._record("remove", handle.id)
        c = self.containers.pop(handle.id, None)
        if c is not None and not c.ended.is_set():
            c.exit_code = SIGKILL_EXIT
            c.ended.set()
        self.orphans.pop(handle.id, None)

    def list_by_label(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        self._record("list_by_label", ",".join(f"{k}={v}" for k, v in labels.items()))
        found = [
            ContainerInfo(c.handle.id, c.handle.name, "running", dict(c.spec.labels))
            for c in self.containers.values()
        ]
        found += list(self.orphans.values())
        return [info for info in found if all(info.labels.get(k) == v for k, v in labels.items())]

    def last_log_time(self, container_id: str) -> float | None:
        return None

    def image_labels(self, image: str) -> dict[str, str]:
        return dict(self.labels_of_images.get(image, {}))
