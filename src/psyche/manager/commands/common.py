"""What every chain command shares: env-backed options, --rpc/--env-file/--json, sending, printing results."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from psyche.errors import ConfigError, TransactionFailed
from psyche.manager.app import App
from psyche.manager.cli import PubkeyType, env_file_option
from psyche.manager.constants import EnvVars

if TYPE_CHECKING:
    from solders.instruction import Instruction
    from solders.keypair import Keypair
    from solders.pubkey import Pubkey

    from psyche.chain.programs import ProgramIds
    from psyche.chain.rpc import RpcClient
    from psyche.chain.transactions import SentTransaction, TransactionSender

F = TypeVar("F", bound=Callable[..., Any])

_ENV_CACHE = "psyche.commands.env_file_entries"
_ENV_SOURCE = "psyche.commands.env_source."
_HELP_ENV = "[env var: {}, also read from the .env]"


def _app(ctx: click.Context) -> App | None:
    return ctx.find_object(App)


def env_lookup(ctx: click.Context, name: str) -> tuple[str, str] | None:
    """``(value, where)`` of variable ``name``: the .env file first (it wins, as in the reference), then the
    process environment."""
    app = _app(ctx)
    environ: Mapping[str, str] = app.environ if app is not None else {}
    env_file = app.options.env_file if app is not None else None
    if env_file is not None:
        root = ctx.find_root()
        entries = root.meta.get(_ENV_CACHE)
        if entries is None:
            from psyche.manager.envfile import read_env_file

            entries = root.meta[_ENV_CACHE] = read_env_file(env_file)
        entry = entries.get(name)
        if entry is not None and entry.value:
            return entry.value, f"in {env_file}:{entry.line}"
    value = environ.get(name)
    if value:
        return value, "in the environment"
    return None


class EnvOption(click.Option):
    """An option whose fallback is a variable of the .env file or the process environment (``env=NAME``).

    Unlike click's ``envvar`` it does not read ``os.environ`` (the App's injected mapping instead), also reads
    the .env file, and a bad value fails as ConfigError naming the variable and where it was set.
    """

    def __init__(self, *args: Any, env: str | None = None, **kwargs: Any) -> None:
        if env is not None:
            kwargs["help"] = f"{kwargs.get('help', '')} {_HELP_ENV.format(env)}".strip()
        super().__init__(*args, **kwargs)
        self.env_name = env

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        """The fallback variable's value (the .env file wins over the shell), remembering where it was."""
        if self.env_name is None:
            return None
        found = env_lookup(ctx, self.env_name)
        if found is None:
            return None
        ctx.meta[_ENV_SOURCE + str(self.name)] = found[1]
        return found[0]

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        """Convert as click does; a bad value from the environment names its variable.

        Raises:
            ConfigError: the value came from the environment and does not convert.
        """
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:
            if ctx.get_parameter_source(str(self.name)) is ParameterSource.ENVIRONMENT:
                where = ctx.meta.get(_ENV_SOURCE + str(self.name), "in the environment")
                raise ConfigError(f"{self.env_name} {where}: {exc.message}") from None
            raise

    def get_error_hint(self, ctx: click.Context | None) -> str:
        """Click's hint, plus the variable that can also set the option."""
        hint = super().get_error_hint(ctx)
        return hint if self.env_name is None else f"{hint} (or set {self.env_name})"


