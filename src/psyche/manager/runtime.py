"""The container-engine seam: the ContainerRuntime protocol and DockerRuntime (the only docker importer).

DockerRuntime drives Docker and Podman alike through the Docker Engine API; engines.py decides what differs
(which socket, and Podman's own create call for CDI GPUs).

docker (and requests, which it uses) are imported lazily, inside DockerRuntime, so that
``run-manager --help`` and every pure module stay fast and work without an engine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from psyche.errors import (
    ContainerRuntimeError,
    DockerUnavailable,
    GpuRuntimeMissing,
    ImagePullFailed,
    RunManagerError,
)
from psyche.manager.engineapi import MIN_API_VERSION, negotiate
from psyche.manager.engines import (
    PODMAN_CREATE_PATH,
    BindMount,
    EngineId,
    candidate_hosts,
    choose_host,
    docker_device_requests,
    identify,
    podman_create_body,
)
from psyche.manager.enginestream import EngineAddress, engine_address, stream_get
from psyche.manager.events import PullProgress
from psyche.manager.images import ImageRef
from psyche.manager.logs import (
    Demuxer,
    Frame,
    Stream,
    frames,
    frames_after,
    parse_log_line,
    stream_of,
    strip_timestamp,
)

ProgressCallback = Callable[[PullProgress], None]

DOCKER_UNAVAILABLE = "Failed to execute docker command. Is Docker installed and accessible?"
GPU_MISSING = (
    "the Docker engine cannot give the container GPUs: "
    "install the NVIDIA Container Toolkit, run 'nvidia-ctk runtime configure --runtime=docker' "
    "and restart Docker"
)
GPU_MISSING_PODMAN = (
    "the Podman engine cannot give the container GPUs: install the NVIDIA Container Toolkit and "
    "generate its CDI spec with 'nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml'"
)
DOCKER_RUN_FAILED = "Docker run failed"
INFINIBAND = "/dev/infiniband"
SCRATCH_TARGET = "/scratch"
# Where the wallet key file is staged on the host before its bind mount: RAM-backed, so never on disk.
SECRET_TMPFS_CANDIDATES = ("/dev/shm",)
# How much of the log's tail a catch-up reads, growing until it finds the last line the follow gave.
CATCH_UP_TAILS = ("1024", "65536", "all")

# Start errors that mean "no usable NVIDIA Container Toolkit", as the 20.10 engine words them.
_GPU_ERRORS = (
    "could not select device driver",
    "unknown or invalid runtime name: nvidia",
    "nvidia-container-cli",
    "unresolvable CDI devices",  # Podman: no CDI spec names nvidia.com/gpu=all
)


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything needed to start one client container. ``env`` holds secrets, so it is not in the repr."""

    image: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Container path -> contents: each becomes a read-only bind mount of a file on the host's tmpfs, which is
    # unlinked right after the start (the mount keeps it readable), so it is never on disk or in inspect.
    secret_files: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    gpus: bool = True
    privileged: bool = False
    entrypoint: str | None = None
    command: tuple[str, ...] = ()
    scratch_dir: str | None = None
    shm_size: str = "1g"
    devices: tuple[str, ...] = ()
    network_mode: str = "host"
    name: str | None = None
    runtime: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerHandle:
    """A started container."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A container found by label (running or not)."""

    id: str
    name: str
    status: str
    labels: Mapping[str, str]
    image: str = ""  # the image reference it was created from ("" when the engine did not say)
    created: float | None = None  # unix seconds; our containers start right after they are created


