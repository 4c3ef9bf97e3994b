"""Every supervisor event has its own line: the renderer and the metrics match on the whole Event union.

mypy --strict checks the matches (``assert_never``); these tests check the same at run time: the samples
below cover the union exactly, each renders to words of its own (never a dataclass repr), and something
outside the union is refused loudly instead of printed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast, get_args

import pytest

from psyche.manager import events as ev
from psyche.manager.metrics import Metrics
from psyche.manager.render import EventRenderer
from psyche.manager.ui import UI

CID = "0123456789abcdef0123"
LINE = ev.LogLine("client says hi", "stdout", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))

SAMPLES: list[ev.Event] = [
    ev.OrphanFound(CID, "psyche-client-old", "exited"),
    ev.OrphanRemoved(CID, "psyche-client-old"),
    ev.ImageResolved("v1", "registry/client:v1", local=False),
    ev.UsingLocalImage("client:v1"),
    ev.PullStarted("registry/client:v1", 2, background=True),
    ev.PullProgress("abc123", "Downloading", 5_000_000, 10_000_000),
    ev.PullDone("registry/client:v1", 3.5),
    ev.PullFailed("registry/client:v1", 1, "manifest unknown", 2.0),
    ev.WalletKeyDelivery("file", "registry/client:v1", "auto"),
    ev.ContainerStarted(CID, "psyche-client-1", "registry/client:v1", "v1"),
    LINE,
    ev.LogLines((LINE, ev.LogLine("second", "stderr"))),
    ev.ContainerExited(CID, 3, 42.0),
    ev.ContainerRemoved(CID),
    ev.VersionChanged("v1", "v2", live=True),
    ev.Restarting(2, 10.0, "exit code 3"),
    ev.Stopping(CID, "stop requested", 10.0),
    ev.Stalled(CID, 301.0, 300.0),
    ev.Killing(CID),
    ev.Notice("keeping client_version 'v1' running"),
    ev.ChainUnreachable("every endpoint refused", 1.0),
    ev.ChainReachable(12.0),
    ev.GivingUp("exit code 3, 6 quick failures in a row", 3, ("last words",)),
    ev.Stopped("stop requested"),
    ev.Finished(0),
]


def test_the_samples_are_exactly_the_event_union() -> None:
    """A new member of ev.Event fails here until it has a sample, and so a rendering test below."""
    kinds = [type(sample) for sample in SAMPLES]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) == set(get_args(ev.Event))


def rendered(event: ev.Event, *, process: bool) -> str:
    """What the renderer writes for ``event`` alone (PullProgress: after its PullStarted, 10 s on)."""
    ui, _out, err = UI.for_tests(width=400)
    stdout = io.StringIO()
    now = [0.0]
    renderer = EventRenderer(ui, stdout=stdout, monotonic=lambda: now[0], timestamps=True, process=process)
    if isinstance(event, ev.PullProgress):  # progress is shown only within a pull, every few seconds
        renderer(ev.PullStarted("registry/client:v1", 1))
        err.truncate(0)
        err.seek(0)
        now[0] = 10.0
    renderer(event)
    renderer.close()
    return stdout.getvalue() + err.getvalue()


@pytest.mark.parametrize("process", [False, True], ids=["container", "process"])
@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_renders_to_words_of_its_own(event: ev.Event, process: bool) -> None:
    text = rendered(event, process=process)

    assert text.strip()
    assert f"{type(event).__name__}(" not in text  # the old fallback printed the dataclass repr


def test_client_lines_go_to_stdout_verbatim_and_the_rest_is_the_managers() -> None:
    assert rendered(LINE, process=False) == "2026-01-02T03:04:05.000+00:00 client says hi\n"
    assert rendered(ev.Finished(0), process=False).startswith("[run-manager] ")


@dataclass(frozen=True)
class NotAnEvent:
    what: str = "outside the union"


def test_something_outside_the_union_is_refused_not_printed() -> None:
    ui, _out, err = UI.for_tests()
    renderer = EventRenderer(ui, stdout=io.StringIO())
    stranger = cast(ev.Event, NotAnEvent())

    with pytest.raises(AssertionError):
        renderer(stranger)
    with pytest.raises(AssertionError):
        Metrics().observe(stranger)
    assert "NotAnEvent" not in err.getvalue()


def test_metrics_take_every_event() -> None:
    metrics = Metrics("run")
    for event in SAMPLES:
        metrics.observe(event)
    text = metrics.render()
    assert "psyche_run_manager_container_starts_total 1" in text
    assert "psyche_run_manager_log_lines_total 3" in text
