"""The doctor's vocabulary, shared by every family of checks (doctor.py: settings, wallet and chain;
doctor_host.py: engine, GPUs, disk; doctor_p2p.py: the network): the Check record and its Status, a
report's exit code, the options every family reads, and the slice of the engine the checks use.

A leaf: it imports none of the doctor modules, so they import it and not each other's internals.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from psyche.manager.engines import EngineId

LOW_BALANCE_LAMPORTS = 10_000_000  # 0.01 SOL: about 2,000 transactions at the base fee
# A CUDA + torch client image unpacks to well over 10 GB; a rough floor, not a measurement (docs/doctor.md).
IMAGE_SIZE_ESTIMATE = 20 * 2**30
CONTAINER_SHM = "1g"  # LaunchConfig's default --shm-size (a unit test keeps the two equal)


class Status(enum.StrEnum):
    """How a check came out; SKIP means a check it depends on failed first."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: what was checked, how it came out, what was seen, and what to do."""

    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """The line as JSON (``doctor --json``): name, status, detail, fix."""
        return {"name": self.name, "status": str(self.status), "detail": self.detail, "fix": self.fix}


class EngineProbe(Protocol):
    """The slice of DockerRuntime the doctor uses."""

    def version(self) -> str:
        """The engine's version string."""

    def engine(self) -> EngineId:
        """Which engine answers, Docker or Podman, and its own version."""

    def api_version(self) -> str:
        """The API version the engine speaks."""

    def has_nvidia_runtime(self) -> bool:
        """Whether the engine lists an ``nvidia`` runtime (informational: --gpus may work without it)."""

    def image_exists(self, image: str) -> bool:
        """Whether ``image`` is in the engine already."""

    def data_root(self) -> str | None:
        """The engine's data directory (where images are stored), or None when it does not say."""

    def image_labels(self, image: str) -> dict[str, str]:
        """``image``'s labels (``psyche.client.key-file`` among them)."""


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """Flags and thresholds."""

    local: bool = False
    repository: str | None = None
    timeout: float = 5.0
    image_size: int = IMAGE_SIZE_ESTIMATE
    low_balance: int = LOW_BALANCE_LAMPORTS
    container_shm: str = CONTAINER_SHM
    gpus: bool = True  # the client container requests every GPU (--no-gpus: a CPU-only client)
    wallet_key_via: str = "auto"  # --wallet-key-via
    local_engine: bool = True  # DOCKER_HOST is a unix socket (the engine can bind-mount a host file)
    runtime: str = "docker"  # --runtime: process checks the installed client, torch and CUDA, not an engine


DEFAULT_OPTIONS = DoctorOptions()


def exit_code(checks: Sequence[Check]) -> int:
    """0 only when nothing FAILs."""
    return 1 if any(c.status == Status.FAIL for c in checks) else 0


def skip(name: str, needs: str) -> Check:
    """The SKIP line of check ``name``, not run because what it ``needs`` failed or is missing."""
    return Check(name, Status.SKIP, f"not checked: needs {needs}")
