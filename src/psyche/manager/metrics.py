"""Prometheus metrics for the main job: state fed by supervisor events and RPC probes, served on 127.0.0.1.

``--metrics-port N`` (RUN_MANAGER_METRICS_PORT) starts a MetricsServer: stdlib ``http.server`` in a daemon
thread, bound to 127.0.0.1 only, answering ``GET /metrics`` in the text exposition format 0.0.4. The
supervisor's events reach ``Metrics.observe`` through ``Metrics.tee(renderer)``; an RpcProber thread asks
each configured endpoint ``getHealth`` every ``interval`` seconds. Endpoint labels are redacted URLs.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, assert_never

from psyche import __version__
from psyche.chain.endpoints import redacted_labels
from psyche.errors import ConfigError, RunManagerError
from psyche.manager import events as ev

HOST = "127.0.0.1"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "psyche_run_manager_"


@dataclass(slots=True)
class _Rpc:
    up: bool
    latency: float | None
    checked_at: float


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """The main job's counters and gauges; every method is thread-safe."""

    def __init__(self, run_id: str = "", *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._run_id = run_id
        self._up = False
        self._started_at: float | None = None
        self._starts = 0
        self._restarts = 0
        self._version_changes = 0
        self._version = ""
        self._last_exit: int | None = None
        self._log_lines = 0
        self._last_log_at: float | None = None
        self._rpc: dict[str, _Rpc] = {}

    def observe(self, event: ev.Event) -> None:
        """Update the state from one supervisor event.

        Every member of ``ev.Event`` has a case, those that change nothing too, so a new event is a mypy
        error here (``assert_never``) until someone decides whether it counts.
        """
        now = self._monotonic()
        with self._lock:
            match event:
                case ev.LogLines():
                    self._log_lines += len(event.lines)
                    self._last_log_at = now
                case ev.LogLine():
                    self._log_lines += 1
                    self._last_log_at = now
                case ev.ContainerStarted():
                    self._up, self._started_at = True, now
                    self._starts += 1
                    self._version = event.client_version
                case ev.ContainerExited():
                    self._up, self._started_at = False, None
                    self._last_exit = event.exit_code
                case ev.Restarting():
                    self._restarts += 1
                case ev.VersionChanged():
                    self._version_changes += 1
                case ev.Stopped() | ev.GivingUp() | ev.Finished():
                    self._up, self._started_at = False, None
                case (
                    ev.OrphanFound()
                    | ev.OrphanRemoved()
                    | ev.ImageResolved()
                    | ev.UsingLocalImage()
                    | ev.PullStarted()
                    | ev.PullProgress()
                    | ev.PullDone()
                    | ev.PullFailed()
                    | ev.WalletKeyDelivery()
                    | ev.ContainerRemoved()
                    | ev.Stopping()
                    | ev.Stalled()
                    | ev.Killing()
                    | ev.Notice()
                    | ev.ChainUnreachable()
                    | ev.ChainReachable()
                ):
                    pass  # nothing the metrics count
                case _:
                    assert_never(event)

    def tee(self, renderer: Callable[[ev.Event], None]) -> Callable[[ev.Event], None]:
        """An ``on_event`` callback that records each event, then hands it to ``renderer``."""

        def on_event(event: ev.Event) -> None:
            self.observe(event)
            renderer(event)

        return on_event

    def set_rpc(self, endpoint: str, *, up: bool, latency: float | None) -> None:
        """Record one probe of ``endpoint`` (a redacted label): whether it answered and how fast."""
        with self._lock:
            self._rpc[endpoint] = _Rpc(up, latency, self._monotonic())

    def render(self) -> str:
        """The text exposition format (version 0.0.4)."""
        now = self._monotonic()
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float]]) -> None:
            out.append(f"# HELP {PREFIX}{name} {help_text}")
            out.append(f"# TYPE {PREFIX}{name} {kind}")
            out.extend(f"{PREFIX}{name}{labels} {_number(value)}" for labels, value in samples)

        with self._lock:
            info = f'{{version="{_escape(__version__)}",run_id="{_escape(self._run_id)}"}}'
            metric("info", "gauge", "The run-manager's own version and the run it supervises.", [(info, 1)])
            metric("container_up", "gauge", "1 while the client container runs, else 0.", [("", self._up)])
            uptime = now - self._started_at if self._started_at is not None else 0.0
            metric(
                "container_uptime_seconds", "gauge", "How long the current container has run.", [("", uptime)]
            )
            metric("container_starts_total", "counter", "Client containers started.", [("", self._starts)])
            metric(
                "container_restarts_total",
                "counter",
                "Restarts after the client exited with an error.",
                [("", self._restarts)],
            )
            metric(
                "version_changes_total",
                "counter",
                "Times the run's client_version changed under a running manager.",
                [("", self._version_changes)],
            )
            if self._version:
                labels = f'{{client_version="{_escape(self._version)}"}}'
                metric("client_version_info", "gauge", "The client_version now running.", [(labels, 1)])
            if self._last_exit is not None:
                metric(
                    "last_exit_code",
                    "gauge",
                    "Exit code of the last client container.",
                    [("", self._last_exit)],
                )
            metric("log_lines_total", "counter", "Lines the client wrote.", [("", self._log_lines)])
            if self._last_log_at is not None:
                metric(
                    "last_log_line_age_seconds",
                    "gauge",
                    "Seconds since the client's last log line.",
                    [("", now - self._last_log_at)],
                )
            if self._rpc:
                rows = sorted(self._rpc.items())
                metric(
                    "rpc_up",
                    "gauge",
                    "1 when the endpoint answered its last getHealth probe.",
                    [(f'{{endpoint="{_escape(e)}"}}', r.up) for e, r in rows],
                )
                metric(
                    "rpc_latency_seconds",
                    "gauge",
                    "Round trip of the last getHealth probe (NaN when it failed).",
                    [
                        (f'{{endpoint="{_escape(e)}"}}', r.latency if r.latency is not None else math.nan)
                        for e, r in rows
                    ],
                )
                metric(
                    "rpc_probe_age_seconds",
                    "gauge",
                    "Seconds since the endpoint was last probed.",
                    [(f'{{endpoint="{_escape(e)}"}}', now - r.checked_at) for e, r in rows],
                )
        return "\n".join(out) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/metrics":
            body, status, kind = self.server.metrics.render().encode(), 200, CONTENT_TYPE
        elif self.path == "/":
            body, status, kind = b"run-manager metrics: GET /metrics\n", 200, "text/plain; charset=utf-8"
        else:
            body, status, kind = b"not found\n", 404, "text/plain; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds must not flood the manager's stderr


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, metrics: Metrics) -> None:
        self.metrics = metrics
        super().__init__((HOST, port), _Handler)


