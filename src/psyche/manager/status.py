"""`run-manager status`: collect the supervised container and the run's chain state, and lay them out."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from solders.pubkey import Pubkey

from psyche.chain import queries
from psyche.chain.programs import ProgramIds
from psyche.errors import RunManagerError
from psyche.manager.launch import (
    LABEL_CLIENT_VERSION,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_RUN_ID,
    LABEL_WALLET,
)
from psyche.manager.runtime import SCRATCH_TARGET, ContainerInfo, ContainerRuntime

# The supervisor names its containers psyche-client-<run>-<instance[:8]>-<seq>; seq counts from 1.
_SEQ = re.compile(r"-(\d+)$")
# The client writes its P2P node's state here after every round (DESIGN.md "Status file for the manager").
P2P_STATUS_FILE = "p2p-status.json"
P2P_NO_STATUS = "p2p: no status yet"
P2P_STALE_AFTER = 300.0  # seconds: longer than any round; an older file is from a client that stopped
_P2P_INTS = ("epoch", "round", "peers_seen", "results_received", "results_applied")


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One container a run-manager started, as the engine reports it."""

    id: str
    name: str
    image: str
    client_version: str
    run_id: str
    instance: str
    status: str
    running: bool
    uptime_s: float | None
    restarts: int | None  # containers the same run-manager started before this one (version swaps included)
    # Seconds since the client's last log line, from the engine (running containers only): a frozen or hung
    # client is still "Up", but its log goes quiet (see --stall-timeout).
    last_log_age_s: float | None = None
    wallet: str | None = None  # the public key its run-manager joined with (None: an older run-manager)


@dataclass(frozen=True, slots=True)
class RunView:
    """The run as the coordinator account holds it, and whether the user is in the current epoch."""

    run_id: str
    state: str
    epoch: int
    step: int
    clients: int
    min_clients: int
    client_version: str
    user_in_epoch: bool
    earned_points: int


@dataclass(frozen=True, slots=True)
class RewardsView:
    """Treasurer rewards of the user, in the collateral mint's base units and in tokens."""

    earned: int
    claimed: int
    claimable: int
    unclaimed: int
    decimals: int
    mint: str
    treasury_balance: int


