"""Which container engine answers and how to ask it for a container (pure): discovery, Docker or Podman, GPUs.

Docker and Podman both serve the Docker Engine API, and the main job speaks only that, with two exceptions
that this module decides:

- Finding the engine: DOCKER_HOST when set, else the first of Docker's socket, rootful Podman's and
  rootless Podman's that answers (``candidate_hosts``).
- Creating the container on Podman: GPUs reach a Podman container through CDI (the device
  ``nvidia.com/gpu=all`` that ``nvidia-ctk cdi generate`` describes), which Podman 4's Docker-compatible
  create ignores (a device request is dropped silently) or refuses (``HostConfig.Devices`` with the CDI name:
  "stat nvidia.com/gpu=all: no such file or directory"). Podman's own create (``/libpod/containers/create``)
  takes it, so on Podman every container is created there (``podman_create_body``) and everything else
  (start, logs, wait, stop, list) stays on the compatible API. docs/decisions.md has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

DOCKER_SOCKET = "unix:///var/run/docker.sock"
PODMAN_ROOTFUL_SOCKET = "unix:///run/podman/podman.sock"
PODMAN_COMPONENT = "Podman Engine"  # the name of Podman's entry in GET /version's Components
# Podman's own API version for the create call: 4.0 is the oldest Podman with CDI devices in its create.
PODMAN_CREATE_PATH = "/v4.0.0/libpod/containers/create"
CDI_GPU_DEVICE = "nvidia.com/gpu=all"
# Where Podman 4 reads CDI specs (not configurable before 4.5); nvidia-ctk writes /etc/cdi/nvidia.yaml.
CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")

EngineKind = Literal["docker", "podman"]


def candidate_hosts(environ: Mapping[str, str]) -> list[str]:
    """The engine sockets to try, in order: DOCKER_HOST alone when set, else Docker's, then Podman's."""
    explicit = environ.get("DOCKER_HOST")
    if explicit:
        return [explicit]
    hosts = [DOCKER_SOCKET, PODMAN_ROOTFUL_SOCKET]
    runtime_dir = environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        hosts.append(f"unix://{runtime_dir.rstrip('/')}/podman/podman.sock")
    return hosts


def choose_host(environ: Mapping[str, str], answers: Callable[[str], bool]) -> str:
    """DOCKER_HOST, else the first candidate that ``answers``; Docker's socket when none does (its error)."""
    hosts = candidate_hosts(environ)
    if len(hosts) == 1:
        return hosts[0]
    return next((host for host in hosts if answers(host)), hosts[0])


@dataclass(frozen=True, slots=True)
class EngineId:
    """What answered: Docker or Podman, and its own version (not the API version)."""

    kind: EngineKind
    version: str

    @property
    def name(self) -> str:
        """``Docker`` or ``Podman``."""
        return "Podman" if self.kind == "podman" else "Docker"

    def describe(self, api_version: str) -> str:
        """One phrase for doctor and the main job's first line, e.g. ``Podman 4.3.1 (Docker API 1.41)``."""
        return f"{self.name} {self.version} (Docker API {api_version})"


def identify(answer: Mapping[str, Any]) -> EngineId:
    """Docker or Podman, from the engine's ``GET /version`` answer (Podman lists a "Podman Engine" entry)."""
    for component in answer.get("Components") or ():
        if isinstance(component, Mapping) and component.get("Name") == PODMAN_COMPONENT:
            return EngineId("podman", str(component.get("Version") or answer.get("Version") or "?"))
    return EngineId("docker", str(answer.get("Version") or "?"))


def docker_device_requests(gpus: bool) -> list[dict[str, Any]]:
    """Docker's ``--gpus all``: one device request for every GPU (docker-py's DeviceRequest keywords)."""
    return [{"count": -1, "capabilities": [["gpu"]]}] if gpus else []


def cdi_spec_present(
    listing: Callable[[str], Sequence[str]], dirs: Sequence[str] = CDI_SPEC_DIRS
) -> str | None:
    """The first CDI spec file (yaml or json) found in ``dirs``, or None; ``listing`` raises OSError."""
    for directory in dirs:
        try:
            names = sorted(listing(directory))
        except OSError:
            continue
        for name in names:
            if name.endswith((".yaml", ".yml", ".json")):
                return f"{directory}/{name}"
    return None


def parse_size(text: str) -> int:
    """Docker's size syntax ('1g', '512m', '64k', '1024') in bytes."""
    units = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    text = text.strip().lower()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@dataclass(frozen=True, slots=True)
class BindMount:
    """A host path bind-mounted into the container."""

    source: str
    target: str
    read_only: bool = False


def podman_create_body(
    *,
    image: str,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    name: str | None,
    entrypoint: str | None,
    command: Sequence[str],
    network_mode: str,
    shm_size: str,
    privileged: bool,
    gpus: bool,
    devices: Sequence[str],
    mounts: Sequence[BindMount],
    runtime: str | None,
) -> dict[str, Any]:
    """The JSON body of Podman's ``POST /libpod/containers/create`` for what the Docker path would create.

    GPUs are the CDI device ``nvidia.com/gpu=all``; host devices are paths; absent keys keep the image's
    entrypoint and command, as the Docker path does.
    """
    body: dict[str, Any] = {
        "image": image,
        "env": dict(env),
        "labels": dict(labels),
        "netns": {"nsmode": network_mode},
        "shm_size": parse_size(shm_size),
        "privileged": privileged,
    }
    if name:
        body["name"] = name
    if entrypoint is not None:
        body["entrypoint"] = [entrypoint]
    if command:
        body["command"] = list(command)
    wanted = [*devices, CDI_GPU_DEVICE] if gpus else list(devices)
    if wanted:
        body["devices"] = [{"path": path} for path in wanted]
    if mounts:
        body["mounts"] = [
            {
                "destination": m.target,
                "source": m.source,
                "type": "bind",
                "options": ["rbind", "ro"] if m.read_only else ["rbind"],
            }
            for m in mounts
        ]
    if runtime:
        body["oci_runtime"] = runtime
    return body
