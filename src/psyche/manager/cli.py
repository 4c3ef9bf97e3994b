"""The run-manager command line: parse, build the App, call the core, map errors to exit codes."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from psyche import __version__
from psyche.errors import ConfigError, RunManagerError
from psyche.manager.app import App, RootOptions
from psyche.manager.constants import DEFAULT_COORDINATOR_PROGRAM_ID, AppEnvVars, EnvVars

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Subcommand:
    """A subcommand imported only when invoked: ``target`` is "module.path:attribute" (a click command);
    ``summary`` is its line in `run-manager --help`, so listing the commands imports none of them."""

    target: str
    summary: str


# Every subcommand: register one with one entry.
COMMANDS: dict[str, Subcommand] = {
    "can-join": Subcommand(
        "psyche.manager.commands.participant:can_join",
        "Check that a key may join a run (exit 0) or say why not (exit 1).",
    ),
    "treasurer-claim-rewards": Subcommand(
        "psyche.manager.commands.participant:treasurer_claim_rewards",
        "Claim earned points as collateral tokens from a treasurer-backed run.",
    ),
    "list-runs": Subcommand(
        "psyche.manager.commands.participant:list_runs",
        "List the runs your wallet can join (state, clients, epoch time); --all: every run.",
    ),
    "json-dump-user": Subcommand(
        "psyche.manager.commands.participant:json_dump_user",
        "Print a user's ledger entry, epoch state and treasurer claims as JSON.",
    ),
    "join-authorization-create": Subcommand(
        "psyche.manager.commands.authorization:join_authorization_create",
        "Authorize a key (or anyone) to join your runs, and activate it.",
    ),
    "join-authorization-read": Subcommand(
        "psyche.manager.commands.authorization:join_authorization_read",
        "Show an authorization: grantor, grantee, active, delegates.",
    ),
    "join-authorization-delegate": Subcommand(
        "psyche.manager.commands.authorization:join_authorization_delegate",
        "As the authorized key, add or clear delegate keys.",
    ),
    "join-authorization-delete": Subcommand(
        "psyche.manager.commands.authorization:join_authorization_delete",
        "Deactivate your authorization for a grantee.",
    ),
    "create-run": Subcommand(
        "psyche.manager.commands.runs:create_run",
        "Create a run (optionally treasurer-backed with a collateral mint).",
    ),
    "update-config": Subcommand(
        "psyche.manager.commands.runs:update_config",
        "Change a run's config TOML, progress, metadata or client version.",
    ),
    "set-paused": Subcommand(
        "psyche.manager.commands.runs:set_paused",
        "Pause a run, or resume it with --resume.",
    ),
    "close-run": Subcommand(
        "psyche.manager.commands.runs:close_run",
        "Close a halted run and recover its rent.",
    ),
    "json-dump-run": Subcommand(
        "psyche.manager.commands.runs:json_dump_run",
        "Print a run's instance, state, clients and treasurer funding as JSON.",
    ),
    "download-results": Subcommand(
        "psyche.manager.commands.rundown:download_results",
        "Download a run's result files through the run-down service (resumable).",
    ),
    "upload-data": Subcommand(
        "psyche.manager.commands.rundown:upload_data",
        "Upload a file or directory to a run through the run-down service.",
    ),
    "set-future-epoch-rates": Subcommand(
        "psyche.manager.commands.admin:set_future_epoch_rates",
        "Set the reward rates of the next epochs.",
    ),
    "checkpoint": Subcommand(
        "psyche.manager.commands.admin:checkpoint",
        "Announce a new Hub checkpoint (signed by an epoch client).",
    ),
    "tick": Subcommand(
        "psyche.manager.commands.admin:tick",
        "Send tick transactions to advance a run's state machine.",
    ),
    "treasurer-top-up-rewards": Subcommand(
        "psyche.manager.commands.admin:treasurer_top_up_rewards",
        "Move collateral tokens into a run's treasury.",
    ),
    "show-config": Subcommand(
        "psyche.manager.cli:show_config",
        "Validate the .env and environment; print each setting and where it came from.",
    ),
    "doctor": Subcommand(
        "psyche.manager.commands.doctor:doctor",
        "Check what a join needs (env, wallet, RPC/WS, run, P2P, Docker, GPUs); OK/WARN/FAIL + fixes.",
    ),
    "status": Subcommand(
        "psyche.manager.commands.status:status",
        "One screen: the client container, the run's epoch and step, P2P results, your rewards.",
    ),
    "localnet": Subcommand(
        "psyche.localnet.cli:localnet",
        "Run a local Solana-compatible chain with the Psyche programs (127.0.0.1 unless --host).",
    ),
}

ENV_FILE_REQUIRED = (
    "--env-file is required for Docker mode. Use 'run-manager --help' to see available commands."
)
_TRAILING = "psyche.trailing_args"


if TYPE_CHECKING:
    _ParamType = click.ParamType[str]
else:  # click < 8.2 has no generic ParamType at runtime
    _ParamType = click.ParamType


class PubkeyType(_ParamType):
    """A 32-byte base58 public key, checked without importing solders."""

    name = "PUBKEY"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """The key itself, once it decodes to 32 bytes; a usage error (exit 2) otherwise."""
        from psyche.base58 import is_pubkey

        if not isinstance(value, str) or not is_pubkey(value):
            self.fail(f"not a 32-byte base58 public key: {value!r}", param, ctx)
        return value


def _use_env_file(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    app = ctx.find_object(App)
    if value is not None and app is not None:
        app.use_env_file(value)


def env_file_option(f: F) -> F:
    """A subcommand's ``--env-file``: the root ``--env-file`` given after the command name."""
    return click.option(
        "--env-file",
        type=click.Path(path_type=Path, dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=_use_env_file,
        help=".env file to read RPC, RPC_2..., the wallet and the flags' variables from; its values win "
        "over the shell's. The root --env-file (before the command name) works too.",
    )(f)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, and the one place errors become exit codes."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, Subcommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every subcommand name, the lazy ones included, sorted."""
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The subcommand ``cmd_name``, importing its module on first use.

        Raises:
            TypeError: the registry names something that is not a click command (a bug).
        """
        if cmd_name in self.lazy_commands:
            target = self.lazy_commands[cmd_name].target
            module_name, _, attribute = target.partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{target} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The help's Commands section from the registry's summaries, importing no subcommand."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                rows.append((name, self.lazy_commands[name].summary))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the root options; arguments after a top-level ``--`` go to the container's entrypoint."""
        # Arguments after a top-level `--` belong to the container entrypoint, unless a subcommand
        # came first (then the subcommand owns everything after its name).
        takes_value = value_options(self)
        skip_value = False
        for index, arg in enumerate(args):
            if skip_value:
                skip_value = False
            elif arg == "--":
                ctx.meta[_TRAILING] = tuple(args[index + 1 :])
                args = args[:index]
                break
            elif arg in takes_value:
                skip_value = True
            elif arg in self.list_commands(ctx):
                break
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a RunManagerError is printed (message and hint) and becomes its exit code."""
        try:
            return super().invoke(ctx)
        except RunManagerError as err:
            ui = ctx.obj.ui if isinstance(ctx.obj, App) else _ui(_environ(ctx))
            ui.error(err.message, err.hint)
            ctx.exit(err.exit_code)


def value_options(command: click.Command) -> frozenset[str]:
    """The option names of ``command`` that take a value (``--env-file PATH``), read from its parameters."""
    return frozenset(
        name
        for param in command.params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in (*param.opts, *param.secondary_opts)
    )


def _environ(ctx: click.Context) -> Mapping[str, str]:
    # main() passes the environment as the initial ctx.obj; tests may pass their own mapping.
    obj = ctx.find_root().obj
    if isinstance(obj, App):
        return obj.environ
    if isinstance(obj, Mapping):
        return obj
    return dict(os.environ)


def _ui(environ: Mapping[str, str]) -> Any:
    from psyche.manager.ui import UI

    return UI.from_environ(environ)


def _git_and_build() -> tuple[str, str]:
    try:
        info = importlib.import_module("psyche._build_info")
        return str(info.GIT), str(info.BUILT)
    except ImportError:
        pass
    import subprocess

    # An editable install runs from the checkout: ask git, as the reference's build.rs does.
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return "unknown", "unknown"
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    if head.returncode != 0:
        return "unknown", "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else ""), "unknown"


def _print_version(long: bool) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        click.echo(f"run-manager {__version__}")
        if long:
            git, built = _git_and_build()
            click.echo(f"git: {git}")
            click.echo(f"built: {built}")
        ctx.exit(0)

    return callback


@click.group(
    "run-manager",
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path),
    envvar=AppEnvVars.ENV_FILE,
    show_envvar=True,
    help=".env file with RPC, RUN_ID, wallet and client settings; required without a subcommand. "
    "Its values win over variables already set in the shell.",
)
@click.option("--local", is_flag=True, help="Use a local client image and skip the pull.")
@click.option(
    "--authorizer",
    type=PubkeyType(),
    help="Only join runs whose join_authority is this key (run discovery only, when RUN_ID is unset). "
    f"Not the same as the {EnvVars.AUTHORIZER} variable.",
)
@click.option("--entrypoint", help="Override the client container's entrypoint; arguments go after `--`.")
@click.option(
    "--coordinator-program-id",
    type=PubkeyType(),
    help=f"Coordinator program. [default: {DEFAULT_COORDINATOR_PROGRAM_ID}] "
    f"[env var: {EnvVars.COORDINATOR_PROGRAM_ID}, also read from the .env; this flag wins]",
)
@click.option(
    "--privileged", is_flag=True, help="Run the client container with Docker's --privileged (opt-in here)."
)
@click.option(
    "--image-repository",
    default="nousresearch/psyche-client",
    show_default=True,
    envvar=AppEnvVars.IMAGE_REPOSITORY,
    show_envvar=True,
    help="Repository of the client image; the tag or digest comes from the run's client_version.",
)
@click.option(
    "--gpus/--no-gpus",
    default=True,
    show_default=True,
    help="Give the client container every GPU (Docker device request); --no-gpus for CPU-only clients.",
)
@click.option("--timestamps", is_flag=True, help="Prefix client log lines with Docker's timestamps.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    envvar=AppEnvVars.METRICS_PORT,
    show_envvar=True,
    help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics while the main job runs "
    "(container up, restarts, version changes, RPC health and latency, last log line age).",
)
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=1.0),
    metavar="SECONDS",
    envvar=AppEnvVars.STALL_TIMEOUT,
    show_envvar=True,
    help="Restart the client when it writes no log line for this long (a hung or SIGSTOPped client); "
    "counts as a crash for the restart limit. [default: off]",
)
@click.option(
    "--wallet-key-via",
    type=click.Choice(["auto", "file", "env"]),
    default="auto",
    show_default=True,
    envvar=AppEnvVars.WALLET_KEY_VIA,
    show_envvar=True,
    help="How the client container gets the wallet key: a read-only file on a tmpfs mount (not visible "
    "to docker inspect), RAW_WALLET_PRIVATE_KEY in its environment, or auto: the file for images labelled "
    "psyche.client.key-file=1 (the reference image), else the environment.",
)
@click.option(
    "--runtime",
    type=click.Choice(["docker", "process"]),
    default="docker",
    show_default=True,
    envvar=AppEnvVars.RUNTIME,
    show_envvar=True,
    help="How the client runs: docker, a container on the Docker or Podman engine (DOCKER_HOST, else the "
    "usual sockets); process, the installed psyche-run-manager[client] as a supervised child process, for "
    "hosts where no container can run (the run's client_version must be its version).",
)
@click.option(
    "-V",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version(long=False),
    help="Print the version.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version(long=True),
    help="Print the version, git commit and build time.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    env_file: Path | None,
    local: bool,
    authorizer: str | None,
    entrypoint: str | None,
    coordinator_program_id: str | None,
    privileged: bool,
    image_repository: str,
    gpus: bool,
    timestamps: bool,
    metrics_port: int | None,
    stall_timeout: float | None,
    wallet_key_via: str,
    runtime: str,
) -> None:
    """Join a Psyche training run from this GPU machine, or run an admin command.

    Without a command, run-manager reads --env-file, loads your wallet, finds the run and keeps the
    client container on the run's version (Docker mode). Values in the .env file win over the shell's.
    """
    from psyche.manager.ui import UI

    environ = _environ(ctx)
    options = RootOptions(
        env_file=env_file,
        local=local,
        authorizer=authorizer,
        entrypoint=entrypoint,
        entrypoint_args=tuple(ctx.meta.get(_TRAILING, ())),
        coordinator_program_id=coordinator_program_id,
        privileged=privileged,
        image_repository=image_repository,
        gpus=gpus,
        timestamps=timestamps,
        metrics_port=metrics_port,
        stall_timeout=stall_timeout,
        wallet_key_via=wallet_key_via,
        runtime=runtime,
    )
    app = App(ui=UI.from_environ(environ), environ=environ, options=options, exit=ctx.exit)
    ctx.obj = app
    ctx.call_on_close(app.close)
    if ctx.invoked_subcommand is not None:
        return
    if env_file is None:
        raise ConfigError(ENV_FILE_REQUIRED)
    if options.entrypoint_args and entrypoint is None:
        shown = ", ".join(f'"{arg}"' for arg in options.entrypoint_args)
        raise ConfigError(f"unexpected trailing arguments [{shown}]. did you mean to pass --entrypoint?")
    from psyche.manager.settings import require_ws

    settings = app.settings
    require_ws(settings)
    wallet = app.wallet
    app.ui.info(f"User pubkey: {wallet.pubkey}")
    app.ui.info(f"Using coordinator program ID: {settings.coordinator_program_id}")
    from psyche.manager import mainjob

    ctx.exit(mainjob.run_main_job(app) or 0)


@click.command("show-config")
@env_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")
@click.option("--wallet", "check_wallet", is_flag=True, help="Also load the wallet and print its public key.")
@click.pass_obj
def show_config(app: App, as_json: bool, check_wallet: bool) -> None:
    """Validate the .env and environment; print each setting and where it came from (secrets masked)."""
    import json

    rows = app.settings.describe()
    if check_wallet:
        wallet = app.wallet
        rows.append(("wallet pubkey", wallet.pubkey, wallet.source.description))
    if as_json:
        app.ui.data(
            json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=2)
        )
    else:
        app.ui.table(["variable", "value", "source"], rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: click handles usage errors; anything unexpected is a bug report."""
    environ = dict(os.environ)  # read once; nothing below looks at os.environ again
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="run-manager", obj=environ)
    except Exception:
        _ui(environ).exception(show_locals=environ.get(AppEnvVars.DEBUG) == "1")
        sys.exit(1)