@dataclass(frozen=True, slots=True)
class P2PView:
    """What the client's P2P node last reported (its status file, read on the host)."""

    address: str
    epoch: int
    round: int
    peers_seen: int
    results_received: int  # verified payloads of the last finished download round
    results_applied: int  # payloads applied at the last apply
    refused: dict[str, int]  # reason -> count, since the client started
    age_s: float  # seconds since the client wrote the file


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything `status` shows; each part that could not be read carries its error instead."""

    user: str | None
    run_id: str | None
    containers: tuple[ContainerView, ...] = ()
    container_error: str | None = None
    run: RunView | None = None
    run_error: str | None = None
    rewards: RewardsView | None = None
    rewards_note: str | None = None
    p2p: P2PView | None = None
    p2p_note: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """0 when a supervised container runs and the run was read; 1 otherwise (for scripts and probes)."""
        running = any(c.running for c in self.containers)
        return 0 if running and self.run is not None else 1

    def to_json(self) -> dict[str, Any]:
        """A plain-data form for --json."""
        data = asdict(self)
        data["exit_code"] = self.exit_code
        return data


def container_view(info: ContainerInfo, now: float, last_log_at: float | None = None) -> ContainerView:
    """Read a labelled container: version and run from our labels, restarts from the name's sequence.

    ``last_log_at`` is the unix time of its last log line (``ContainerRuntime.last_log_time``).
    """
    running = info.status.startswith("Up")
    seq = _SEQ.search(info.name)
    return ContainerView(
        id=info.id,
        name=info.name,
        image=info.image,
        client_version=info.labels.get(LABEL_CLIENT_VERSION, "?"),
        run_id=info.labels.get(LABEL_RUN_ID, "?"),
        instance=info.labels.get(LABEL_INSTANCE, "?"),
        status=info.status,
        running=running,
        uptime_s=max(0.0, now - info.created) if running and info.created is not None else None,
        restarts=int(seq.group(1)) - 1 if seq and LABEL_INSTANCE in info.labels else None,
        last_log_age_s=max(0.0, now - last_log_at) if running and last_log_at is not None else None,
        wallet=info.labels.get(LABEL_WALLET),
    )


def find_containers(
    runtime: ContainerRuntime, run_id: str | None, now: float, wallet: str | None = None
) -> tuple[ContainerView, ...]:
    """Containers carrying our labels (of ``run_id`` when given), running ones first, newest first.

    With ``wallet``, only that wallet's containers (and unlabelled ones of older run-managers): several
    wallets may run the same run on one host (``scripts/demo --clients N``), and each `status` is one's.
    """
    labels = {LABEL_MANAGED: "true"}
    if run_id:
        labels[LABEL_RUN_ID] = run_id
    infos = [
        info
        for info in runtime.list_by_label(labels)
        if wallet is None or info.labels.get(LABEL_WALLET, wallet) == wallet
    ]
    views = [
        container_view(info, now, _last_log_time(runtime, info) if info.status.startswith("Up") else None)
        for info in infos
    ]
    views.sort(key=lambda v: (not v.running, v.uptime_s if v.uptime_s is not None else float("inf")))
    return tuple(views)


def _last_log_time(runtime: ContainerRuntime, info: ContainerInfo) -> float | None:
    try:
        return runtime.last_log_time(info.id)
    except RunManagerError:  # the container went away meanwhile: no age rather than no screen
        return None


def p2p_status_path(scratch_dir: Path | None, checkpoint_dir: str | None = None) -> Path | None:
    """Where the client's status file is on this host: in SCRATCH_DIR (mounted at /scratch), or in the
    CHECKPOINT_DIR the .env gives the client when that is under /scratch; None when the host cannot see it."""
    if scratch_dir is None:
        return None
    if not checkpoint_dir:
        return scratch_dir / P2P_STATUS_FILE
    inside = PurePosixPath(checkpoint_dir)
    try:
        relative = inside.relative_to(SCRATCH_TARGET)
    except ValueError:
        return None  # a directory of the container's own: not on this host
    return scratch_dir / relative / P2P_STATUS_FILE


def parse_p2p_status(data: object, now: float) -> P2PView:
    """The status file's JSON as a view; ValueError names the first field that is missing or wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    updated = data.get("updated_at")
    if isinstance(updated, bool) or not isinstance(updated, int | float) or not math.isfinite(updated):
        raise ValueError("updated_at is not a unix time")
    numbers: dict[str, int] = {}
    for name in _P2P_INTS:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} is not a whole number >= 0")
        numbers[name] = value
    address = data.get("address")
    if not isinstance(address, str):
        raise ValueError("address is not a string")
    refused = data.get("refused", {})
    if not isinstance(refused, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in refused.items()
    ):
        raise ValueError("refused is not an object of counts")
    return P2PView(address=address, refused=dict(refused), age_s=max(0.0, now - updated), **numbers)


def read_p2p_status(path: Path | None, now: float) -> tuple[P2PView | None, str | None]:
    """The client's P2P status file as a view, or why there is none (never raises: status shows the rest)."""
    if path is None:
        return None, f"{P2P_NO_STATUS} (SCRATCH_DIR is unset: the client's status file is not on this host)"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, P2P_NO_STATUS
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return None, f"p2p: cannot read {path}: {reason}"
    try:
        return parse_p2p_status(json.loads(text), now), None
    except ValueError as exc:  # json.JSONDecodeError is one
        return None, f"p2p: {path} is not a status file: {exc}"