class ContainerRuntime(Protocol):
    """What the supervisor needs from a container engine; every method raises ContainerRuntimeError kinds."""

    def version(self) -> str:
        """The engine's version; raises DockerUnavailable when it cannot be reached."""
        ...

    def has_nvidia_runtime(self) -> bool:
        """Whether the engine lists an ``nvidia`` runtime (informational: --gpus may work without it)."""
        ...

    def image_exists(self, image: str) -> bool:
        """Whether ``image`` (name:tag, name@digest or image ID) is present in the engine."""
        ...

    def pull(self, image: ImageRef, on_progress: ProgressCallback) -> None:
        """Pull ``image``, reporting each engine progress message; raises ImagePullFailed."""
        ...

    def run(self, spec: ContainerSpec) -> ContainerHandle:
        """Create and start a container; a container that fails to start is removed before raising."""
        ...

    def logs(self, handle: ContainerHandle, *, timestamps: bool = False) -> Iterator[tuple[Stream, bytes]]:
        """Follow stdout and stderr from the first byte until the container stops.

        Yields ``(stream, bytes)`` in the order the engine has them; the bytes are arbitrary pieces
        of that stream (lines and UTF-8 characters may straddle them).
        """
        ...

    def wait(self, handle: ContainerHandle) -> int:
        """Block until the container stops; its exit code."""
        ...

    def stop(self, handle: ContainerHandle, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; a container already gone is not an error."""
        ...

    def kill(self, handle: ContainerHandle) -> None:
        """SIGKILL now; a container already stopped or gone is not an error."""
        ...

    def remove(self, handle: ContainerHandle) -> None:
        """Remove the container (forcibly); a container already gone is not an error."""
        ...

    def list_by_label(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container, running or not, that carries all of ``labels``."""
        ...

    def image_labels(self, image: str) -> dict[str, str]:
        """The labels of a present image (``{}`` when it has none)."""
        ...

    def last_log_time(self, container_id: str) -> float | None:
        """Unix time of the container's last log line (either stream), or None when it wrote none."""
        ...


def engine_is_local(environ: Mapping[str, str]) -> bool:
    """Whether DOCKER_HOST names an engine on this machine (a unix socket), which can bind-mount our files.

    Without DOCKER_HOST every candidate (Docker's and Podman's sockets) is a unix socket.
    """
    host = environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    return host.startswith("unix://")


def socket_answers(host: str, timeout: float = 1.0) -> bool:
    """Whether a unix-socket engine accepts a connection (discovery; a TCP host is not probed: True)."""
    if not host.startswith("unix://"):
        return True
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            probe.connect(host.removeprefix("unix://"))
    except OSError:
        return False
    return True


def tmpfs_dir(mounts: str, candidates: tuple[str, ...] = SECRET_TMPFS_CANDIDATES) -> str | None:
    """The first candidate directory whose filesystem is a tmpfs, given /proc/self/mounts' text."""
    table = [line.split() for line in mounts.splitlines()]
    for candidate in candidates:
        best = max(
            (f for f in table if len(f) > 2 and (candidate + "/").startswith(f[1].rstrip("/") + "/")),
            key=lambda f: len(f[1]),
            default=None,
        )
        if best is not None and best[2] == "tmpfs":
            return candidate
    return None


def host_devices(exists: Callable[[str], bool] = os.path.exists) -> tuple[str, ...]:
    """The host devices to pass through: /dev/infiniband when this host has it."""
    return (INFINIBAND,) if exists(INFINIBAND) else ()


DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def _probe_unix_socket(host: str) -> None:
    """Connect to a unix-socket engine ourselves first: docker-py leaks the socket of a failed connect
    (its connection object never closes it), which surfaces later as a ResourceWarning."""
    if not host.startswith("unix://"):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5.0)
        probe.connect(host.removeprefix("unix://"))


def _explanation(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())


