"""The events the supervisor reports to its UI: plain frozen dataclasses, no I/O and no rendering.

Every event except LogLines (and LogLine, its element) is the manager speaking; those are the client
container's own output, so a renderer can make the two visibly distinct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class OrphanFound:
    """A container left by an earlier run-manager for this run; it is removed right after this event."""

    container_id: str
    name: str
    status: str


@dataclass(frozen=True, slots=True)
class OrphanRemoved:
    """The orphan container is gone."""

    container_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ImageResolved:
    """The run's client_version maps to ``image``."""

    client_version: str
    image: str
    local: bool


@dataclass(frozen=True, slots=True)
class UsingLocalImage:
    """``--local``: the image is present in the engine and no pull happens."""

    image: str


@dataclass(frozen=True, slots=True)
class PullStarted:
    """A pull attempt begins; ``background`` is a pre-pull while the old client keeps running."""

    image: str
    attempt: int
    background: bool = False


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One progress message from the engine for one layer (``layer`` is empty for image-wide lines)."""

    layer: str
    status: str
    current: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class PullDone:
    """The image is present locally."""

    image: str
    seconds: float


@dataclass(frozen=True, slots=True)
class PullFailed:
    """A pull attempt failed; ``retry_in`` is the delay before the next one, None when none follows."""

    image: str
    attempt: int
    error: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class WalletKeyDelivery:
    """How the next container gets the wallet key changed (the first container: only when not ``env``).

    ``via`` is ``file`` (a read-only file on a tmpfs mount) or ``env`` (RAW_WALLET_PRIVATE_KEY);
    ``chosen_by`` is the --wallet-key-via setting (``auto``: the image's label decided).
    """

    via: str
    image: str
    chosen_by: str


@dataclass(frozen=True, slots=True)
class ContainerStarted:
    """The client container is running."""

    container_id: str
    name: str
    image: str
    client_version: str


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line the client wrote (``stream`` is ``stdout`` or ``stderr``); not the manager's own words."""

    text: str
    stream: str = "stdout"
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogLines:
    """Client lines that arrived together, oldest first (never empty): the supervisor emits these.

    One event per batch, not per line, so a flooding client costs the renderer one write and one
    flush per batch; a quiet client's batch is a single line, emitted as soon as it arrives.
    """

    lines: tuple[LogLine, ...]


@dataclass(frozen=True, slots=True)
class ContainerExited:
    """The container ended by itself or after a stop; ``seconds`` is how long it ran."""

    container_id: str
    exit_code: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ContainerRemoved:
    """The container is removed from the engine."""

    container_id: str


@dataclass(frozen=True, slots=True)
class VersionChanged:
    """The run's client_version moved; ``live`` when noticed while the old client was still running."""

    old: str
    new: str
    live: bool


@dataclass(frozen=True, slots=True)
class Restarting:
    """The client will be started again after ``delay`` seconds (``attempt`` counts toward the cap)."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class Stopping:
    """The manager is stopping the container: SIGTERM, then SIGKILL after ``grace`` seconds."""

    container_id: str
    reason: str
    grace: float


@dataclass(frozen=True, slots=True)
class Stalled:
    """The client wrote no log line for ``silent_for`` s (>= ``timeout``): it is stopped and restarted."""

    container_id: str
    silent_for: float
    timeout: float


@dataclass(frozen=True, slots=True)
class Killing:
    """A second stop request: the container is killed without waiting for the grace period."""

    container_id: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something went wrong that the manager rides out (a failed pre-pull, a broken log stream)."""

    message: str


@dataclass(frozen=True, slots=True)
class ChainUnreachable:
    """No RPC endpoint answers a read the manager needs; it retries (first retry after ``retry_in`` s)."""

    reason: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class ChainReachable:
    """The chain answers again after ``seconds`` unreachable."""

    seconds: float


@dataclass(frozen=True, slots=True)
class GivingUp:
    """The manager stops restarting; ``last_lines`` are the client's final log lines, oldest first."""

    reason: str
    exit_code: int
    last_lines: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Stopped:
    """The manager stopped on request and left no container behind."""

    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The client finished with exit code 0; the manager exits 0."""

    exit_code: int


# Every event, for the exhaustive matches in render.py and metrics.py: a member added here and not
# handled there is a mypy --strict error (typing.assert_never), not a silent fallback.
Event: TypeAlias = (
    OrphanFound
    | OrphanRemoved
    | ImageResolved
    | UsingLocalImage
    | PullStarted
    | PullProgress
    | PullDone
    | PullFailed
    | WalletKeyDelivery
    | ContainerStarted
    | LogLine
    | LogLines
    | ContainerExited
    | ContainerRemoved
    | VersionChanged
    | Restarting
    | Stopping
    | Stalled
    | Killing
    | Notice
    | ChainUnreachable
    | ChainReachable
    | GivingUp
    | Stopped
    | Finished
)
