"""The container entrypoint's restart loop (the reference train_entrypoint.sh, contract 3.1), testable."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from psyche.env_contract import ClientEnvVars

REQUIRED_ENV = (
    ClientEnvVars.NVIDIA_DRIVER_CAPABILITIES,
    ClientEnvVars.RPC,
    ClientEnvVars.WS_RPC,
    ClientEnvVars.RUN_ID,
)
# Set by a supervisor that restarts the container itself (the run-manager, psyche.manager.launch): run the
# client once and exit with its code, so that a bad setting is not retried 5 x 5 times (docs/supervisor.md).
RUN_ONCE_ENV = ClientEnvVars.RUN_ONCE
EXIT_OK, EXIT_FAILURE, EXIT_VERSION_MISMATCH = 0, 1, 10


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """5 restarts at most; a client that ran 120 s or more resets the count; 5 s between tries."""

    max_restarts: int = 5
    reset_after_s: float = 120.0
    delay_s: float = 5.0


class Child(Protocol):
    """One client process (``subprocess.Popen`` fits)."""

    def wait(self) -> int:
        """Wait for the process to exit; returns its exit code."""

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM)."""


def missing_required(environ: Mapping[str, str]) -> str | None:
    """The first required variable that is unset or empty, or None."""
    return next((name for name in REQUIRED_ENV if not environ.get(name)), None)


def run_once(environ: Mapping[str, str]) -> bool:
    """Whether ``PSYCHE_RUN_ONCE`` asks for one client run (``1``, ``true``, ``yes``) instead of the loop."""
    return environ.get(RUN_ONCE_ENV, "").strip().lower() in ("1", "true", "yes")


def launch_client() -> Child:
    """Start ``python -m psyche.client train`` with our environment and output."""
    return subprocess.Popen([sys.executable, "-m", "psyche.client", "train"])


class RestartLoop:
    """Run the client until it exits 0 or 10, restarting other exits under the policy; ``stop()`` ends it.

    With ``once`` the client runs one time and its exit code is the container's: the supervisor outside
    (the run-manager) owns the restarts.
    """

    def __init__(
        self,
        launch: Callable[[], Child] = launch_client,
        *,
        policy: RestartPolicy = RestartPolicy(),
        monotonic: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = print,
        once: bool = False,
    ) -> None:
        self.launch = launch
        self.once = once
        self.policy = policy
        self.monotonic = monotonic
        self.say = say
        self.stopping = threading.Event()
        # Reentrant: stop() runs in a signal handler on the main thread, possibly while run() holds the
        # lock around launch(); a plain Lock deadlocked there (SIGTERM right after start hung for ever).
        self._lock = threading.RLock()
        self._child: Child | None = None

    def stop(self) -> None:
        """SIGTERM/SIGINT: forward a terminate to the running client; run() then returns 0 once it ends."""
        self.stopping.set()
        with self._lock:
            child = self._child
        if child is not None:
            child.terminate()

    def run(self) -> int:
        """The loop; returns the container's exit code."""
        restarts = 0
        while not self.stopping.is_set():
            started = self.monotonic()
            with self._lock:
                self._child = self.launch()
                child = self._child
            if self.stopping.is_set():  # a signal arrived between the check and the launch
                child.terminate()
            code = child.wait()
            with self._lock:
                self._child = None
            if self.stopping.is_set():
                return EXIT_OK
            if self.once:
                return code
            if code == EXIT_VERSION_MISMATCH:
                self.say("[!] Version mismatch detected. Exiting container without retry...")
                return EXIT_VERSION_MISMATCH
            if code == EXIT_OK:
                # Ours exits 0 only when the run is finished; a restart would find it finished again.
                self.say("[+] The run is finished. Exiting container.")
                return EXIT_OK
            if self.monotonic() - started >= self.policy.reset_after_s:
                restarts = 0
            else:
                restarts += 1
            if restarts >= self.policy.max_restarts:
                self.say(f"[!] Client exited with code {code}. Maximum restarts reached")
                return EXIT_FAILURE
            self.say(
                f"[!] Client exited with code {code}. Restarting in {self.policy.delay_s:g}s "
                f"({restarts}/{self.policy.max_restarts})..."
            )
            if self.stopping.wait(self.policy.delay_s):
                break
        return EXIT_OK