class MetricsServer:
    """Serve ``metrics`` on http://127.0.0.1:<port>/metrics from a daemon thread (port 0: any free port)."""

    def __init__(self, metrics: Metrics, port: int) -> None:
        try:
            self._server = _Server(port, metrics)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {HOST}:{port}: {exc.strerror or exc}",
                hint="choose a free port, or leave --metrics-port out",
            ) from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/metrics"

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class RpcProber:
    """Every ``interval`` seconds, ask each endpoint ``getHealth`` on its own (no fallback) and record it."""

    def __init__(
        self,
        metrics: Metrics,
        urls: Sequence[str],
        *,
        interval: float = 15.0,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._targets = list(zip(redacted_labels(urls), urls, strict=True))
        self._interval = interval
        self._timeout = timeout
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rpc-probe", daemon=True)

    def probe_once(self) -> None:
        """Probe every endpoint now."""
        from psyche.chain.rpc import RpcClient

        for label, url in self._targets:
            if self._stop.is_set():
                return
            began = self._monotonic()
            try:
                with RpcClient([url], timeout=self._timeout, max_rounds=1) as rpc:
                    rpc.get_health()
            except RunManagerError:
                self._metrics.set_rpc(label, up=False, latency=None)
            else:
                self._metrics.set_rpc(label, up=True, latency=self._monotonic() - began)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self._interval)

    def __enter__(self) -> RpcProber:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(self._timeout + 1)


class MainJobMetrics:
    """What the main job holds: nothing without a port; with one, the Metrics, its server and the prober.

    The port is bound at construction, so a busy port fails before any container starts; serving and
    probing run between ``__enter__`` and ``__exit__``.
    """

    def __init__(
        self,
        port: int | None,
        run_id: str,
        rpc_urls: Sequence[str],
        say: Callable[[str], None],
        *,
        probe_interval: float = 15.0,
    ) -> None:
        self.metrics = Metrics(run_id) if port is not None else None
        self._say = say
        self._server = (
            MetricsServer(self.metrics, port) if self.metrics is not None and port is not None else None
        )
        self._prober = (
            RpcProber(self.metrics, rpc_urls, interval=probe_interval) if self.metrics is not None else None
        )

    def tee(self, renderer: Callable[[ev.Event], None]) -> Callable[[ev.Event], None]:
        """``renderer`` itself without metrics; otherwise a callback that records each event first."""
        return renderer if self.metrics is None else self.metrics.tee(renderer)

    def __enter__(self) -> MainJobMetrics:
        if self._server is not None and self._prober is not None:
            self._server.__enter__()
            self._prober.__enter__()
            self._say(f"[run-manager] Prometheus metrics on {self._server.url}")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._prober is not None:
            self._prober.__exit__()
        if self._server is not None:
            self._server.close()
