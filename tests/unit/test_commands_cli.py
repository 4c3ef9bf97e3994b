"""Chain commands through the real click group without a chain: help, flags, env fallbacks, error lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from solders.keypair import Keypair

from psyche.manager import cli as cli_module
from tests.support.net import dead_url

KEYPAIR = Keypair.from_seed(bytes(range(3, 35)))
SECRET_JSON = json.dumps(list(bytes(KEYPAIR)))
PUBKEY = str(KEYPAIR.pubkey())
CHAIN_COMMANDS = [
    "can-join",
    "treasurer-claim-rewards",
    "list-runs",
    "json-dump-user",
    "join-authorization-create",
    "join-authorization-read",
    "join-authorization-delegate",
    "join-authorization-delete",
    "create-run",
    "update-config",
    "set-paused",
    "set-future-epoch-rates",
    "checkpoint",
    "tick",
    "close-run",
    "treasurer-top-up-rewards",
    "json-dump-run",
]

Invoke = Callable[..., Result]


@pytest.fixture
def cli(isolation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.chdir(tmp_path)
    dead = dead_url()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        environ = {"HOME": str(isolation), "NO_COLOR": "1", "COLUMNS": "100", "RPC": dead, **(env or {})}
        return CliRunner().invoke(cli_module.cli, list(args), obj=environ, catch_exceptions=False)

    return invoke


def _error(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("name", CHAIN_COMMANDS)
def test_every_command_has_help_with_the_shared_options(cli: Invoke, name: str) -> None:
    result = cli(name, "--help")
    assert result.exit_code == 0
    for flag in ("--rpc", "--ws-rpc", "--env-file", "--json"):
        assert flag in result.stdout
    assert name in cli("--help").stdout


def test_missing_required_option_names_the_variable(cli: Invoke) -> None:
    result = cli("json-dump-run")
    assert result.exit_code == 2
    assert "Missing option '-r' / '--run-id' (or set RUN_ID)" in result.stderr


def test_flags_fall_back_to_the_env_file_with_its_line(cli: Invoke, tmp_path: Path) -> None:
    long_id = tmp_path / "long.env"
    long_id.write_text(f"RUN_ID={'x' * 33}\n")
    too_long = cli("create-run", "--env-file", str(long_id), "-c", "v1")
    assert _error(too_long) == "Error: run_id must be 32 bytes or less, got 33 bytes"
    env_file = tmp_path / "run.env"
    env_file.write_text("RUN_ID=ok\nTREASURER_INDEX=abc\n")
    bad_index = cli("json-dump-run", "--env-file", str(env_file), "-r", "ok")
    assert bad_index.exit_code == 1
    assert _error(bad_index).startswith(
        f"Error: TREASURER_INDEX in {env_file}:2: 'abc' is not a valid integer"
    )
    # The file wins over the process environment (as the reference); without it the shell's value counts.
    from_env = cli("json-dump-run", "--env-file", str(env_file), "-r", "ok", env={"TREASURER_INDEX": "-1"})
    assert _error(from_env).startswith(f"Error: TREASURER_INDEX in {env_file}:2: 'abc'")
    shell_only = cli("json-dump-run", "-r", "ok", env={"TREASURER_INDEX": "-1"})
    assert _error(shell_only).startswith("Error: TREASURER_INDEX in the environment: -1 is not in the range")


def test_can_join_without_address_or_wallet(cli: Invoke) -> None:
    result = cli("can-join", "-r", "r1")
    assert result.exit_code == 1
    assert _error(result).startswith("Error: Failed to read wallet file from: ")
    assert "hint: pass --address <PUBKEY> to check a key without a wallet" in result.stderr


def test_dead_rpc_is_one_error_line_and_the_secret_never_shows(cli: Invoke) -> None:
    env = {"RAW_WALLET_PRIVATE_KEY": SECRET_JSON}
    result = cli("join-authorization-create", "--authorizer", PUBKEY, env=env)
    assert result.exit_code == 1
    assert _error(result).startswith("Error: all RPC endpoints failed: http://127.0.0.1:")
    assert SECRET_JSON not in result.output and str(KEYPAIR) not in result.output


def test_rpc_flag_wins_and_loses_its_quotes(cli: Invoke) -> None:
    dead = dead_url()
    result = cli("json-dump-run", "-r", "r1", "--rpc", f'"{dead}"')
    assert _error(result).startswith(f"Error: all RPC endpoints failed: {dead}: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["set-future-epoch-rates", "-r", "r1"],
            "Error: give --earning-rate-total-shared and/or --slashing-rate-per-client",
        ),
        (
            ["create-run", "-r", "r1", "-c", "v1", "--treasurer-index", "1"],
            "Error: --treasurer-index needs --treasurer-collateral-mint (a treasurer run needs a mint)",
        ),
        (
            ["create-run", "-r", "r1", "-c", "v" * 97],
            "Error: --client-version must be 96 bytes or less, got 97 bytes",
        ),
        (
            ["create-run", "-r", "r1", "-c", ""],
            "Error: --client-version '' is not a Docker tag or sha256 digest: it is empty",
        ),
        (
            ["update-config", "-r", "r1", "--client-version", "bad tag/../x"],
            "Error: --client-version 'bad tag/../x' is not a Docker tag or sha256 digest: "
            "it contains whitespace",
        ),
        (
            ["update-config", "-r", "r1", "--client-version", ""],
            "Error: --client-version '' is not a Docker tag or sha256 digest: it is empty",
        ),
        (
            ["join-authorization-delegate", "--join-authority", PUBKEY],
            "Error: nothing to do: pass --delegates-clear and/or --delegates-added <PUBKEY>...",
        ),
        (
            ["join-authorization-delegate", "--join-authority", PUBKEY, PUBKEY],
            f"Error: unexpected argument {PUBKEY}: delegate keys follow --delegates-added",
        ),
        (
            ["checkpoint", "-r", "r1", "--repo", "o" * 65],
            "Error: --repo must be 64 bytes or less, got 65 bytes",
        ),
    ],
)
def test_local_validation_errors(cli: Invoke, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1
    assert _error(result) == message


def test_bad_pubkey_is_a_usage_error(cli: Invoke) -> None:
    result = cli("can-join", "-r", "r1", "--address", "not-a-key")
    assert result.exit_code == 2
    assert "not a 32-byte base58 public key: 'not-a-key'" in result.stderr


def test_update_config_client_version_reads_client_version(cli: Invoke) -> None:
    result = cli("update-config", "--help", env={"COLUMNS": "200"})
    assert "[env var: CLIENT_VERSION" in " ".join(result.stdout.split())