def read_run(rpc: queries.AccountReader, run_id: str, user: Pubkey | None, programs: ProgramIds) -> RunView:
    """The run's state, progress and clients from its two accounts (2 RPC round trips)."""
    run = queries.fetch_run(rpc, run_id, programs)
    coordinator = run.coordinator
    in_epoch = user is not None and any(c.signer == user for c in coordinator.epoch_state.clients)
    return RunView(
        run_id=run.run_id,
        state=run.state.display,
        epoch=coordinator.progress.epoch,
        step=coordinator.progress.step,
        clients=run.num_clients,
        min_clients=run.min_clients,
        client_version=run.client_version.rstrip("\x00"),
        user_in_epoch=in_epoch,
        earned_points=queries.earned_points(coordinator, user) if user is not None else 0,
    )


def read_rewards(
    rpc: queries.AccountReader, run_id: str, user: Pubkey, programs: ProgramIds
) -> RewardsView | None:
    """The user's treasurer rewards, or None when the run has no treasurer."""
    # Whatever index the owner created it with (the run's main authority), else the default index.
    found = queries.run_treasurer(rpc, run_id, programs) or queries.fetch_treasurer(
        rpc, run_id, None, programs
    )
    if found is None:
        return None
    rewards = queries.fetch_rewards(rpc, run_id, user, found[1].index, programs)
    return RewardsView(
        earned=rewards.earned,
        claimed=rewards.claimed,
        claimable=rewards.claimable,
        unclaimed=rewards.unclaimed,
        decimals=rewards.mint.decimals,
        mint=str(rewards.treasurer.collateral_mint),
        treasury_balance=rewards.treasury_balance,
    )


def collect(
    *,
    runtime: Callable[[], ContainerRuntime],
    rpc: Callable[[], queries.AccountReader],
    run_id: str | None,
    user: Pubkey | None,
    programs: ProgramIds,
    now: float,
    p2p_file: Path | None = None,
) -> StatusReport:
    """Read every part; a part that fails (no engine, RPC down, run missing) is reported, not raised.

    ``p2p_file`` is the client's P2P status file on this host (``p2p_status_path``), None when not visible.
    """
    p2p, p2p_note = read_p2p_status(p2p_file, now)
    containers: tuple[ContainerView, ...] = ()
    container_error = None
    try:
        containers = find_containers(runtime(), run_id, now, str(user) if user else None)
    except RunManagerError as exc:
        container_error = exc.message
    notes: list[str] = []
    if run_id is None:
        found = sorted({c.run_id for c in containers if c.running and c.run_id != "?"})
        if len(found) == 1:
            run_id = found[0]
            notes.append(f"RUN_ID is not set: showing run {run_id!r}, the one the running container joined")
        elif len(found) > 1:
            notes.append(f"RUN_ID is not set and containers run for several runs ({', '.join(found)})")
    report = StatusReport(
        user=str(user) if user else None,
        run_id=run_id,
        containers=containers,
        container_error=container_error,
        p2p=p2p,
        p2p_note=p2p_note,
        notes=tuple(notes),
    )
    if run_id is None:
        return _replace(report, run_error="no run to show: set RUN_ID in the .env")
    try:
        run = read_run(rpc(), run_id, user, programs)
    except RunManagerError as exc:
        return _replace(report, run_error=exc.message)
    report = _replace(report, run=run)
    if user is None:
        return _replace(report, rewards_note="no wallet: rewards not shown")
    try:
        rewards = read_rewards(rpc(), run_id, user, programs)
    except RunManagerError as exc:
        return _replace(report, rewards_note=f"rewards unreadable: {exc.message}")
    if rewards is None:
        return _replace(report, rewards_note="the run has no treasurer: points are not paid out as tokens")
    return _replace(report, rewards=rewards)


def _replace(report: StatusReport, **changes: Any) -> StatusReport:
    import dataclasses

    return dataclasses.replace(report, **changes)


def duration(seconds: float) -> str:
    """``3d 4h``, ``2h 05m``, ``7m 09s``, ``42s``."""
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


