"""End-to-end helpers for the chain commands: `run-manager localnet` as a subprocess, wallets, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner, Result
from solders.keypair import Keypair

from psyche.chain.rpc import RpcClient
from psyche.localnet.world import World
from psyche.manager import cli as cli_module
from tests.support.net import dead_url

T = TypeVar("T")

READY = "localnet ready"


@dataclass(frozen=True, slots=True)
class Localnet:
    """A running `run-manager localnet --clock-control` subprocess on free loopback ports."""

    rpc_url: str
    ws_url: str

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        answer = httpx.post(self.rpc_url, json=body, timeout=10, trust_env=False).json()
        assert "error" not in answer, answer
        return answer["result"]

    def advance_clock(self, seconds: int) -> None:
        self.rpc("localnet_advanceClock", [seconds])

    def airdrop(self, key: Keypair, lamports: int = 100 * 10**9) -> None:
        with_world(self, key, lambda w: w.airdrop(key.pubkey(), lamports))


@contextlib.contextmanager
def localnet_process(
    *,
    ledger: Path | None = None,
    rpc_port: int = 0,
    ws_port: int = 0,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Iterator[Localnet]:
    """Start the local chain as users do (`run-manager localnet`), wait for its ready line, stop it after.

    ``ledger`` and fixed ports let a test bring the same chain back after ``stop_signal`` (SIGKILL: a crash).
    """
    command = [
        sys.executable,
        "-c",
        "from psyche.manager.cli import main; main()",
        "localnet",
        "--rpc-port",
        str(rpc_port),
        "--ws-port",
        str(ws_port),
        "--slot-ms",
        "20",
        "--clock-control",
        *(("--ledger", str(ledger)) if ledger is not None else ()),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RPC", "WS_RPC"))}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            if line.startswith("RPC URL: "):
                urls["rpc"] = line.split(": ", 1)[1].strip()
            elif line.startswith("WebSocket URL: "):
                urls["ws"] = line.split(": ", 1)[1].strip()
            elif line.startswith(READY):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("run-manager localnet did not become ready within 60 s")
        else:
            raise RuntimeError(f"run-manager localnet exited with {proc.wait()} before it was ready")
        yield Localnet(urls["rpc"], urls["ws"])
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture(scope="module", params=["RPC", "dead RPC, RPC_2"])
def endpoints(request: pytest.FixtureRequest) -> str:
    """Every test runs twice: once on RPC, once with RPC on a dead port and RPC_2 on the chain."""
    return str(request.param)


@pytest.fixture(scope="module")
def net(endpoints: str) -> Iterator[Localnet]:
    with localnet_process() as chain:
        yield chain


def with_world(net: Localnet, payer: Keypair, action: Callable[[World], Awaitable[T]]) -> T:
    """Run one World coroutine (real signed transactions through the project's sender) against the chain."""

    async def main() -> T:
        with RpcClient([net.rpc_url]) as rpc:
            return await action(World(rpc, payer))

    return asyncio.run(main())


def write_keypair(directory: Path, name: str, keypair: Keypair) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(list(bytes(keypair))))
    path.chmod(0o600)
    return path


@dataclass
class Cli:
    """Invoke the real click group in-process, with the chain's endpoints in an injected environment."""

    net: Localnet
    home: Path
    fallback: bool = False
    runner: CliRunner = field(default_factory=CliRunner)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "100"}
        if self.fallback:
            # The primary is a dead port; every command must reach the chain through RPC_2.
            env.update(
                RPC=dead_url(), WS_RPC="ws://127.0.0.1:9", RPC_2=self.net.rpc_url, WS_RPC_2=self.net.ws_url
            )
        else:
            env.update(RPC=self.net.rpc_url, WS_RPC=self.net.ws_url)
        env.update(extra or {})
        return env

    def __call__(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        argv = [str(a) for a in args]
        return self.runner.invoke(cli_module.cli, argv, obj=self.environ(env), catch_exceptions=False)

    def ok(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        result = self(*args, env=env)
        assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str | Path, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", env=env).stdout)

    def fails(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        result = self(*args, env=env)
        assert result.exit_code != 0, f"{args} unexpectedly succeeded:\n{result.stdout}"
        return result


@pytest.fixture
def cli(net: Localnet, isolation: Path, endpoints: str) -> Cli:
    return Cli(net, isolation, fallback=endpoints != "RPC")


def error_line(result: Result) -> str:
    """The one `Error: ...` line of a failed command's stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


RUN_TOML = """\
[config]
warmup_time = 5
cooldown_time = 5
max_round_train_time = 10
round_witness_time = 2
global_batch_size_warmup_tokens = 0
epoch_time = 40
total_steps = 3
init_min_clients = {min_clients}
min_clients = {min_clients}
witness_nodes = 0
global_batch_size_start = 8
global_batch_size_end = 8
verification_percent = 0
waiting_for_members_extra_time = 3

[model.LLM]
architecture = "HfLlama"
data_type = "Pretraining"
max_seq_len = 16
cold_start_warmup_steps = 0

[model.LLM.checkpoint.Hub]
repo_id = "org/model"

[model.LLM.data_location]
Server = "127.0.0.1:9000"

[model.LLM.lr_schedule.Constant]
base_lr = 1e-4
warmup_init_lr = 0.0
warmup_steps = 10

[model.LLM.optimizer.Distro]
compression_decay = 0.5
compression_topk = 2
compression_chunk = 64
quantize_1bit = false
"""


def run_toml(directory: Path, min_clients: int = 2) -> Path:
    path = directory / "run.toml"
    path.write_text(RUN_TOML.format(min_clients=min_clients))
    return path
