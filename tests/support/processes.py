"""Whether a process (by pid) still runs, as /proc tells it."""

from __future__ import annotations

from pathlib import Path


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited process its parent has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
