"""The process runtime: the installed reference client as a supervised child process (no container engine).

ProcessRuntime implements the same ContainerRuntime protocol as DockerRuntime, so the supervisor drives it
unchanged: a "container" is a child process in its own session (``python -m psyche.client``, the image's
entrypoint), its "image" the installed psyche-run-manager[client], which must be the run's client_version
(clientpkg.require_installed). Differences from a container, each the nearest equivalent:

- Environment: the container's contract (the supervisor's whole client environment plus the image's
  PYTHONUNBUFFERED=1), on top of a short list of host variables a process needs (PATH, HOME, locale, CUDA
  paths); nothing else of the run-manager's own environment leaks in.
- /scratch: SCRATCH_DIR is given as CHECKPOINT_DIR (unless the .env sets it), and is the working directory.
- The wallet key file: a 0400 file in a private 0700 directory on /dev/shm (RAM), removed with the process;
  WALLET_PRIVATE_KEY_PATH names it.
- --no-gpus: CUDA_VISIBLE_DEVICES is empty (a container without the device request sees no GPU either).
- Stop: SIGTERM to the process group, SIGKILL after the grace period (``docker stop``); exit codes of a
  signal are reported as 128 + signal, as Docker does (143, 137).
- Orphans: the child gets SIGTERM when the run-manager dies (PR_SET_PDEATHSIG), so a killed run-manager leaves
  none behind; ``list_by_label`` therefore sees only this process's children, and ``status`` from another
  process sees no client.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psyche.errors import ContainerRuntimeError
from psyche.manager.clientpkg import DISTRIBUTION, REQUIREMENT, require_installed
from psyche.manager.images import ImageRef
from psyche.manager.launch import KEY_FILE_LABEL
from psyche.manager.logs import Stream
from psyche.manager.runtime import (
    SECRET_TMPFS_CANDIDATES,
    ContainerHandle,
    ContainerInfo,
    ContainerSpec,
    ProgressCallback,
    tmpfs_dir,
)

CLIENT_MODULE = "psyche.client"  # the image's ENTRYPOINT is python3 -m psyche.client
# Host variables a process needs that a container image would supply itself (never the run-manager's own).
HOST_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "CUDA_VISIBLE_DEVICES",
    "HF_HOME",
    "XDG_CACHE_HOME",
    "SSL_CERT_FILE",
)
IMAGE_ENV = {"PYTHONUNBUFFERED": "1"}  # docker/client.Dockerfile's ENV that changes behaviour
READ_SIZE = 65536
_PR_SET_PDEATHSIG = 1


def installed_version() -> str | None:
    """The installed psyche-run-manager's version with its client extra importable, or None."""
    from importlib import metadata
    from importlib.util import find_spec

    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    return version if find_spec("torch") is not None else None


@dataclass(frozen=True, slots=True)
class ClientProbe:
    """What the process runtime would run: the installed client, its torch, the CUDA devices torch sees."""

    installed: str | None
    torch: str | None = None
    cuda_devices: int = 0
    cuda: str | None = None  # torch's CUDA version, None for a CPU build
    problem: str | None = None  # why torch could not be asked


_PROBE = (
    "import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
    "'devices': torch.cuda.device_count() if torch.cuda.is_available() else 0}))"
)


