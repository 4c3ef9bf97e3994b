"""The client container's entrypoint: required env, config check, restart loop, signals; and env parsing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.client.entrypoint import (
    RUN_ONCE_ENV,
    Child,
    RestartLoop,
    RestartPolicy,
    missing_required,
    run_once,
)
from psyche.client.env import load_client_env
from psyche.client.identity import derive_identity
from psyche.errors import ConfigError, WalletError
from tests.support.clock import FakeClock
from tests.support.paths import PROJECT_ROOT


class FakeChild(Child):
    """A client process that exits with ``code`` after ``runtime`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, code: int, runtime: float) -> None:
        self.clock, self.code, self.runtime = clock, code, runtime
        self.terminated = False

    def wait(self) -> int:
        self.clock.now += self.runtime
        return self.code

    def terminate(self) -> None:
        self.terminated = True


def loop_with(
    exits: Sequence[tuple[int, float]], *, once: bool = False
) -> tuple[RestartLoop, list[str], list[FakeChild]]:
    clock = FakeClock(start=0.0)
    lines: list[str] = []
    children: list[FakeChild] = []
    script = iter(exits)

    def launch() -> FakeChild:
        code, runtime = next(script)
        child = FakeChild(clock, code, runtime)
        children.append(child)
        return child

    loop = RestartLoop(
        launch, policy=RestartPolicy(delay_s=0.0), monotonic=clock, say=lines.append, once=once
    )
    return loop, lines, children


def test_exit_10_propagates_at_once() -> None:
    loop, lines, children = loop_with([(1, 1), (10, 1)])
    assert loop.run() == 10
    assert len(children) == 2
    assert lines[-1] == "[!] Version mismatch detected. Exiting container without retry..."


def test_five_fast_failures_end_with_exit_1() -> None:
    loop, lines, children = loop_with([(1, 3)] * 10)
    assert loop.run() == 1
    assert len(children) == 5
    assert lines[-1] == "[!] Client exited with code 1. Maximum restarts reached"
    assert lines[0] == "[!] Client exited with code 1. Restarting in 0s (1/5)..."


def test_a_run_of_120_seconds_resets_the_count() -> None:
    exits = [(1, 3)] * 4 + [(1, 120)] + [(1, 3)] * 4 + [(0, 1)]
    loop, lines, children = loop_with(exits)
    assert loop.run() == 0
    assert len(children) == 10
    assert lines[-1] == "[+] The run is finished. Exiting container."


@pytest.mark.parametrize("code", [1, 7, 10, 0, 137])
def test_run_once_starts_one_client_and_exits_with_its_code(code: int) -> None:
    # Under the run-manager (PSYCHE_RUN_ONCE=1) the manager restarts; the image must not retry as well.
    loop, lines, children = loop_with([(code, 3), (0, 1)], once=True)
    assert loop.run() == code
    assert len(children) == 1
    assert lines == []


def test_run_once_reads_the_variable_the_manager_sets() -> None:
    from psyche.manager.launch import RUN_ONCE_ENV as MANAGER_SETS

    assert MANAGER_SETS == RUN_ONCE_ENV
    assert (
        run_once({RUN_ONCE_ENV: "1"})
        and run_once({RUN_ONCE_ENV: " True "})
        and run_once({RUN_ONCE_ENV: "yes"})
    )
    assert not run_once({}) and not run_once({RUN_ONCE_ENV: "0"}) and not run_once({RUN_ONCE_ENV: ""})


def test_a_signal_during_launch_stops_without_deadlock() -> None:
    # A SIGTERM handler runs on the main thread: if it lands while run() is inside launch(), stop() runs
    # there, nested in run()'s critical section. It must neither deadlock nor leave the child running.
    clock = FakeClock(start=0.0)
    children: list[FakeChild] = []
    holder: list[RestartLoop] = []

    def launch() -> FakeChild:
        holder[0].stop()
        child = FakeChild(clock, -15, 0.1)
        children.append(child)
        return child

    loop = RestartLoop(launch, policy=RestartPolicy(delay_s=0.0), monotonic=clock, say=lambda _line: None)
    holder.append(loop)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(loop.run()), daemon=True)
    runner.start()
    runner.join(5)
    assert not runner.is_alive(), "RestartLoop.run() deadlocked on a stop() during launch()"
    assert result == [0]
    assert [c.terminated for c in children] == [True]


def test_stop_terminates_the_child_and_exits_0() -> None:
    started = threading.Event()
    release = threading.Event()

    class Blocking:
        terminated = False

        def wait(self) -> int:
            started.set()
            release.wait(5)
            return -15

        def terminate(self) -> None:
            self.terminated = True
            release.set()

    child = Blocking()
    loop = RestartLoop(lambda: child, say=lambda _: None)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(loop.run()))
    thread.start()
    assert started.wait(5)
    loop.stop()
    thread.join(5)
    assert result == [0]
    assert child.terminated


def test_missing_required_names_the_first_unset_variable() -> None:
    full = {"NVIDIA_DRIVER_CAPABILITIES": "all", "RPC": "http://x", "WS_RPC": "ws://x", "RUN_ID": "r"}
    assert missing_required(full) is None
    assert missing_required({**full, "RPC": ""}) == "RPC"
    assert missing_required({k: v for k, v in full.items() if k != "RUN_ID"}) == "RUN_ID"


def client_env(port: int, secret: str | None = None, **more: str) -> dict[str, str]:
    """Every variable the client requires, its chain on a loopback ``port`` nothing answers, and a wallet."""
    return {
        "NVIDIA_DRIVER_CAPABILITIES": "all",
        "RPC": f"http://127.0.0.1:{port}",
        "WS_RPC": f"ws://127.0.0.1:{port}",
        "RUN_ID": "r",
        "RAW_WALLET_PRIVATE_KEY": secret or json.dumps(list(bytes(Keypair()))),
        **more,
    }


def _module(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "psyche.client", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
    )


def test_entrypoint_refuses_a_missing_variable_with_the_reference_line() -> None:
    result = _module(
        {"NVIDIA_DRIVER_CAPABILITIES": "all", "RPC": "http://127.0.0.1:1", "WS_RPC": "ws://127.0.0.1:1"}
    )
    assert result.returncode == 1
    assert result.stdout.strip() == "[!] The RUN_ID env variable was not set."


def test_entrypoint_reports_a_bad_value_in_one_line_without_restarting(tmp_path: Path) -> None:
    secret = json.dumps(list(bytes(Keypair())))
    env = client_env(1, secret, DATA_PARALLELISM="two", CHECKPOINT_DIR=str(tmp_path))
    result = _module(env)
    assert result.returncode == 1
    assert result.stderr.strip() == "[!] DATA_PARALLELISM: not an integer: 'two'"
    assert secret not in result.stdout + result.stderr


@pytest.mark.slow
def test_train_exits_1_when_no_rpc_answers() -> None:
    env = {
        "RPC": "http://127.0.0.1:9",
        "WS_RPC": "ws://127.0.0.1:9",
        "RUN_ID": "r",
        "RAW_WALLET_PRIVATE_KEY": json.dumps(list(bytes(Keypair()))),
    }
    result = _module(env, "train")
    assert result.returncode == 1
    assert "all RPC endpoints failed" in result.stdout


@pytest.mark.slow
def test_entrypoint_with_run_once_runs_a_failing_client_one_time() -> None:
    env = client_env(9, **{RUN_ONCE_ENV: "1"})
    result = _module(env)
    assert result.returncode == 1
    assert (
        result.stdout.splitlines()[0]
        == "[+] Psyche reference client, run r (run once: the run-manager restarts it)"
    )
    assert result.stdout.count("all RPC endpoints failed") == 1
    assert "Restarting" not in result.stdout


@pytest.mark.slow
def test_sigterm_stops_the_entrypoint_with_exit_0() -> None:
    env = client_env(9)
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "psyche.client"],
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    with proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("[+] Psyche reference client, run r")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


# ------------------------------------------------------------------------------------------- env


def _env(**extra: str) -> dict[str, str]:
    return {"RUN_ID": '"my-run"', "RAW_WALLET_PRIVATE_KEY": json.dumps(list(bytes(KEYPAIR))), **extra}


KEYPAIR = Keypair.from_seed(bytes(range(32)))


def test_env_defaults_and_trimming() -> None:
    env = load_client_env(_env())
    assert env.run_id == "my-run"
    assert env.rpc_urls == ["http://127.0.0.1:8899"]
    assert env.ws_urls == ["ws://127.0.0.1:8900"]
    assert env.keypair.pubkey() == KEYPAIR.pubkey()
    assert env.authorizer == Pubkey.from_string("11111111111111111111111111111111")
    assert env.client_version is None
    assert "keypair" not in repr(env) and str(list(bytes(KEYPAIR))) not in repr(env)


def test_env_backups_need_both_halves_and_differ_from_the_primary() -> None:
    env = load_client_env(
        _env(
            RPC="http://a:1",
            WS_RPC="ws://a:2",
            RPC_2="http://a:1",
            WS_RPC_2="ws://b:2",
            RPC_3="http://c:1",
            WS_RPC_3="ws://c:2",
        )
    )
    assert env.rpc_urls == ["http://a:1", "http://c:1"]
    assert load_client_env(_env(WS_RPC_2="ws://b:2")).rpc_urls == ["http://127.0.0.1:8899"]


def test_env_wallet_from_a_file_and_base58(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    path.write_text(json.dumps(list(bytes(KEYPAIR))))
    env = load_client_env({"RUN_ID": "r", "WALLET_PRIVATE_KEY_PATH": str(path)})
    assert env.keypair.pubkey() == KEYPAIR.pubkey()
    env = load_client_env({"RUN_ID": "r", "RAW_WALLET_PRIVATE_KEY": str(KEYPAIR)})
    assert env.keypair.pubkey() == KEYPAIR.pubkey()


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ({"RUN_ID": ""}, ConfigError, "RUN_ID: not set (the run to train)"),
        ({"RPC": "ftp://x"}, ConfigError, "RPC: not an http(s) URL: 'ftp://x'"),
        ({"WS_RPC": "http://x"}, ConfigError, "WS_RPC: not a ws(s) URL: 'http://x'"),
        ({"AUTHORIZER": "nope"}, ConfigError, "AUTHORIZER: not a base58 public key: 'nope'"),
        (
            {"RAW_WALLET_PRIVATE_KEY": "[1,2,3]"},
            WalletError,
            "RAW_WALLET_PRIVATE_KEY: a keypair is 64 bytes, got 3",
        ),
        (
            {"RAW_WALLET_PRIVATE_KEY": "0OIl-secret"},
            WalletError,
            "RAW_WALLET_PRIVATE_KEY: not a valid keypair",
        ),
        (
            {"RAW_IDENTITY_SECRET_KEY": "abcd"},
            ConfigError,
            "RAW_IDENTITY_SECRET_KEY: expected 32 bytes of hex",
        ),
    ],
)
def test_env_errors_are_one_line_and_keep_secrets_out(
    extra: dict[str, str], error: type, message: str
) -> None:
    with pytest.raises(error) as info:
        load_client_env(_env(**extra))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert "secret" not in str(info.value)


def test_missing_wallet_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no wallet: set RAW_WALLET_PRIVATE_KEY or WALLET_PRIVATE_KEY_PATH"):
        load_client_env({"RUN_ID": "r"})


def test_identity_is_deterministic_per_run_and_wallet_and_can_be_given() -> None:
    a = derive_identity("run", KEYPAIR)
    assert a.public == derive_identity("run", KEYPAIR).public
    assert a.public != derive_identity("other", KEYPAIR).public
    given = derive_identity("run", KEYPAIR, bytes(32))
    assert given.public == bytes(Keypair.from_seed(bytes(32)).pubkey())
    assert "P2PIdentity(public=" in repr(a)
    env = load_client_env(_env(RAW_IDENTITY_SECRET_KEY="11" * 32))
    assert env.identity_secret == bytes([0x11]) * 32