def env_option(*decls: str, env: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` with an EnvOption (``env`` names the fallback variable)."""
    return click.option(*decls, cls=EnvOption, env=env, **kwargs)


def _override(
    variable: str, flag: str, strip_quotes: bool = False
) -> Callable[[click.Context, Any, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        app = _app(ctx)
        if value is None or app is None:
            return
        text = str(value).strip('"') if strip_quotes else str(value)
        app.overrides[variable] = (text, flag)

    return callback


def cluster_options(f: F) -> F:
    """--rpc, --ws-rpc and --env-file; RPC_2/WS_RPC_2... fallbacks come from the environment and the .env."""
    f = click.option(
        "--ws-rpc",
        expose_value=False,
        callback=_override(EnvVars.WS_RPC, "--ws-rpc", strip_quotes=True),
        help="WebSocket endpoint. [env var: WS_RPC, also read from the .env]",
    )(f)
    f = click.option(
        "--rpc",
        expose_value=False,
        callback=_override(EnvVars.RPC, "--rpc", strip_quotes=True),
        help="JSON-RPC endpoint; RPC_2, RPC_3... from the environment or .env are tried when it fails. "
        "Required: this flag, RPC in the .env, or RPC in the environment. "
        "[env var: RPC, also read from the .env]",
    )(f)
    return env_file_option(f)


def wallet_option(f: F) -> F:
    """-w/--wallet-private-key-path (RAW_WALLET_PRIVATE_KEY, when set, still wins, as in the reference)."""
    return click.option(
        "-w",
        "--wallet-private-key-path",
        type=click.Path(path_type=Path, dir_okay=False),
        expose_value=False,
        callback=_override(EnvVars.WALLET_PRIVATE_KEY_PATH, "--wallet-private-key-path"),
        help="Solana keypair file that signs. "
        "[env var: WALLET_PRIVATE_KEY_PATH; RAW_WALLET_PRIVATE_KEY wins]",
    )(f)


def run_id_option(f: F) -> F:
    """The required ``--run-id`` (env RUN_ID)."""
    return env_option("-r", "--run-id", env="RUN_ID", required=True, help="The run's id.")(f)


def treasurer_index_option(f: F) -> F:
    """``--treasurer-index`` (env TREASURER_INDEX); unset means the index derived from the run id."""
    return env_option(
        "--treasurer-index",
        env="TREASURER_INDEX",
        type=click.IntRange(0, 2**64 - 1),
        help="Treasurer run index. [default: first 8 bytes of sha256(run id)]",
    )(f)


def pubkey_option(*decls: str, env: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """An ``env_option`` whose value is parsed as a base58 public key."""
    return env_option(*decls, env=env, type=PubkeyType(), **kwargs)


def chain_command(name: str, *, wallet: bool) -> Callable[[F], click.Command]:
    """A subcommand with the cluster options, --json, and (``wallet``) the signing wallet option."""

    def decorate(f: F) -> click.Command:
        g = click.pass_obj(f)
        g = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(g)
        if wallet:
            g = wallet_option(g)
        g = cluster_options(g)
        return click.command(name)(g)

    return decorate


class ReportingSender:
    """The commands' Sender: the chain's TransactionSender paid by the App's wallet, failures reported.

    The wallet is loaded on first use (a command that sends nothing never needs one). On failure the
    signature and the explorer-style logs go to stderr, then TransactionFailed (named program error, a
    hint where we have one) propagates to the CLI's error line.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._sender: TransactionSender | None = None

    def _chain_sender(self) -> TransactionSender:
        if self._sender is None:
            from psyche.chain.transactions import TransactionSender

            app = self._session.app
            self._sender = TransactionSender(app.rpc, app.wallet.keypair(), self._session.programs)
        return self._sender

    @property
    def payer(self) -> Pubkey:
        """The wallet's public key (loads the wallet)."""
        return self._chain_sender().payer

    def size(self, instructions: Sequence[Instruction], signers: Sequence[Keypair] = ()) -> int:
        """Bytes of the signed transaction these instructions would make."""
        return self._chain_sender().size(instructions, signers)

    def send(
        self, instructions: Sequence[Instruction], *, signers: Sequence[Keypair] = ()
    ) -> SentTransaction:
        """Send and confirm one transaction (the chain sender waits for a fresh blockhash on a repeat).

        Raises:
            TransactionFailed: named and hinted, after its signature and logs went to stderr.
        """
        try:
            return self._chain_sender().send(instructions, signers=signers)
        except TransactionFailed as exc:
            self._session.report_failure(exc)
            raise _with_hint(exc) from exc


class Session:
    """The chain side of one command (a ChainAccess): program IDs, the RPC reader, the reporting sender."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._sender = ReportingSender(self)

    @property
    def programs(self) -> ProgramIds:
        """The program ids from the settings."""
        return self.app.settings.program_ids()

    @property
    def reader(self) -> RpcClient:
        """The chain reader the operations use: the App's RPC pool."""
        return self.app.rpc

    @property
    def sender(self) -> ReportingSender:
        """Sends paid by the wallet, failures reported on stderr."""
        return self._sender

    def report_failure(self, error: TransactionFailed) -> None:
        """Print a failed transaction's signature and its logs (programs named) on stderr."""
        ui = self.app.ui
        if error.signature:
            ui.info(f"Signature: {error.signature}")
        if error.logs:
            ui.info("===== Logs =====")
            for line in self.explorer(error.logs):
                ui.info(line)

    def explorer(self, logs: Sequence[str]) -> list[str]:
        """Program logs as the reference prints them: program ids named, custom errors named."""
        from solders.pubkey import Pubkey

        from psyche.chain.program_errors import error_name
        from psyche.manager.commands.format import explorer_logs

        programs = self.programs
        names = {
            str(programs.coordinator): "Psyche Coordinator",
            str(programs.authorizer): "Psyche Authorizer",
            str(programs.treasurer): "Psyche Treasurer",
            "11111111111111111111111111111111": "System Program",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA": "Token Program",
            "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL": "Associated Token Program",
        }

        def err(program: str, code: int) -> str | None:
            try:
                key = Pubkey.from_string(program)
            except ValueError:
                return None
            return error_name(key, code, programs)

        return explorer_logs(logs, lambda p: names.get(p, f"Unknown Program ({p})"), err)


def _with_hint(error: TransactionFailed) -> TransactionFailed:
    from psyche.manager.commands.format import ERROR_HINTS

    if error.hint:
        return error
    hint = next((h for name, h in ERROR_HINTS.items() if f"[{name}" in error.message), None)
    if hint is None:
        return error
    hinted = TransactionFailed(
        error.message,
        signature=error.signature,
        logs=error.logs,
        program_error=error.program_error,
        hint=hint,
    )
    hinted.__cause__ = error
    return hinted


def parse_pubkey(text: str) -> Pubkey:
    """``text`` as a public key (ValueError when it is not base58 of 32 bytes)."""
    from solders.pubkey import Pubkey

    return Pubkey.from_string(text)


def emit(app: App, as_json: bool, data: Mapping[str, Any], lines: Sequence[str]) -> None:
    """The command's result on stdout: ``data`` as JSON with --json, the human ``lines`` otherwise."""
    if as_json:
        app.ui.data(json.dumps(data, indent=2))
    else:
        for line in lines:
            app.ui.data(line)


def sent_in(signatures: Sequence[str]) -> str:
    """``transaction: S`` for one signature, ``transactions: S1, S2`` for more (summary lines)."""
    if len(signatures) == 1:
        return f"transaction: {signatures[0]}"
    return f"transactions: {', '.join(signatures)}"


def fields(rows: Sequence[tuple[str, object]]) -> list[str]:
    """``Label: value`` lines with the values aligned."""
    width = max((len(label) for label, _ in rows), default=0) + 1
    return [f"{label + ':':<{width}} {value}" for label, value in rows]
