"""The run-manager shell through the real click group: options, Docker-mode gate, error mapping, laziness."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from solders.keypair import Keypair

from psyche.errors import ConfigError, VersionMismatch
from psyche.manager import cli as cli_module
from psyche.manager import mainjob
from psyche.manager.app import App
from psyche.manager.cli import Subcommand
from psyche.manager.ui import UI

KEYPAIR = Keypair.from_seed(bytes(range(7, 39)))
KEY_JSON = json.dumps(list(bytes(KEYPAIR)))
PUBKEY = str(KEYPAIR.pubkey())
KEY_B58 = str(KEYPAIR)  # solders renders a keypair as base58 of its 64 bytes
OTHER_PUBKEY = "EnU7DRx5az5YWxaxgqEGbXSYtudcfnjXewyBRRZCjJPw"
# The shell every test starts from has its endpoints set (RPC is required); None in ``env`` unsets one.
CHAIN = {"RPC": "http://rpc.test:8899", "WS_RPC": "ws://rpc.test:8900"}

Invoke = Callable[..., Result]
CALLS: list[App] = []


def fake_main_job(app: App) -> int:
    CALLS.append(app)
    return 0


@click.command("boom")
def boom() -> None:
    raise RuntimeError("a bug")


@click.command("mismatch")
def mismatch() -> None:
    raise VersionMismatch()


@pytest.fixture
def cli(isolation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Invoke the root group in tmp_path with an injected environment; exceptions are not swallowed."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
        merged = {"HOME": str(isolation), "NO_COLOR": "1", "COLUMNS": "100", **CHAIN, **(env or {})}
        environ = {k: v for k, v in merged.items() if v is not None}
        return runner.invoke(cli_module.cli, list(args), obj=environ, catch_exceptions=False)

    return invoke


@pytest.fixture
def wallet_file(isolation: Path) -> Path:
    path = isolation / ".config" / "solana" / "id.json"
    path.parent.mkdir(parents=True)
    path.write_text(KEY_JSON)
    path.chmod(0o600)
    return path


@pytest.fixture
def no_main_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """The main job replaced by one that records its App and returns 0 (no chain, no container)."""
    CALLS.clear()
    monkeypatch.setattr(mainjob, "run_main_job", fake_main_job)


# --- help and version --------------------------------------------------------------------------


def test_help_lists_commands_and_env_vars(cli: Invoke) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())  # help is wrapped to the terminal width
    assert text.startswith("Usage: run-manager [OPTIONS] [COMMAND] [ARGS]...")
    assert "show-config Validate the .env and environment" in text
    assert "[env var: RUN_MANAGER_ENV_FILE]" in text
    assert "[env var: COORDINATOR_PROGRAM_ID" in text
    for flag in ("--env-file", "--local", "--authorizer", "--entrypoint", "--privileged", "-V", "--version"):
        assert flag in text


def test_every_lazy_command_resolves_and_has_a_summary() -> None:
    group = cli_module.cli
    ctx = click.Context(group)
    for name, subcommand in cli_module.COMMANDS.items():
        assert isinstance(group.get_command(ctx, name), click.Command)
        assert subcommand.summary.endswith("."), name


def test_value_options_are_read_from_the_parameters() -> None:
    takes_value = cli_module.value_options(cli_module.cli)
    assert {"--env-file", "--authorizer", "--entrypoint", "--runtime", "--metrics-port"} <= takes_value
    assert not {"--local", "--gpus", "--no-gpus", "--privileged", "-V", "--version", "--help"} & takes_value


def test_short_version(cli: Invoke) -> None:
    result = cli("-V")
    assert (result.exit_code, result.stdout) == (0, "run-manager 0.2.0\n")


def test_long_version(cli: Invoke) -> None:
    lines = cli("--version").stdout.splitlines()
    assert lines[0] == "run-manager 0.2.0"
    assert lines[1].startswith("git: ") and len(lines[1]) > len("git: ")
    assert lines[2].startswith("built: ")


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from psyche.manager.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'docker', 'solders', 'httpx', 'rich', 'dotenv', 'solana', 'websockets'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr.strip() == "[]"
    assert "Commands:" in done.stdout


# --- Docker mode gate -----------------------------------------------------------------------------


def test_no_subcommand_without_env_file(cli: Invoke) -> None:
    result = cli()
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: --env-file is required for Docker mode. Use 'run-manager --help' to see available commands.\n"
    )
    assert result.stdout == ""


def test_missing_env_file(cli: Invoke) -> None:
    result = cli("--env-file", ".env.missing")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: --env-file .env.missing: no such file; pass the path of an existing .env file\n"
    )


def test_env_file_from_environment_variable(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    # click reads envvar defaults from the process environment at parse time.
    monkeypatch.setenv("RUN_MANAGER_ENV_FILE", ".env.other")
    result = cli()
    assert (
        result.stderr
        == "Error: --env-file .env.other: no such file; pass the path of an existing .env file\n"
    )


def test_bad_line_is_one_error_line(cli: Invoke) -> None:
    Path(".env.local").write_text("RPC=http://a\nRPC_2=htp://b\nWS_RPC_2=ws://b\n")
    result = cli("--env-file", ".env.local")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: RPC_2 in .env.local:2: not an http(s) URL: 'htp://b'; use http:// or https://\n"
    )


def test_trailing_args_need_entrypoint(cli: Invoke) -> None:
    Path(".env").write_text("RUN_ID=x\n")
    result = cli("--env-file", ".env", "--", "a", "b c")
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: unexpected trailing arguments ["a", "b c"]. did you mean to pass --entrypoint?\n'
    )


def test_main_job_starts_once_settings_and_wallet_are_valid(
    cli: Invoke, wallet_file: Path, no_main_job: None
) -> None:
    Path(".env").write_text("RUN_ID=x\n")
    result = cli("--env-file", ".env")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"User pubkey: {PUBKEY}",
        "Using coordinator program ID: 4SHugWqSXwKE5fqDchkJcPEqnoZE22VYKtSTVm7axbT7",
    ]
    assert [app.settings.run_id for app in CALLS] == ["x"]


def test_main_job_receives_the_app(cli: Invoke, wallet_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mainjob, "run_main_job", fake_main_job)
    CALLS.clear()
    Path(".env").write_text("RUN_ID=x\n")
    args = ("--env-file", ".env", "--local", "--privileged", "--authorizer", OTHER_PUBKEY)
    result = cli(*args, "--entrypoint", "bash", "--", "-c", "echo hi")
    assert result.exit_code == 0, result.output
    (app,) = CALLS
    assert app.options.entrypoint == "bash"
    assert app.options.entrypoint_args == ("-c", "echo hi")
    assert app.options.local and app.options.privileged
    assert app.options.authorizer == OTHER_PUBKEY
    assert app.settings.run_id == "x"
    assert app.wallet.pubkey == PUBKEY


def test_stall_timeout_from_the_flag_or_its_env_var(
    cli: Invoke, wallet_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mainjob, "run_main_job", fake_main_job)
    Path(".env").write_text("RUN_ID=x\n")
    CALLS.clear()
    assert cli("--env-file", ".env", "--stall-timeout", "90").exit_code == 0
    monkeypatch.setenv("RUN_MANAGER_STALL_TIMEOUT", "2.5")
    assert cli("--env-file", ".env").exit_code == 0
    assert [app.options.stall_timeout for app in CALLS] == [90.0, 2.5]

    monkeypatch.delenv("RUN_MANAGER_STALL_TIMEOUT")
    result = cli("--env-file", ".env", "--stall-timeout", "0.5")
    assert result.exit_code == 2
    assert (
        "Invalid value for '--stall-timeout'" in result.output
        and "0.5 is not in the range x>=1.0" in result.output
    )


def test_wallet_key_via_defaults_to_auto_and_refuses_other_words(
    cli: Invoke, wallet_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mainjob, "run_main_job", fake_main_job)
    Path(".env").write_text("RUN_ID=x\n")
    CALLS.clear()
    assert cli("--env-file", ".env").exit_code == 0
    assert cli("--env-file", ".env", "--wallet-key-via", "env").exit_code == 0
    monkeypatch.setenv("RUN_MANAGER_WALLET_KEY_VIA", "file")
    assert cli("--env-file", ".env").exit_code == 0
    assert [app.options.wallet_key_via for app in CALLS] == ["auto", "env", "file"]

    result = cli("--env-file", ".env", "--wallet-key-via", "argv")
    assert result.exit_code == 2
    assert "Invalid value for '--wallet-key-via'" in result.output and "'argv' is not one of" in result.output


def test_missing_wallet_file(cli: Invoke, isolation: Path) -> None:
    Path(".env").write_text("RUN_ID=x\n")
    result = cli("--env-file", ".env")
    assert result.exit_code == 1
    path = isolation / ".config/solana/id.json"
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"Error: Failed to read wallet file from: {path} "
        "(no such file; path from the default ~/.config/solana/id.json)"
    )
    assert lines[1].startswith("hint: check the path and permissions (chmod 600)")


def test_permission_warning(cli: Invoke, wallet_file: Path, no_main_job: None) -> None:
    wallet_file.chmod(0o644)
    Path(".env").write_text("RUN_ID=x\n")
    result = cli("--env-file", ".env")
    assert result.stderr.splitlines()[0] == (
        f"Warning: wallet file {wallet_file} is accessible by group or others (mode 0644); "
        f"run chmod 600 {wallet_file}"
    )


def test_secret_never_printed(cli: Invoke, no_main_job: None) -> None:
    Path(".env").write_text(f"RAW_WALLET_PRIVATE_KEY={KEY_JSON}\nRUN_ID=x\n")
    outputs = [
        cli("--env-file", ".env").output,
        cli("--env-file", ".env", "show-config").output,
        cli("--env-file", ".env", "show-config", "--json", "--wallet").output,
    ]
    Path(".env").write_text(f"RAW_WALLET_PRIVATE_KEY={KEY_JSON[:-1]}\n")
    outputs.append(cli("--env-file", ".env").output)
    Path(".env").write_text(f"RAW_WALLET_PRIVATE_KEY={KEY_B58}\nRUN_ID=x\n")
    outputs.append(cli("--env-file", ".env").output)
    outputs.append(cli("--env-file", ".env", "show-config", "--wallet").output)
    Path(".env").write_text(f"RAW_WALLET_PRIVATE_KEY={KEY_B58[:-2]}\nRUN_ID=x\n")
    outputs.append(cli("--env-file", ".env").output)
    for output in outputs:
        assert KEY_JSON not in output
        assert KEY_JSON[1:40] not in output
        assert KEY_B58[:-2] not in output
        assert KEY_B58[10:40] not in output
    assert PUBKEY in outputs[0]


# --- options and subcommands ------------------------------------------------------------------


def test_bad_authorizer_is_a_usage_error(cli: Invoke) -> None:
    result = cli("--authorizer", "xyz", "show-config")
    assert result.exit_code == 2
    assert "Invalid value for '--authorizer': not a 32-byte base58 public key: 'xyz'" in result.stderr


def test_show_config_precedence_and_sources(cli: Invoke) -> None:
    Path(".env").write_text("RUN_ID=from-file\nMICRO_BATCH_SIZE=4\n")
    result = cli(
        "--env-file", ".env", "--coordinator-program-id", OTHER_PUBKEY, "show-config", "--json",
        env={"RUN_ID": "from-env", "DATA_PARALLELISM": "2", "MICRO_BATCH_SIZE": "4"},
    )  # fmt: skip
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["RUN_ID"] == {"value": "from-file", "source": ".env:1"}  # the file wins, as the reference
    assert shown["MICRO_BATCH_SIZE"] == {"value": "4", "source": ".env:2"}
    assert shown["DATA_PARALLELISM"] == {"value": "2", "source": "environment"}
    assert shown["RPC"] == {"value": CHAIN["RPC"], "source": "environment"}
    assert shown["SCRATCH_DIR"] == {"value": "(unset)", "source": "default"}
    assert shown["COORDINATOR_PROGRAM_ID"] == {"value": OTHER_PUBKEY, "source": "--coordinator-program-id"}
    # One line for the shell variable the file replaced (same value: no line); its name, never a value.
    assert result.stderr == "[run-manager] RUN_ID from the shell environment is overridden by .env:1\n"


def test_show_config_takes_env_file_after_the_command_name(cli: Invoke) -> None:
    Path("my.env").write_text("RUN_ID=after\n")
    result = cli("show-config", "--env-file", "my.env", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["RUN_ID"] == {"value": "after", "source": "my.env:1"}
    missing = cli("show-config", "--env-file", "nope.env")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: --env-file nope.env: no such file")


def test_missing_rpc_is_the_references_error_everywhere(cli: Invoke, wallet_file: Path) -> None:
    Path(".env").write_text("RUN_ID=x\nWS_RPC=ws://a:1\n")
    # Every command that talks to the chain; show-config (below) and the run-down transfers need no RPC.
    for args in (("--env-file", ".env"), ("json-dump-run", "-r", "x"), ("list-runs", "--all")):
        result = cli(*args, env={"RPC": None})
        assert result.exit_code == 1, args
        lines = [line for line in result.stderr.splitlines() if not line.startswith("[run-manager]")]
        assert lines[0] == "Error: Missing required environment variable: RPC", args
        assert lines[1].startswith("hint: set RPC and WS_RPC in the --env-file"), args
        assert "127.0.0.1" not in result.output
    shown = cli("show-config", "--env-file", ".env", "--json", env={"RPC": None})
    assert shown.exit_code == 0, shown.output


def test_main_job_requires_ws_rpc(cli: Invoke, wallet_file: Path, no_main_job: None) -> None:
    Path(".env").write_text("RUN_ID=x\nRPC=http://a:1\n")
    result = cli("--env-file", ".env", env={"WS_RPC": None, "RPC": None})
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "Error: Missing required environment variable: WS_RPC"
    # Subcommands that need no WebSocket do not ask for it.
    shown = cli("show-config", "--env-file", ".env", "--json", env={"WS_RPC": None, "RPC": None})
    assert json.loads(shown.stdout)["WS_RPC"] == {"value": "(unset)", "source": "default"}


def test_show_config_table(cli: Invoke) -> None:
    result = cli("show-config", env={"RPC": "https://rpc.example.com/0123456789abcdef0123456789abcdef"})
    assert result.exit_code == 0
    assert "https://rpc.example.com/***" in result.stdout
    assert "0123456789abcdef" not in result.stdout


def test_subcommand_owns_arguments_after_its_name(cli: Invoke) -> None:
    result = cli("show-config", "--", "x")
    assert result.exit_code == 2
    assert "Got unexpected extra argument (x)" in result.stderr


def test_unknown_command(cli: Invoke) -> None:
    result = cli("nope")
    assert result.exit_code == 2
    assert "No such command 'nope'" in result.stderr


def test_run_manager_error_exit_code_is_kept(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli_module.COMMANDS, "mismatch", Subcommand("tests.unit.test_cli:mismatch", "Test."))
    result = cli("mismatch")
    assert result.exit_code == 10
    assert result.stderr == "Error: client version differs from the run's client_version (exit code 10)\n"


def test_unexpected_exception_is_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli_module.COMMANDS, "boom", Subcommand("tests.unit.test_cli:boom", "Test."))
    with pytest.raises(SystemExit) as info:
        cli_module.main(["boom"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "RuntimeError: a bug" in err


# --- the App object ------------------------------------------------------------------------------


def test_app_builds_settings_and_rpc_lazily() -> None:
    ui, _, err = UI.for_tests()
    environ = {"RPC": "http://a:1", "WS_RPC": "ws://a:2", "RPC_2": "http://b:1", "WS_RPC_2": "ws://b:2"}
    app = App(ui=ui, environ=environ)
    assert app._settings is None and app._rpc is None
    rpc = app.rpc
    assert rpc.endpoints == ["http://a:1", "http://b:1"]
    assert app.rpc is rpc
    app.close()
    assert app._rpc is None
    assert err.getvalue() == ""


def test_app_settings_error_surfaces_on_first_use() -> None:
    ui, _, _ = UI.for_tests()
    app = App(ui=ui, environ={**CHAIN, "RUN_ID": ""})
    with pytest.raises(ConfigError, match=r"^RUN_ID in the environment: empty"):
        _ = app.settings


# --- the console facade ---------------------------------------------------------------------------


def test_ui_lines_and_table_are_plain_and_unwrapped() -> None:
    ui, out, err = UI.for_tests(width=40)
    ui.error("x" * 60, hint="do this")
    ui.warning("careful")
    ui.info("[bold]not markup[/bold]")
    with ui.status("working"):
        pass
    ui.table(["a", "b"], [["1", "[red]2[/red]"]])
    ui.data('{"k": [1]}')
    assert err.getvalue().splitlines() == [
        "Error: " + "x" * 60,
        "hint: do this",
        "Warning: careful",
        "[bold]not markup[/bold]",
        "working",
    ]
    assert "[red]2[/red]" in out.getvalue()
    assert out.getvalue().endswith('{"k": [1]}\n')


def test_ui_table_never_truncates_cells() -> None:
    ui, out, _ = UI.for_tests(width=20)
    key = "4SHugWqSXwKE5fqDchkJcPEqnoZE22VYKtSTVm7axbT7"
    ui.table(["name", "value"], [["COORDINATOR", key], ["x", "y"]], title="ids")
    assert out.getvalue().splitlines() == [
        "ids",
        "name         value",
        f"COORDINATOR  {key}",
        "x            y",
    ]


def test_ui_honours_no_color_and_ci() -> None:
    import io

    buf = io.StringIO()
    ui = UI.from_environ({"NO_COLOR": "1", "CI": "true"}, stdout=buf, stderr=buf)
    assert ui.err.color_system is None
    assert not ui.interactive