def probe_client(python: str = sys.executable, timeout: float = 120.0) -> ClientProbe:
    """Ask ``python`` (the interpreter the client would run in) for torch and CUDA, in a child process:
    the run-manager itself never imports torch."""
    import json

    installed = installed_version()
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ClientProbe(installed, problem=f"{python}: {exc}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return ClientProbe(installed, problem=f"import torch failed: {last}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return ClientProbe(installed, str(answer["torch"]), int(answer["devices"]), answer["cuda"] or None)


def client_command(python: str, entrypoint: str | None, command: tuple[str, ...]) -> list[str]:
    """argv of the child: the image's entrypoint (``python -m psyche.client``) or --entrypoint, then args."""
    head = [entrypoint] if entrypoint is not None else [python, "-m", CLIENT_MODULE]
    return [*head, *command]


def child_environment(
    spec_env: Mapping[str, str],
    host: Mapping[str, str],
    *,
    scratch_dir: str | None,
    gpus: bool,
    secret_paths: Mapping[str, str],
) -> dict[str, str]:
    """The child's environment: host essentials, the image's ENV, then the container's contract (which wins).

    ``secret_paths`` maps each container path of a secret file to its host file; a variable naming the
    container path (WALLET_PRIVATE_KEY_PATH) is pointed at the host file.
    """
    env = {name: host[name] for name in HOST_VARIABLES if name in host}
    env.update(IMAGE_ENV)
    env.update(spec_env)
    if scratch_dir and "CHECKPOINT_DIR" not in spec_env:
        env["CHECKPOINT_DIR"] = scratch_dir
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    for name, value in list(env.items()):
        if value in secret_paths:
            env[name] = secret_paths[value]
    return env


def exit_status(returncode: int) -> int:
    """Popen's returncode as Docker reports a container's: a signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _docker_timestamp(when: float) -> bytes:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{stamp}000Z ".encode()


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: Linux SIGTERMs the child when the run-manager dies (looked up before fork)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no orphan protection
        return lambda: None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return arm


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    name: str
    labels: Mapping[str, str]
    secret_dir: str | None
    started: float = field(default_factory=time.time)
    last_output: float | None = None


class ProcessRuntime:
    """ContainerRuntime over child processes of this run-manager; see the module docstring."""

    def __init__(
        self,
        *,
        installed: str | None,
        environ: Mapping[str, str],
        python: str = sys.executable,
        tmpfs_candidates: tuple[str, ...] = SECRET_TMPFS_CANDIDATES,
    ) -> None:
        """``installed``: the client's version (``installed_version()``); ``environ``: the host's."""
        self._installed = installed
        self._host = dict(environ)
        self._python = python
        self._tmpfs = tmpfs_candidates
        self._children: dict[str, _Child] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Remove every child still known (the supervisor removes each one it started already)."""
        for child_id in list(self._children):
            self.remove(ContainerHandle(child_id, self._children[child_id].name))

    def __enter__(self) -> ProcessRuntime:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """One phrase for the main job's first line."""
        return f"process runtime: {self._python} -m {CLIENT_MODULE} from {REQUIREMENT} {self._installed}"

    # -- "images": the installed package ------------------------------------------------------------

    def version(self) -> str:
        """The installed client's version."""
        return f"{REQUIREMENT} {self._installed or 'not installed'}"

    def has_nvidia_runtime(self) -> bool:
        """No engine, no runtime entry: GPUs are the host's (CUDA through torch)."""
        return False

    def image_exists(self, image: str) -> bool:
        """True when the installed client is the version ``image`` names; else raises ClientNotInstalled."""
        prefix = DISTRIBUTION + ":"
        require_installed(image.removeprefix(prefix) if image.startswith(prefix) else image, self._installed)
        return True

    def pull(self, image: ImageRef, on_progress: ProgressCallback) -> None:
        """Nothing to pull: the installed client must already be the run's version."""
        del on_progress
        require_installed(image.client_version, self._installed)

    def image_labels(self, image: str) -> dict[str, str]:
        """The installed reference client reads WALLET_PRIVATE_KEY_PATH, as the labelled image does."""
        del image
        return {KEY_FILE_LABEL: "1"}

    # -- processes ------------------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> ContainerHandle:
        """Start the client in its own session; the key file (if any) lives on /dev/shm until removal.

        Raises:
            ContainerRuntimeError: the client process cannot be started (the hint names the package to
                install).
        """
        secret_dir, secret_paths = self._stage_secrets(spec.secret_files)
        argv = client_command(self._python, spec.entrypoint, spec.command)
        env = child_environment(
            spec.env, self._host, scratch_dir=spec.scratch_dir, gpus=spec.gpus, secret_paths=secret_paths
        )
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=spec.scratch_dir or None,
                start_new_session=True,  # its own process group: our terminal's Ctrl+C is the supervisor's
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            if secret_dir is not None:
                shutil.rmtree(secret_dir, ignore_errors=True)
            raise ContainerRuntimeError(
                f"starting the client failed: {argv[0]}: {exc.strerror or exc}",
                hint=f"check that {REQUIREMENT} is installed in this Python and SCRATCH_DIR exists",
            ) from exc
        child_id = str(proc.pid)
        name = spec.name or f"client-{child_id}"
        with self._lock:
            self._children[child_id] = _Child(proc, name, spec.labels, secret_dir)
        return ContainerHandle(child_id, name)

    def _stage_secrets(self, files: Mapping[str, bytes]) -> tuple[str | None, dict[str, str]]:
        if not files:
            return None, {}
        try:
            with open("/proc/self/mounts") as table:
                root = tmpfs_dir(table.read(), self._tmpfs)
        except OSError:
            root = None
        if root is None:
            raise ContainerRuntimeError(
                f"no tmpfs for the wallet key file ({', '.join(self._tmpfs)} is not a tmpfs)",
                hint="mount a tmpfs on /dev/shm, or put the key in the environment with --wallet-key-via env",
            )
        directory = tempfile.mkdtemp(prefix="psyche-run-manager-", dir=root)  # mode 0700
        paths = {}
        for n, (target, data) in enumerate(files.items()):
            source = os.path.join(directory, str(n))
            fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            paths[target] = source
        return directory, paths

    def _child(self, handle: ContainerHandle) -> _Child | None:
        with self._lock:
            return self._children.get(handle.id)

    def logs(self, handle: ContainerHandle, *, timestamps: bool = False) -> Iterator[tuple[Stream, bytes]]:
        """Both pipes, piece by piece as they arrive, until both end; Docker-style timestamps on request.

        Raises:
            ContainerRuntimeError: no such client process.
        """
        child = self._child(handle)
        if child is None:
            raise ContainerRuntimeError(f"reading the output of {handle.name} failed: no such client process")
        pieces: queue.Queue[tuple[Stream, bytes | None]] = queue.Queue(maxsize=256)

        def pump(stream: Stream, pipe: int) -> None:
            while block := os.read(pipe, READ_SIZE):
                pieces.put((stream, block))
            pieces.put((stream, None))

        pipes: list[tuple[Stream, int]] = []
        if child.proc.stdout is not None:
            pipes.append(("stdout", child.proc.stdout.fileno()))
        if child.proc.stderr is not None:
            pipes.append(("stderr", child.proc.stderr.fileno()))
        for stream, pipe in pipes:
            threading.Thread(target=pump, args=(stream, pipe), name=f"client-{stream}", daemon=True).start()
        at_line_start = {"stdout": True, "stderr": True}
        open_pipes = len(pipes)
        while open_pipes:
            stream, block = pieces.get()
            if block is None:
                open_pipes -= 1
                continue
            child.last_output = time.time()
            if timestamps:
                block, at_line_start[stream] = _stamped(block, at_line_start[stream], child.last_output)
            yield stream, block

    def wait(self, handle: ContainerHandle) -> int:
        """The exit code once the client ends (128 + N for a signal N).

        Raises:
            ContainerRuntimeError: no such client process.
        """
        child = self._child(handle)
        if child is None:
            raise ContainerRuntimeError(f"waiting for {handle.name} failed: no such client process")
        return exit_status(child.proc.wait())

    def stop(self, handle: ContainerHandle, grace: float) -> None:
        """SIGTERM to the client's process group, SIGKILL after ``grace`` seconds."""
        child = self._child(handle)
        if child is None or child.proc.poll() is not None:
            return
        _signal_group(child.proc.pid, signal.SIGTERM)
        try:
            child.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(child.proc.pid, signal.SIGKILL)

    def kill(self, handle: ContainerHandle) -> None:
        """SIGKILL to the client's process group now."""
        child = self._child(handle)
        if child is not None and child.proc.poll() is None:
            _signal_group(child.proc.pid, signal.SIGKILL)

    def remove(self, handle: ContainerHandle) -> None:
        """Kill whatever of the client's group is left, reap it, and delete its key file."""
        with self._lock:
            child = self._children.pop(handle.id, None)
        if child is None:
            return
        _signal_group(child.proc.pid, signal.SIGKILL)  # also helpers the client left in its group
        child.proc.wait()
        for pipe in (child.proc.stdout, child.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if child.secret_dir is not None:
            shutil.rmtree(child.secret_dir, ignore_errors=True)

    def list_by_label(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """This run-manager's client processes carrying every label (others cannot outlive their manager)."""
        with self._lock:
            children = list(self._children.items())
        found = []
        for child_id, child in children:
            if all(child.labels.get(k) == v for k, v in labels.items()):
                code = child.proc.poll()
                ran = time.time() - child.started
                up = f"Up {ran:.0f}s" if code is None else f"Exited ({exit_status(code)})"
                found.append(
                    ContainerInfo(child_id, child.name, up, dict(child.labels), DISTRIBUTION, child.started)
                )
        return found

    def last_log_time(self, container_id: str) -> float | None:
        """When the client last wrote a line (either stream), or None."""
        with self._lock:
            child = self._children.get(container_id)
        return None if child is None else child.last_output


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _stamped(block: bytes, at_line_start: bool, when: float) -> tuple[bytes, bool]:
    """``block`` with a Docker timestamp before each line starting in it; whether the next starts a line."""
    stamp = _docker_timestamp(when)
    lines = block.split(b"\n")
    out = [(stamp if at_line_start else b"") + lines[0]]
    out += [stamp + line if line else line for line in lines[1:]]
    return b"\n".join(out), block.endswith(b"\n")
