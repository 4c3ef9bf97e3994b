"""Scrape the --metrics-port endpoint while a real Supervisor runs (busybox on the engine, or scripted)."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections.abc import Callable

import docker
import pytest

from psyche.manager.launch import LaunchConfig, RestartPolicy
from psyche.manager.metrics import MainJobMetrics
from psyche.manager.runtime import DockerRuntime
from psyche.manager.supervisor import Supervisor
from tests.support.clock import FakeClock
from tests.support.engine import BuildImage
from tests.support.fake_runtime import FakeRuntime, Script
from tests.support.net import dead_url

FOREVER = 'trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done'


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = answer.read().decode()
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def wait_for(url: str, ready: Callable[[dict[str, float]], bool], timeout: float = 30.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = scrape(url)
        if ready(seen):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"metrics never got there; last scrape: {seen}")


@pytest.mark.docker
def test_scrape_during_a_supervised_busybox_run(
    docker_client: docker.DockerClient,
    busybox_image: BuildImage,
    container_labels: dict[str, str],
) -> None:
    pushed = busybox_image("rt-run")
    launch = LaunchConfig(
        run_id=f"metrics-{uuid.uuid4().hex[:8]}",
        repository=pushed.repository,
        gpus=False,
        command=("sh", "-c", FOREVER),
        extra_labels=container_labels,
    )
    rpc = dead_url()
    metrics = MainJobMetrics(0, launch.run_id, [rpc], lambda _line: None, probe_interval=0.2)
    assert metrics._server is not None
    url = metrics._server.url
    supervisor = Supervisor(
        DockerRuntime(docker_client), launch, lambda: pushed.tag, on_event=metrics.tee(print)
    )
    result: list[int] = []
    with metrics:
        thread = threading.Thread(target=lambda: result.append(supervisor.run()))
        thread.start()
        try:
            up = wait_for(
                url,
                lambda s: (
                    s.get("psyche_run_manager_container_up") == 1
                    and s.get("psyche_run_manager_log_lines_total", 0) >= 1
                ),
            )
        finally:
            supervisor.request_stop()
            thread.join(60)
        down = scrape(url)
    assert up[f'psyche_run_manager_client_version_info{{client_version="{pushed.tag}"}}'] == 1
    assert 0 <= up["psyche_run_manager_last_log_line_age_seconds"] < 30
    assert up[f'psyche_run_manager_rpc_up{{endpoint="{rpc}"}}'] == 0
    assert result == [0]
    assert down["psyche_run_manager_container_up"] == 0
    assert down["psyche_run_manager_container_starts_total"] == 1
    assert down["psyche_run_manager_container_restarts_total"] == 0


def test_scrape_counts_a_restart_and_a_version_change_with_a_scripted_runtime() -> None:
    metrics = MainJobMetrics(0, "scripted", [], lambda _line: None)
    assert metrics._server is not None
    url = metrics._server.url
    holder: list[Supervisor] = []
    scraped: list[dict[str, float]] = []

    def second_container_running() -> None:
        # Runs in the supervisor's wait thread once the second container is up: scrape, then stop.
        scraped.append(wait_for(url, lambda s: s.get("psyche_run_manager_container_starts_total") == 2))
        holder[0].request_stop()

    clock = FakeClock()
    runtime = FakeRuntime(
        clock,
        [
            Script(exit_code=3, stdout=("boom",)),
            Script(until_stopped=True, on_running=second_container_running),
        ],
    )
    launch = LaunchConfig(run_id="scripted", repository="127.0.0.1:5000/psyche-client", gpus=False)
    source = iter(["v1", "v2"])  # the restart reads the version again and finds v2
    supervisor = Supervisor(
        runtime,
        launch,
        lambda: next(source, "v2"),
        on_event=metrics.tee(lambda _event: None),
        policy=RestartPolicy(backoff_base=1.0),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    holder.append(supervisor)
    with metrics:
        assert supervisor.run() == 0
    (during,) = scraped
    assert during["psyche_run_manager_container_restarts_total"] == 1
    assert during["psyche_run_manager_version_changes_total"] == 1
    assert during['psyche_run_manager_client_version_info{client_version="v2"}'] == 1
    assert during["psyche_run_manager_last_exit_code"] == 3
