"""Pure text formatting for the chain commands: the run table, durations, SOL, explorer logs."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import RunState

LAMPORTS_PER_SOL = 1_000_000_000
RUN_TABLE_HEADER = ("run-id", "state", "clients", "epoch time", "time left")
_NO_CLIENT_COUNT = frozenset({RunState.Paused, RunState.Uninitialized, RunState.Finished})
_NO_TIME_LEFT = frozenset(
    {RunState.WaitingForMembers, RunState.Finished, RunState.Paused, RunState.Uninitialized}
)


def format_duration(seconds: int) -> str:
    """``1h 2m 3s`` with zero parts left out; ``0s`` when everything is zero (the reference's format)."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value]
    return " ".join(parts) if parts else "0s"


def clients_cell(state: RunState, num_clients: int, min_clients: int) -> str:
    """``-`` for halted runs, ``n/min waiting`` below min_clients, else ``n training``."""
    if state in _NO_CLIENT_COUNT:
        return "-"
    if num_clients < min_clients:
        return f"{num_clients}/{min_clients} waiting"
    return f"{num_clients} training"


def time_left_cell(state: RunState, start_timestamp: int, epoch_time: int, now: int) -> str:
    """Remaining epoch time; ``-`` when no epoch is timed, ``overrun`` once the epoch time has passed."""
    if state in _NO_TIME_LEFT or start_timestamp == 0:
        return "-"
    elapsed = max(now - start_timestamp, 0)
    if elapsed >= epoch_time:
        return "overrun"
    return format_duration(epoch_time - elapsed)


def run_table_row(
    run_id: str, state: RunState, num_clients: int, min_clients: int, epoch_time: int, start: int, now: int
) -> tuple[str, str, str, str, str]:
    """One row of the run table, cells in RUN_TABLE_HEADER order."""
    return (
        run_id,
        state.display,
        clients_cell(state, num_clients, min_clients),
        format_duration(epoch_time),
        time_left_cell(state, start, epoch_time, now),
    )


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The reference's ``format_table``: 2-space indent, columns 3 spaces apart, last column unpadded."""
    widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=False)]
        return "  " + "   ".join([*padded, cells[-1]])

    return [line(header), *(line(row) for row in rows)]


def format_sol(lamports: int) -> str:
    """Lamports as SOL with all nine decimals (``0.829935360``)."""
    whole, frac = divmod(lamports, LAMPORTS_PER_SOL)
    return f"{whole}.{frac:09d}"


def node_id8(signer: Pubkey) -> str:
    """The Rust ``NodeIdentity`` Display: lower-case hex of the signer's first 4 bytes."""
    return bytes(signer)[:4].hex()


_INVOKE = re.compile(r"^Program (?P<program>\w+) invoke \[(?P<depth>\d+)\]$")
_SUCCESS = re.compile(r"^Program (?P<program>\w+) success$")
_FAILED = re.compile(r"^Program (?P<program>\w+) failed: (?P<error>.*)$")
_CONSUMED = re.compile(r"^Program (?P<program>\w+) consumed (?P<detail>.*)$")
_CUSTOM = re.compile(r"custom program error: 0x(?P<code>[0-9a-fA-F]+)")


def explorer_logs(
    logs: Sequence[str],
    program_name: Callable[[str], str],
    error_name: Callable[[str, int], str | None],
) -> list[str]:
    """Program logs the way the Solana explorer shows them: one header per instruction, ``>`` lines under it.

    ``program_name(id)`` names a program; ``error_name(id, code)`` names a custom error (None if unknown).
    """
    out: list[str] = []
    top = 0
    depth = 1
    for line in logs:
        if match := _INVOKE.match(line):
            depth = int(match["depth"])
            name = program_name(match["program"])
            if depth == 1:
                top += 1
                out.append(f"#{top} {name} Instruction")
            else:
                out.append(f"{'  ' * (depth - 1)}> Invoking {name}")
            continue
        pad = "  " * (depth - 1)
        if match := _SUCCESS.match(line):
            out.append(f"{pad}> Program returned success")
            depth = max(depth - 1, 1)
        elif match := _FAILED.match(line):
            error = match["error"]
            custom = _CUSTOM.search(error)
            named = error_name(match["program"], int(custom["code"], 16)) if custom else None
            out.append(f'{pad}> Program returned error: "{error}"' + (f" ({named})" if named else ""))
            depth = max(depth - 1, 1)
        elif match := _CONSUMED.match(line):
            out.append(f"{pad}> Program consumed: {match['detail']}")
        elif line.startswith("Program log: "):
            out.append(f'{pad}> Program logged: "{line[len("Program log: ") :]}"')
        elif line.startswith("Program data: "):
            out.append(f"{pad}> Program data: {line[len('Program data: ') :]}")
        else:
            out.append(f"{pad}> {line}")
    return out


# Next steps for program errors a run owner or participant meets (keyed by the error's name).
ERROR_HINTS: dict[str, str] = {
    "CloseCoordinatorNotHalted": "only a halted run can be closed: pause it first with set-paused",
    "UpdateConfigNotHalted": "config, model, progress and client version change only while the run is "
    "halted: pause it first with set-paused",
    "UpdateConfigFinished": "a finished run's config cannot change",
    "SignerNotAClient": "only a client of the run's current epoch may send this instruction",
    "Halted": "the run is halted (uninitialized, paused or finished): resume it with set-paused --resume",
    "ConfigSanityCheckFailed": "the [config] values break the program's sanity checks (docs/commands.md)",
    "ModelSanityCheckFailed": "the [model] values break the program's sanity checks (docs/commands.md)",
    "CannotResume": "only a paused (or uninitialized) run can be resumed",
    "ConstraintHasOne": "your wallet is not the authority this account names",
    "ConstraintRaw": "your wallet is not the authority this account names",
    "InsufficientFunds": "the source token account holds less than the amount",
}
