"""Metrics: state from supervisor events, the exposition, the 127.0.0.1 server, RPC probes (real loopback)."""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from psyche.errors import ConfigError
from psyche.manager import events as ev
from psyche.manager.metrics import CONTENT_TYPE, MainJobMetrics, Metrics, MetricsServer, RpcProber
from tests.support.clock import FakeClock
from tests.support.net import unused_port


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, for every sample line of an exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_events_drive_up_restarts_versions_and_log_age() -> None:
    clock = FakeClock(start=100.0)
    metrics = Metrics("run-1", monotonic=clock)
    seen: list[ev.Event] = []
    on_event = metrics.tee(seen.append)
    on_event(ev.ContainerStarted("c1", "n1", "img:v1", "v1"))
    clock.now += 30
    on_event(ev.LogLine("hello"))
    clock.now += 4
    s = samples(metrics.render())
    assert s["psyche_run_manager_log_lines_total"] == 1
    assert s["psyche_run_manager_container_up"] == 1
    assert s["psyche_run_manager_container_uptime_seconds"] == 34
    assert s["psyche_run_manager_last_log_line_age_seconds"] == 4
    assert s['psyche_run_manager_client_version_info{client_version="v1"}'] == 1
    on_event(ev.ContainerExited("c1", 1, 34.0))
    on_event(ev.Restarting(1, 5.0, "exit code 1"))
    on_event(ev.VersionChanged("v1", "v2", live=False))
    on_event(ev.ContainerStarted("c2", "n2", "img:v2", "v2"))
    s = samples(metrics.render())
    assert s["psyche_run_manager_container_starts_total"] == 2
    assert s["psyche_run_manager_container_restarts_total"] == 1
    assert s["psyche_run_manager_version_changes_total"] == 1
    assert s["psyche_run_manager_last_exit_code"] == 1
    assert s['psyche_run_manager_client_version_info{client_version="v2"}'] == 1
    on_event(ev.LogLines((ev.LogLine("a"), ev.LogLine("b", "stderr"))))  # a batch counts each line
    assert samples(metrics.render())["psyche_run_manager_log_lines_total"] == 3
    assert len(seen) == 7  # the renderer still gets every event
    on_event(ev.Stopped("stop requested"))
    assert samples(metrics.render())["psyche_run_manager_container_up"] == 0


def test_exposition_declares_every_metric_and_escapes_labels() -> None:
    metrics = Metrics('run "a"\\b')
    metrics.set_rpc("http://h:1", up=False, latency=None)
    text = metrics.render()
    assert 'run_id="run \\"a\\"\\\\b"' in text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    sampled = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert sampled == names == helped
    assert math.isnan(samples(text)['psyche_run_manager_rpc_latency_seconds{endpoint="http://h:1"}'])
    assert "last_log_line_age_seconds" not in text  # no line yet: absent rather than a made-up age


@pytest.fixture
def server() -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics("r")
    with MetricsServer(metrics, 0) as served:
        yield metrics, served


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_server_answers_metrics_on_loopback_and_404_elsewhere(server: tuple[Metrics, MetricsServer]) -> None:
    metrics, served = server
    metrics.observe(ev.ContainerStarted("c", "n", "i", "v9"))
    assert served.url == f"http://127.0.0.1:{served.port}/metrics"
    status, kind, body = get(served.url)
    assert (status, kind) == (200, CONTENT_TYPE)
    assert samples(body)["psyche_run_manager_container_up"] == 1
    assert get(f"http://127.0.0.1:{served.port}/nope")[0] == 404
    assert served._server.server_address[0] == "127.0.0.1"


def test_a_busy_port_is_a_config_error(server: tuple[Metrics, MetricsServer]) -> None:
    _, served = server
    with pytest.raises(ConfigError, match=rf"--metrics-port {served.port}: cannot listen on 127.0.0.1:"):
        MetricsServer(Metrics(), served.port)


def test_without_a_port_main_job_metrics_do_nothing() -> None:
    said: list[str] = []
    shown: list[ev.Event] = []
    renderer = shown.append
    with MainJobMetrics(None, "r", ["http://127.0.0.1:9"], said.append) as m:
        assert m.tee(renderer) is renderer
    assert said == [] and shown == []


class _Health(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def healthy_rpc() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_rpc_probe_marks_each_endpoint_up_or_down_with_latency(healthy_rpc: str) -> None:
    dead = f"http://127.0.0.1:{unused_port()}/?api-key=s3cret"
    metrics = Metrics()
    RpcProber(metrics, [healthy_rpc, dead], timeout=2).probe_once()
    text = metrics.render()
    s = samples(text)
    assert s[f'psyche_run_manager_rpc_up{{endpoint="{healthy_rpc}"}}'] == 1
    assert 0 < s[f'psyche_run_manager_rpc_latency_seconds{{endpoint="{healthy_rpc}"}}'] < 2
    down = [k for k in s if k.startswith("psyche_run_manager_rpc_up") and s[k] == 0]
    assert len(down) == 1 and "api-key=***" in down[0]
    assert "s3cret" not in text  # endpoint labels are redacted