class DockerRuntime:
    """ContainerRuntime over docker-py; docker and requests exceptions become psyche.errors here only."""

    def __init__(self, client: Any = None, *, environ: Mapping[str, str] | None = None) -> None:
        """Connect to the engine named by ``environ`` (DOCKER_HOST, ...) or use ``client``.

        Raises:
            DockerUnavailable: the SDK is missing or no engine answers.
            ContainerRuntimeError: the engine's API versions and ours do not overlap (one line, both ranges).
        """
        try:
            import docker
            import requests
        except ImportError as exc:  # pragma: no cover - docker is a hard dependency
            raise DockerUnavailable(DOCKER_UNAVAILABLE, hint="install the 'docker' Python package") from exc
        sdk: Any = docker  # untyped package
        self._docker: Any = sdk
        self._foreign: tuple[type[BaseException], ...] = (
            sdk.errors.DockerException,
            requests.exceptions.RequestException,
        )
        self._connection_errors: tuple[type[BaseException], ...] = (requests.exceptions.ConnectionError,)
        source = environ if environ is not None else os.environ
        self._environ = source
        self._tried = candidate_hosts(source)
        self._host: str | None = None  # the engine _connect chose; None for a client passed in
        self._address: EngineAddress | None = None  # where the log reader connects (_log_address)
        self._engine = EngineId("docker", "unknown")
        owns_client = client is None
        if client is None:
            client = self._connect(source)
        self._client: Any = client
        self._owns_client = owns_client
        self._local = engine_is_local(source)

    def _connect(self, environ: Mapping[str, str]) -> Any:
        """A client speaking the API version negotiated with the engine (engineapi.negotiate).

        Docker 29+ refuses API versions below 1.44, 20.10 speaks at most 1.41: no pinned version serves
        both. A pinned version makes from_env() send nothing, so the one probe is our unversioned
        ``GET /version``, and its client is closed whatever happens (docker-py's own version="auto" probe
        leaked the socket of a failed connect, as did its connection object: hence the unix probe first).
        """
        sdk = self._docker
        host = choose_host(environ, socket_answers)  # DOCKER_HOST, else Docker's or Podman's socket
        self._host = host
        env = {**environ, "DOCKER_HOST": host}
        probe: Any = None
        failures: tuple[type[BaseException], ...] = (*self._foreign, OSError)
        try:
            _probe_unix_socket(host)
            probe = sdk.from_env(environment=env, version=MIN_API_VERSION)
            answer = probe.api.version(api_version=False)
        except failures as exc:
            raise self._unavailable(exc) from exc
        finally:
            if probe is not None:
                probe.close()
        answer = answer if isinstance(answer, dict) else {}
        self._engine = identify(answer)
        chosen = negotiate(answer, str(sdk.constants.DEFAULT_DOCKER_API_VERSION))
        return sdk.from_env(environment=env, version=chosen)

    def close(self) -> None:
        """Close the SDK client's connections if this runtime created the client."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> DockerRuntime:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- translation ---------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> DockerUnavailable:
        if len(self._tried) == 1:
            where = self._tried[0]
        else:  # discovery: Docker's socket, then Podman's; name them all
            where = f"{', '.join(self._tried)} (DOCKER_HOST is unset)"
        return DockerUnavailable(
            DOCKER_UNAVAILABLE,
            hint=f"no engine answered at {where} ({_explanation(exc)}); start Docker (or Podman's "
            "service: systemctl start podman.socket), check DOCKER_HOST, "
            "and make sure your user may use the socket (the 'docker' group)",
        )

    def _translate(self, exc: BaseException, action: str) -> RunManagerError:
        if isinstance(exc, self._connection_errors) or (
            isinstance(exc, self._docker.errors.DockerException)
            and not isinstance(exc, self._docker.errors.APIError)
            and "connection" in str(exc).lower()
        ):
            return self._unavailable(exc)
        return ContainerRuntimeError(f"{action} failed: {_explanation(exc)}")

    def _raise(self, exc: BaseException, action: str) -> NoReturn:
        raise self._translate(exc, action) from exc

    def _is_not_found(self, exc: BaseException) -> bool:
        return isinstance(exc, self._docker.errors.NotFound)

    def _is_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, self._docker.errors.APIError) and exc.status_code == 409

    # -- engine ---------------------------------------------------------------------------------

    def version(self) -> str:
        """The engine's version string."""
        try:
            return str(self._client.version().get("Version", "unknown"))
        except self._foreign as exc:
            raise self._unavailable(exc) from exc

    def engine(self) -> EngineId:
        """Docker or Podman, and its version (from the connect's ``GET /version``)."""
        return self._engine

    def api_version(self) -> str:
        """The Engine API version this runtime speaks (negotiated at connect time)."""
        return str(self._client.api.api_version)

    def has_nvidia_runtime(self) -> bool:
        """Whether ``docker info`` lists an ``nvidia`` runtime."""
        try:
            runtimes = self._client.api.info().get("Runtimes") or {}
        except self._foreign as exc:
            self._raise(exc, "docker info")
        return "nvidia" in runtimes

    def data_root(self) -> str | None:
        """Where the engine keeps images (``docker info``'s DockerRootDir), for the doctor's disk check."""
        try:
            root = self._client.api.info().get("DockerRootDir")
        except self._foreign as exc:
            self._raise(exc, "docker info")
        return str(root) if root else None

    # -- images ---------------------------------------------------------------------------------

    def image_exists(self, image: str) -> bool:
        """Whether the engine has ``image``."""
        try:
            self._client.api.inspect_image(image)
        except self._foreign as exc:
            if self._is_not_found(exc):
                return False
            self._raise(exc, f"inspecting image {image}")
        return True

    def pull(self, image: ImageRef, on_progress: ProgressCallback) -> None:
        """Pull ``image``; an error the registry reports mid-stream fails the pull too."""
        if image.repository is None:
            raise ImagePullFailed(f"cannot pull {image.reference}: a bare image ID exists only locally")
        try:
            events = self._client.api.pull(image.repository, tag=image.tag, stream=True, decode=True)
            for event in events:
                if not isinstance(event, dict):
                    continue
                error = event.get("error") or (event.get("errorDetail") or {}).get("message")
                if error:
                    raise ImagePullFailed(f"pulling {image.reference} failed: {' '.join(str(error).split())}")
                detail = event.get("progressDetail") or {}
                on_progress(
                    PullProgress(
                        layer=str(event.get("id", "")),
                        status=str(event.get("status", "")),
                        current=_int_or_none(detail.get("current")),
                        total=_int_or_none(detail.get("total")),
                    )
                )
        except self._foreign as exc:
            translated = self._translate(exc, f"pulling {image.reference}")
            if isinstance(translated, DockerUnavailable):
                raise translated from exc
            raise ImagePullFailed(
                f"pulling {image.reference} failed: {_explanation(exc)}",
                hint="check that this client_version exists in the registry and that it is reachable",
            ) from exc

    # -- containers -----------------------------------------------------------------------------

    def _create_kwargs(self, spec: ContainerSpec, secret_mounts: list[BindMount]) -> dict[str, Any]:
        types = self._docker.types
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "command": list(spec.command) or None,
            "environment": dict(spec.env),
            "labels": dict(spec.labels),
            "network_mode": spec.network_mode,
            "shm_size": spec.shm_size,
            "privileged": spec.privileged,
        }
        if spec.name:
            kwargs["name"] = spec.name
        if spec.entrypoint is not None:
            kwargs["entrypoint"] = [spec.entrypoint]  # like --entrypoint: one executable, args in command
        if spec.gpus:
            kwargs["device_requests"] = [types.DeviceRequest(**r) for r in docker_device_requests(spec.gpus)]
        if spec.devices:
            kwargs["devices"] = [f"{d}:{d}:rwm" for d in spec.devices]
        mounts = [
            types.Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
            for m in _mounts(spec, secret_mounts)
        ]
        if mounts:
            kwargs["mounts"] = mounts
        if spec.runtime:
            kwargs["runtime"] = spec.runtime
        return kwargs

    def _start_error(self, exc: BaseException, spec: ContainerSpec) -> RunManagerError:
        text = _explanation(exc)
        if any(marker in text for marker in _GPU_ERRORS):
            missing = GPU_MISSING_PODMAN if self._engine.kind == "podman" else GPU_MISSING
            return GpuRuntimeMissing(f"{missing} (engine said: {text})")
        translated = self._translate(exc, f"starting a container from {spec.image}")
        if isinstance(translated, DockerUnavailable):
            return translated
        # The reference's wording for a refused `docker run` (client-contract 1.6), with the engine's reason.
        return ContainerRuntimeError(
            f"{DOCKER_RUN_FAILED}: {text}",
            hint=f"the engine refused to create or start a container from {spec.image}: check SCRATCH_DIR "
            "(the directory must exist), the devices and flags passed, and `run-manager doctor`",
        )

    def run(self, spec: ContainerSpec) -> ContainerHandle:
        """Create and start the container, removing it again if the start fails (docker-py leaves it)."""
        with self._staged_secrets(spec) as secret_mounts:
            return self._create_and_start(spec, secret_mounts)

    @contextlib.contextmanager
    def _staged_secrets(self, spec: ContainerSpec) -> Iterator[list[BindMount]]:
        """Write ``spec.secret_files`` to a private directory on the host's tmpfs, as read-only bind mounts.

        The directory is removed when the block ends (the container started, or failed to): a started
        container's bind mount keeps its file readable, so the key exists only in RAM, inside the container.
        The archive API cannot do this: on Docker 20.10 it writes through a tmpfs mount into the container's
        layer, on disk (measured; docs/supervisor.md).
        """
        if not spec.secret_files:
            yield []
            return
        if not self._local:
            raise ContainerRuntimeError(
                "the wallet key file needs the Docker engine on this machine (DOCKER_HOST is no unix socket)",
                hint="run on the engine's host, or pass the key in the environment with --wallet-key-via env",
            )
        try:
            with open("/proc/self/mounts") as table:
                root = tmpfs_dir(table.read())
        except OSError:
            root = None
        if root is None:
            raise ContainerRuntimeError(
                f"no tmpfs for the wallet key file ({', '.join(SECRET_TMPFS_CANDIDATES)} is not a tmpfs)",
                hint="mount a tmpfs on /dev/shm, or put the key in the environment with --wallet-key-via env",
            )
        directory = tempfile.mkdtemp(prefix="psyche-run-manager-", dir=root)  # mode 0700
        try:
            mounts = []
            for n, (target, data) in enumerate(spec.secret_files.items()):
                source = os.path.join(directory, str(n))
                fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                mounts.append(BindMount(source, target, read_only=True))
            yield mounts
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _create_and_start(self, spec: ContainerSpec, secret_mounts: list[BindMount]) -> ContainerHandle:
        try:
            if self._engine.kind == "podman":
                handle = self._podman_create(spec, secret_mounts)
            else:
                container = self._client.containers.create(**self._create_kwargs(spec, secret_mounts))
                handle = ContainerHandle(id=str(container.id), name=str(container.name))
        except self._foreign as exc:
            if isinstance(exc, self._docker.errors.ImageNotFound):
                raise ContainerRuntimeError(f"image {spec.image} is not present in the engine") from exc
            raise self._start_error(exc, spec) from exc
        try:
            self._client.api.start(handle.id)
        except self._foreign as exc:
            error = self._start_error(exc, spec)
            self.remove(handle)
            raise error from exc
        return handle

    def _podman_create(self, spec: ContainerSpec, secret_mounts: list[BindMount]) -> ContainerHandle:
        """Create through Podman's own API, which takes CDI devices (GPUs); engines.py says why."""
        body = podman_create_body(
            image=spec.image,
            env=spec.env,
            labels=spec.labels,
            name=spec.name,
            entrypoint=spec.entrypoint,
            command=spec.command,
            network_mode=spec.network_mode,
            shm_size=spec.shm_size,
            privileged=spec.privileged,
            gpus=spec.gpus,
            devices=spec.devices,
            mounts=_mounts(spec, secret_mounts),
            runtime=spec.runtime,
        )
        api = self._client.api
        response = api._post_json(api.base_url + PODMAN_CREATE_PATH, data=body)
        created = api._result(response, json=True)
        container_id = str(created["Id"])
        return ContainerHandle(id=container_id, name=spec.name or container_id[:12])

    def logs(self, handle: ContainerHandle, *, timestamps: bool = False) -> Iterator[tuple[Stream, bytes]]:
        """Follow both streams of the container, from its first line to its end, over one request.

        docker-py's reader does two small reads per frame (about 54,000 lines/s at best), so this asks
        over a connection of its own for an unchunked body (enginestream.py), reads it in blocks of up
        to 64 KiB and undoes Docker's frame headers itself (logs.Demuxer). A TTY container's output has
        no frame headers: all stdout.

        The 20.10 engine can end a follow early when the container stops while the reader is caught
        up (its follower picks "container gone" over "file written" at random), dropping the last
        lines. So the follow always asks for timestamps, which make each frame unique, and when it ends
        the log's tail is read again and every frame after the last one we got is delivered too.
        """
        action = f"reading the logs of container {handle.name}"
        try:
            config = self._client.api.inspect_container(handle.id).get("Config") or {}
            if config.get("Tty"):  # no frames to anchor a catch-up on: the follow is all we get
                with self._log_body(handle, follow=True, timestamps=timestamps) as body:
                    for piece in body:
                        yield "stdout", piece
                return
            demuxer = Demuxer(strip_timestamps=not timestamps)
            with self._log_body(handle, follow=True, timestamps=True) as body:
                for piece in body:
                    yield from demuxer.feed(piece)
            demuxer.finish()
            for kind, payload in self._missed(handle, demuxer.last):
                yield stream_of(kind), payload if timestamps else strip_timestamp(payload)
        except self._foreign as exc:
            self._raise(exc, action)
        except OSError as exc:  # the log stream's own connection (enginestream.py)
            raise ContainerRuntimeError(f"{action} failed: {exc}") from exc

    def _missed(self, handle: ContainerHandle, anchor: Frame | None) -> list[Frame]:
        """The frames after ``anchor`` (the follow's last frame), reading ever more of the log's tail."""
        for tail in CATCH_UP_TAILS if anchor is not None else ("all",):  # nothing read: all of it is new
            with self._log_body(handle, follow=False, timestamps=True, tail=tail) as body:
                missed = frames_after(frames(body), anchor)
            if missed is not None:
                return missed
        raise ContainerRuntimeError(
            f"the log of container {handle.name} no longer holds the last line read; later lines may be lost"
        )

    @contextlib.contextmanager
    def _log_body(
        self, handle: ContainerHandle, *, follow: bool, timestamps: bool, tail: str = "all", action: str = ""
    ) -> Iterator[Iterator[bytes]]:
        """The raw body of ``GET /containers/{id}/logs`` (both streams), closed on leaving the block.

        Raises:
            ContainerRuntimeError: the engine refused (its message), or the engine is not reachable
                by unix:// or tcp:// (enginestream.engine_address).
            OSError: the connection failed or broke.
        """
        params: dict[str, str | int] = {
            "stdout": 1,
            "stderr": 1,
            "follow": int(follow),
            "timestamps": int(timestamps),
            "tail": tail,
        }
        api = self._client.api
        with stream_get(
            self._log_address(),
            f"/v{api.api_version}/containers/{handle.id}/logs",
            params,
            timeout=api.timeout,  # the SDK client's, which its own streams use up to the headers
            action=action or f"reading the logs of container {handle.name}",
        ) as body:
            yield body

    def _log_address(self) -> EngineAddress:
        """Where the log reader connects: the engine the SDK client speaks to, with its TLS settings."""
        if self._address is None:
            api = self._client.api
            base = str(api.base_url)
            if base.startswith("http+docker://"):  # a unix socket: the SDK keeps its path to itself
                self._address = engine_address(self._host or choose_host(self._environ, socket_answers))
            else:  # tcp://: the SDK's http(s):// base URL, certificates as requests holds them
                self._address = engine_address(base, verify=api.verify, cert=api.cert)
        return self._address

    def wait(self, handle: ContainerHandle) -> int:
        """The container's exit code, once it stops (no request timeout)."""
        try:
            result = self._client.api.wait(handle.id, timeout=None)
        except self._foreign as exc:
            self._raise(exc, f"waiting for container {handle.name}")
        return int(result.get("StatusCode", -1))

    def stop(self, handle: ContainerHandle, grace: float) -> None:
        """``docker stop -t grace``."""
        try:
            self._client.api.stop(handle.id, timeout=max(0, round(grace)))
        except self._foreign as exc:
            if not self._is_not_found(exc):
                self._raise(exc, f"stopping container {handle.name}")

    def kill(self, handle: ContainerHandle) -> None:
        """``docker kill``; not running or gone is fine."""
        try:
            self._client.api.kill(handle.id)
        except self._foreign as exc:
            if not (self._is_not_found(exc) or self._is_conflict(exc)):
                self._raise(exc, f"killing container {handle.name}")

    def remove(self, handle: ContainerHandle) -> None:
        """``docker rm -f``; gone, or a removal already in progress, is fine."""
        try:
            self._client.api.remove_container(handle.id, force=True)
        except self._foreign as exc:
            if not (self._is_not_found(exc) or self._is_conflict(exc)):
                self._raise(exc, f"removing container {handle.name}")

    def list_by_label(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Containers (any state) carrying every ``key=value`` of ``labels``."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            found = self._client.api.containers(all=True, filters=filters)
        except self._foreign as exc:
            self._raise(exc, "listing containers")
        return [
            ContainerInfo(
                id=str(c["Id"]),
                name=str((c.get("Names") or ["?"])[0]).lstrip("/"),
                status=str(c.get("Status") or c.get("State") or ""),
                labels=dict(c.get("Labels") or {}),
                image=str(c.get("Image") or ""),
                created=float(c["Created"]) if isinstance(c.get("Created"), int | float) else None,
            )
            for c in found
        ]

    def image_labels(self, image: str) -> dict[str, str]:
        """``docker image inspect``'s Config.Labels."""
        try:
            config = self._client.api.inspect_image(image).get("Config") or {}
        except self._foreign as exc:
            self._raise(exc, f"inspecting image {image}")
        return {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}

    def last_log_time(self, container_id: str) -> float | None:
        """``docker logs --timestamps --tail 1``: the engine's time of the last line, as unix seconds."""
        handle = ContainerHandle(container_id, container_id[:12])
        try:
            tty = bool((self._client.api.inspect_container(container_id).get("Config") or {}).get("Tty"))
            action = f"reading the last log line of container {handle.name}"
            with self._log_body(handle, follow=False, timestamps=True, tail="1", action=action) as body:
                # A TTY container's log has no frame headers: its body is the text itself.
                data = b"".join(body) if tty else b"".join(payload for _, payload in frames(body))
        except self._foreign as exc:
            self._raise(exc, f"reading the last log line of container {handle.name}")
        except OSError as exc:
            raise ContainerRuntimeError(
                f"reading the last log line of container {handle.name} failed: {exc}"
            ) from exc
        when = parse_log_line(data.decode("utf-8", "replace"), timestamped=True).timestamp
        return when.timestamp() if when is not None else None


def _mounts(spec: ContainerSpec, secret_mounts: list[BindMount]) -> list[BindMount]:
    """The secret files' mounts, then SCRATCH_DIR at /scratch."""
    mounts = list(secret_mounts)
    if spec.scratch_dir:
        mounts.append(BindMount(spec.scratch_dir, SCRATCH_TARGET))
    return mounts


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
