"""docs/guide.md cannot drift: its commands and flags exist, its sample .env loads (errors: see below)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from psyche.manager import constants
from psyche.manager.cli import COMMANDS, cli, value_options
from tests.support.paths import PROJECT_ROOT

GUIDE = PROJECT_ROOT / "docs" / "guide.md"
TEXT = GUIDE.read_text()
DEMO = PROJECT_ROOT / "scripts" / "demo"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^\s*```(?:sh)?\n(.*?)^\s*```", text, flags=re.M | re.S)


def command_lines(program: str) -> list[list[str]]:
    """Every command line in a code block that runs ``program``, as tokens (continuations joined)."""
    found: list[list[str]] = []
    for block in code_blocks(TEXT):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"&&|;|\|", line):
                tokens = shlex.split(part, comments=True)
                while tokens and tokens[0] in ("sudo",):
                    tokens = tokens[1:]
                if tokens and Path(tokens[0]).name == program:
                    found.append(tokens[1:])
    return found


ROOT_VALUE_OPTIONS = value_options(cli)


def split_command(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(root flags, subcommand path, subcommand flags) of one run-manager command line."""
    root: list[str] = []
    sub: list[str] = []
    flags: list[str] = []
    skip = False
    for index, token in enumerate(args):
        if skip:
            skip = False
            continue
        if token == "--":
            break
        if not sub and token in COMMANDS:
            sub.append(token)
            continue
        if token.startswith("-") and len(token) > 1:
            name = token.split("=", 1)[0]
            (flags if sub else root).append(name)
            skip = not sub and name in ROOT_VALUE_OPTIONS and "=" not in token
        del index
    return root, sub, flags


RUN_MANAGER_LINES = command_lines("run-manager")


def help_text(*path: str) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], obj={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def mentions(help_output: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_output) is not None


def test_the_guide_has_the_commands_a_user_needs() -> None:
    subcommands = {split_command(args)[1][0] for args in RUN_MANAGER_LINES if split_command(args)[1]}
    assert {"can-join", "status", "treasurer-claim-rewards", "show-config", "json-dump-user"} <= subcommands
    assert any(not split_command(args)[1] for args in RUN_MANAGER_LINES)  # the main job itself
    assert len(RUN_MANAGER_LINES) >= 15


@pytest.mark.parametrize("args", RUN_MANAGER_LINES, ids=[" ".join(a)[:60] for a in RUN_MANAGER_LINES])
def test_every_run_manager_line_parses_and_its_flags_are_in_the_help(args: list[str]) -> None:
    root, sub, flags = split_command(args)
    root_help = help_text()
    for flag in root:
        assert mentions(root_help, flag), f"{flag} is not a run-manager flag: {args}"
    if sub:
        sub_help = help_text(*sub)
        for flag in flags:
            assert mentions(sub_help, flag), f"{flag} is not a flag of {sub[0]}: {args}"


def test_every_demo_flag_in_the_guide_is_in_its_help() -> None:
    demo_help = subprocess.run([str(DEMO), "--help"], capture_output=True, text=True, check=True).stdout
    used = {t.split("=")[0] for args in command_lines("demo") for t in args if t.startswith("--")}
    table = set(re.findall(r"^\| `(--[a-z-]+)", TEXT, flags=re.M))
    assert {"--yes", "--for", "--until", "--no-build-if-present"} <= table
    for flag in used | table:
        assert mentions(demo_help, flag), f"scripts/demo has no {flag}"


def test_every_env_variable_in_the_table_is_one_the_program_knows() -> None:
    section = TEXT.split("### Every `.env` variable", 1)[1].split("### Flags of the main job", 1)[0]
    names = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    known = {v for k, v in vars(constants.EnvVars).items() if not k.startswith("_") and isinstance(v, str)}
    known |= {
        v for k, v in vars(constants.AppEnvVars).items() if not k.startswith("_") and isinstance(v, str)
    }
    known |= {"RPC_2", "WS_RPC_2", "RPC_3", "WS_RPC_3", "WALLET_FILE", "CONFIG_PATH", "HF_TOKEN"}
    known |= {"WANDB_API_KEY", "DOCKER_HOST"}
    assert names - known == set()
    for attr, name in vars(constants.EnvVars).items():
        if not attr.startswith("_") and isinstance(name, str) and not name.endswith("_"):
            assert f"`{name}`" in section, f"the guide's .env table misses {name}"


def test_the_quick_start_env_loads(tmp_path: Path) -> None:
    sample = next(b for b in code_blocks(TEXT) if "RPC=https://" in b)
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(line.strip() for line in sample.splitlines()) + "\n")
    result = CliRunner().invoke(
        cli,
        ["--env-file", str(env_file), "show-config", "--json"],
        obj={"NO_COLOR": "1", "HOME": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["RUN_ID"]["value"] == "my-run"
    assert "YOUR_KEY" not in result.stdout  # the API key in the URL is masked


# Troubleshooting: every `Error:` entry is reproduced for real and compared with what the program prints, in
# tests/integration/test_guide_errors.py (which also fails when an entry has no reproduction).


def test_the_systemd_unit_runs_the_main_job_with_real_flags() -> None:
    unit = (PROJECT_ROOT / "deploy" / "run-manager.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, flags=re.M)
    tokens = shlex.split(exec_start)
    assert Path(tokens[0]).name == "run-manager"
    root, sub, _ = split_command(tokens[1:])
    assert sub == [] and "--env-file" in root
    for flag in root:
        assert mentions(help_text(), flag)
    assert re.search(r"^Restart=on-failure$", unit, flags=re.M)
    assert re.search(r"^StandardOutput=journal$", unit, flags=re.M)
    assert "deploy/run-manager.service" in TEXT