def tokens(amount: int, decimals: int) -> str:
    """Base units as a decimal token amount: 10_500_000 with 6 decimals -> ``10.5``."""
    if decimals == 0:
        return str(amount)
    whole, frac = divmod(amount, 10**decimals)
    text = f"{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".")
    return text


def fields(rows: list[tuple[str, object]]) -> list[str]:
    """``label: value`` lines with the values aligned."""
    width = max((len(label) for label, _ in rows), default=0) + 1
    return [f"{label + ':':<{width}} {value}" for label, value in rows]


def render(report: StatusReport) -> list[str]:
    """The one screen, as ``Label: value`` lines grouped under Container, Run and Rewards."""
    lines: list[str] = [f"Wallet: {report.user or '(none)'}"]
    lines += [f"Note: {note}" for note in report.notes]
    lines.append("")
    lines.append("Container")
    if report.container_error is not None:
        lines.append(f"  Docker: {report.container_error}")
    elif not report.containers:
        lines.append(
            "  none: no container with the run-manager's labels (is `run-manager --env-file` running?)"
        )
    for c in report.containers:
        rows: list[tuple[str, object]] = [
            ("name", f"{c.name} ({c.id[:12]})"),
            ("state", c.status),
            ("image", c.image or "?"),
            ("client version", c.client_version),
        ]
        if c.uptime_s is not None:
            rows.append(("uptime", duration(c.uptime_s)))
        if c.running:
            rows.append(
                (
                    "last log line",
                    "none yet" if c.last_log_age_s is None else f"{duration(c.last_log_age_s)} ago",
                )
            )
        if c.restarts is not None:
            rows.append(("restarts", c.restarts))
        lines += [f"  {line}" for line in fields(rows)]
    lines.append("")
    lines.append(f"Run {report.run_id or ''}".rstrip())
    if report.run is None:
        lines.append(f"  {report.run_error}")
    else:
        r = report.run
        lines += [
            f"  {line}"
            for line in fields(
                [
                    ("state", r.state),
                    ("epoch", r.epoch),
                    ("step", r.step),
                    ("clients", f"{r.clients} (min {r.min_clients})"),
                    ("client version", r.client_version),
                    ("you", "in this epoch" if r.user_in_epoch else "not in this epoch"),
                ]
            )
        ]
    lines.append("")
    lines += render_p2p(report.p2p, report.p2p_note)
    lines.append("")
    lines.append("Rewards")
    if report.rewards is None:
        if report.run is not None:
            lines.append(f"  earned points: {report.run.earned_points}")
        if report.rewards_note:
            lines.append(f"  {report.rewards_note}")
    else:
        w = report.rewards
        treasury = tokens(w.treasury_balance, w.decimals)
        lines += [
            f"  {line}"
            for line in fields(
                [
                    ("earned", f"{tokens(w.earned, w.decimals)} ({w.earned} points)"),
                    ("claimed", f"{tokens(w.claimed, w.decimals)}"),
                    ("claimable", f"{tokens(w.claimable, w.decimals)} (treasury holds {treasury})"),
                    ("mint", w.mint),
                ]
            )
        ]
    return lines


def render_p2p(view: P2PView | None, note: str | None) -> list[str]:
    """The P2P section: peers, results of the last round, refusals, the node's address and the file's age."""
    lines = ["P2P"]
    if view is None:
        return [*lines, f"  {note or P2P_NO_STATUS}"]
    refused = ", ".join(f"{reason} {count}" for reason, count in sorted(view.refused.items()) if count)
    age = f"{duration(view.age_s)} ago"
    if view.age_s > P2P_STALE_AFTER:
        age += " (stale: the client has not written it since; is it running?)"
    rows: list[tuple[str, object]] = [
        ("address", view.address),
        ("peers seen", view.peers_seen),
        ("last round", f"epoch {view.epoch}, round {view.round}"),
        ("results", f"{view.results_received} received, {view.results_applied} applied"),
        ("refused", refused or "none"),
        ("updated", age),
    ]
    return lines + [f"  {line}" for line in fields(rows)]
