"""The doctor's host probes: GPUs (nvidia-smi), disk and shm space, the parallelism table, WS round trips."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from psyche.errors import RpcError
from psyche.parallelism_table import Table, load_bundled_table

NVIDIA_SMI = "nvidia-smi"
# The NVIDIA Container Toolkit's OCI prestart hook (and its older alias). Docker registers its "nvidia"
# device driver, which serves --gpus (device requests), only when the hook is on the engine's PATH.
NVIDIA_HOOKS = ("nvidia-container-runtime-hook", "nvidia-container-toolkit")
HOOK_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
NVIDIA_SMI_ARGS = ("--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")

Runner = Callable[[Sequence[str], float], tuple[int, str, str]]


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU as nvidia-smi lists it."""

    name: str
    memory_mib: int | None
    driver: str


@dataclass(frozen=True, slots=True)
class GpuProbe:
    """The GPUs seen, or why none are listed (``problem``)."""

    gpus: tuple[Gpu, ...]
    problem: str | None = None

    @property
    def count(self) -> int:
        return len(self.gpus)


class DiskUsage(NamedTuple):
    """Bytes, as shutil.disk_usage returns them."""

    total: int
    used: int
    free: int


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """Rows of ``name, 81559 MiB, 550.54.15`` -> Gpu records; blank lines are skipped."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # Split from the right: the last two fields are memory and driver, whatever the name holds.
        head, _, driver = line.rpartition(",")
        name, _, memory = head.rpartition(",")
        digits = memory.strip().split(" ")[0]
        gpus.append(
            Gpu(
                name=name.strip(), memory_mib=int(digits) if digits.isdigit() else None, driver=driver.strip()
            )
        )
    return tuple(gpus)


def _run(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout, done.stderr


def probe_gpus(
    *,
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = _run,
    timeout: float = 15.0,
) -> GpuProbe:
    """The GPUs nvidia-smi (NVML) lists on this host; none, with the reason, when it is absent or fails."""
    binary = which(NVIDIA_SMI)
    if binary is None:
        return GpuProbe((), "no NVIDIA GPU visible (nvidia-smi is not installed)")
    try:
        code, out, err = run([binary, *NVIDIA_SMI_ARGS], timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return GpuProbe((), f"no NVIDIA GPU visible (nvidia-smi failed: {type(exc).__name__}: {exc})")
    if code != 0:
        reason = " ".join((err or out).split()) or f"exit code {code}"
        return GpuProbe((), f"no NVIDIA GPU visible (nvidia-smi: {reason})")
    gpus = parse_nvidia_smi(out)
    return GpuProbe(gpus, None if gpus else "no NVIDIA GPU visible (nvidia-smi listed none)")


def find_nvidia_hook(which: Callable[..., str | None] = shutil.which) -> str | None:
    """Where this host has the NVIDIA Container Toolkit's hook (PATH, then the usual bin dirs), or None."""
    for name in NVIDIA_HOOKS:
        found = which(name) or which(name, path=os.pathsep.join(HOOK_DIRS))
        if found:
            return found
    return None


def disk_usage(path: Path) -> DiskUsage:
    """Space on the filesystem holding ``path``; OSError when it cannot be seen."""
    total, used, free = shutil.disk_usage(path)
    return DiskUsage(total, used, free)


def load_parallelism_table() -> Table:
    """The PARALLELISM_AUTO table bundled with the package (psyche/parallelism_table.json)."""
    return load_bundled_table()


async def _slot_subscribe(url: str, timeout: float) -> None:
    from websockets.asyncio.client import connect

    async with asyncio.timeout(timeout), connect(url, open_timeout=timeout, ping_interval=None) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "slotSubscribe"}))
        while True:
            answer = json.loads(await ws.recv())
            if not isinstance(answer, dict) or answer.get("id") != 1:
                continue  # a notification racing the answer
            if "result" not in answer:
                raise RpcError(f"slotSubscribe refused: {answer.get('error')!r}")
            await ws.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 2, "method": "slotUnsubscribe", "params": [answer["result"]]}
                )
            )
            return


def ws_round_trip(url: str, timeout: float = 5.0) -> None:
    """Connect to a Solana pubsub endpoint and get one slotSubscribe answer; RpcError says why not."""
    from websockets.exceptions import InvalidURI, WebSocketException

    try:
        asyncio.run(_slot_subscribe(url, timeout))
    except TimeoutError as exc:
        raise RpcError(f"no answer within {timeout:g}s") from exc
    except InvalidURI as exc:
        raise RpcError("not a WebSocket URL") from exc
    except (OSError, WebSocketException, ValueError) as exc:
        # The URL may hold an API key: name the failure, not the text that may quote it.
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise RpcError(f"{type(exc).__name__}: {detail}") from exc
