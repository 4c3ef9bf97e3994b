"""RUN_MANAGER_RESTART_BACKOFF / RUN_MANAGER_MAX_RESTARTS: the main job's restart-policy overrides."""

from __future__ import annotations

import pytest

from psyche.errors import ConfigError
from psyche.manager.launch import RestartPolicy
from psyche.manager.mainjob import restart_policy


def test_defaults_without_overrides() -> None:
    assert restart_policy({}) == RestartPolicy()


def test_overrides_set_backoff_and_both_caps() -> None:
    policy = restart_policy({"RUN_MANAGER_RESTART_BACKOFF": "0.2", "RUN_MANAGER_MAX_RESTARTS": "2"})
    assert [policy.backoff(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]
    assert policy.max_restarts == 2 and policy.max_version_retries == 2
    assert restart_policy({"RUN_MANAGER_RESTART_BACKOFF": "120"}).backoff(1) == 120.0  # cap raised to it


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "RUN_MANAGER_RESTART_BACKOFF",
            "soon",
            "RUN_MANAGER_RESTART_BACKOFF: not a number of seconds (0-3600): 'soon'",
        ),
        (
            "RUN_MANAGER_RESTART_BACKOFF",
            "-1",
            "RUN_MANAGER_RESTART_BACKOFF: not a number of seconds (0-3600): '-1'",
        ),
        (
            "RUN_MANAGER_RESTART_BACKOFF",
            "nan",
            "RUN_MANAGER_RESTART_BACKOFF: not a number of seconds (0-3600): 'nan'",
        ),
        ("RUN_MANAGER_MAX_RESTARTS", "2.5", "RUN_MANAGER_MAX_RESTARTS: not a whole number >= 0: '2.5'"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        restart_policy({name: value})
    assert caught.value.message == message
