"""Turn an optional .env file plus the process environment into one validated, frozen Settings."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from psyche.base58 import is_pubkey
from psyche.chain.endpoints import Endpoint, redact
from psyche.errors import ConfigError
from psyche.manager.constants import (
    DEFAULT_AUTHORIZER_PROGRAM_ID,
    DEFAULT_COORDINATOR_PROGRAM_ID,
    DEFAULT_TREASURER_PROGRAM_ID,
    DEFAULT_WALLET_RELATIVE,
    AppEnvVars,
    EnvVars,
    is_secret_name,
)
from psyche.manager.envfile import FileEntry, read_env_file
from psyche.manager.p2p import P2PSettings, parse_bind, parse_bootstrap, parse_host_port, parse_port

if TYPE_CHECKING:
    from psyche.chain.programs import ProgramIds

T = TypeVar("T")

ENVIRONMENT = "environment"
DEFAULT = "default"
# The reference's words (its Docker mode), kept exactly: users search for them.
MISSING = "Missing required environment variable: {}"

_KNOWN = frozenset(v for k, v in vars(EnvVars).items() if k.isupper() and not k.endswith("_PREFIX"))
_BACKUP = re.compile(r"(WS_)?RPC_(\d+)")
_BACKUP_LIKE = re.compile(r"(WS_)?RPC_\w*")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_RUN_ID_MAX_BYTES = 32


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself in repr, str or f-strings; call reveal() where it must be used."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The secret text itself; only for the wallet loader and the container environment."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the run-manager reads from the .env file and the environment, validated once."""

    env_file: Path | None
    endpoints: tuple[Endpoint, ...]
    run_id: str | None
    authorizer: str | None
    coordinator_program_id: str
    authorizer_program_id: str
    treasurer_program_id: str
    raw_wallet_private_key: Secret | None
    wallet_private_key_path: Path | None
    wallet_path: Path | None
    home: Path | None
    nvidia_driver_capabilities: str | None
    parallelism_auto: bool | None
    data_parallelism: int | None
    tensor_parallelism: int | None
    micro_batch_size: int | None
    scratch_dir: Path | None
    p2p: P2PSettings
    # Every variable named in the .env file with its effective value, for the container's environment.
    passthrough: Mapping[str, str] = field(repr=False)
    # Variable -> "file:line", "environment", "default" or the flag that set it.
    sources: Mapping[str, str] = field(repr=False)
    # Non-fatal observations worth showing: the file overriding a shell variable (names only, no values).
    notes: tuple[str, ...] = ()

    @property
    def default_wallet_path(self) -> Path | None:
        """~/.config/solana/id.json under the injected HOME, or None without a HOME."""
        return None if self.home is None else self.home / DEFAULT_WALLET_RELATIVE

    def program_ids(self) -> ProgramIds:
        """The three program IDs as keys (validated as base58 pubkeys when the settings were loaded)."""
        from solders.pubkey import Pubkey

        from psyche.chain.programs import ProgramIds

        return ProgramIds(
            Pubkey.from_string(self.coordinator_program_id),
            Pubkey.from_string(self.authorizer_program_id),
            Pubkey.from_string(self.treasurer_program_id),
        )

    def where(self, name: str) -> str:
        """Human phrase for where a variable came from: 'in .env:3', 'in the environment', 'by default'."""
        return _where(self.sources.get(name, DEFAULT))

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, shown value, source) rows; secret values and URL credentials are masked."""
        rows: list[tuple[str, str, str]] = []
        endpoint_names = [(EnvVars.RPC, EnvVars.WS_RPC)] + [
            (EnvVars.backup_rpc(n), EnvVars.backup_ws_rpc(n)) for n in range(2, len(self.endpoints) + 1)
        ]
        for (http_name, ws_name), endpoint in zip(endpoint_names, self.endpoints, strict=False):
            rows.append((http_name, redact(endpoint.http), self.sources.get(http_name, DEFAULT)))
            ws = "(unset)" if endpoint.ws is None else redact(endpoint.ws)
            rows.append((ws_name, ws, self.sources.get(ws_name, DEFAULT)))
        shown = {
            EnvVars.RUN_ID: self.run_id,
            EnvVars.AUTHORIZER: self.authorizer,
            EnvVars.COORDINATOR_PROGRAM_ID: self.coordinator_program_id,
            EnvVars.AUTHORIZER_PROGRAM_ID: self.authorizer_program_id,
            EnvVars.TREASURER_PROGRAM_ID: self.treasurer_program_id,
            EnvVars.RAW_WALLET_PRIVATE_KEY: None if self.raw_wallet_private_key is None else "***",
            EnvVars.WALLET_PRIVATE_KEY_PATH: _opt(self.wallet_private_key_path),
            EnvVars.WALLET_PATH: _opt(self.wallet_path),
            EnvVars.NVIDIA_DRIVER_CAPABILITIES: self.nvidia_driver_capabilities,
            EnvVars.PARALLELISM_AUTO: _opt(self.parallelism_auto),
            EnvVars.DATA_PARALLELISM: _opt(self.data_parallelism),
            EnvVars.TENSOR_PARALLELISM: _opt(self.tensor_parallelism),
            EnvVars.MICRO_BATCH_SIZE: _opt(self.micro_batch_size),
            EnvVars.SCRATCH_DIR: _opt(self.scratch_dir),
            EnvVars.P2P_PORT: str(self.p2p.port),
            EnvVars.P2P_BIND: self.p2p.bind,
            EnvVars.P2P_ADVERTISE: _opt(self.p2p.advertise),
            EnvVars.P2P_BOOTSTRAP: ",".join(map(str, self.p2p.bootstrap)) or None,
        }
        for name, value in shown.items():
            rows.append((name, "(unset)" if value is None else value, self.sources.get(name, DEFAULT)))
        for name in sorted(set(self.passthrough) - {row[0] for row in rows}):
            value = "***" if is_secret_name(name) else (_redacted(name, self.passthrough[name]) or "(empty)")
            rows.append((name, value, self.sources.get(name, DEFAULT)))
        return rows


def _opt(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _where(source: str) -> str:
    if source == ENVIRONMENT:
        return "in the environment"
    if source == DEFAULT:
        return "by default"
    if source.startswith("-"):
        return f"from {source}"
    return f"in {source}"


def _shown(name: str, value: str) -> str:
    """How a bad value appears in a message: secrets never, URLs without credentials."""
    if is_secret_name(name):
        return "(value hidden)"
    return repr(_redacted(name, value))


def _redacted(name: str, value: str) -> str:
    # An endpoint variable is redacted whatever its shape: a URL without :// still carries its key.
    if name in (EnvVars.RPC, EnvVars.WS_RPC) or _BACKUP_LIKE.fullmatch(name) or "://" in value:
        return redact(value)
    return value


def _merge(
    file_entries: Mapping[str, FileEntry],
    env_file: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, tuple[str, str]],
) -> tuple[dict[str, str], dict[str, str], list[str], dict[str, str]]:
    """The file over the process environment (as the reference), flags over both.

    Returns values, sources, notes, passthrough. A shell variable the file overrides with another value
    gives a note naming the variable and the file line, never either value (values may be secrets).
    """
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, value in environ.items():
        if name in _KNOWN or _BACKUP.fullmatch(name):
            values[name] = value
            sources[name] = ENVIRONMENT
    notes: list[str] = []
    for name, entry in file_entries.items():
        if name in environ and environ[name] != entry.value:
            notes.append(f"{name} from the shell environment is overridden by {env_file}:{entry.line}")
        values[name] = entry.value
        sources[name] = f"{env_file}:{entry.line}"
    passthrough = {k: values[k] for k in file_entries}
    for name, (value, flag) in overrides.items():
        values[name] = value
        sources[name] = flag
    return values, sources, notes, passthrough


class _Reader:
    """Validating accessors over the merged mapping; every failure names the variable and its source."""

    def __init__(self, values: Mapping[str, str], sources: Mapping[str, str]) -> None:
        self.values = values
        self.sources = sources

    def at(self, name: str) -> str:
        return f"{name} {_where(self.sources.get(name, DEFAULT))}"

    def fail(self, name: str, problem: str, value: str | None, fix: str) -> ConfigError:
        shown = "" if value is None else f": {_shown(name, value)}"
        return ConfigError(f"{self.at(name)}: {problem}{shown}; {fix}")

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value else None  # an empty value means unset

    def url(self, name: str, schemes: tuple[str, str]) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if value == "":
            raise self.fail(name, "empty", None, f"set it to the endpoint's {schemes[0]}(s) URL")
        article = "an" if schemes[0] == "http" else "a"
        kind = f"{article} {schemes[0]}({schemes[1][len(schemes[0]) :]})"
        try:
            parts = urlsplit(value)
        except ValueError:
            raise self.fail(
                name, f"not {kind} URL", value, f"use {schemes[0]}:// or {schemes[1]}://"
            ) from None
        if parts.scheme not in schemes:
            raise self.fail(name, f"not {kind} URL", value, f"use {schemes[0]}:// or {schemes[1]}://")
        try:
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number up to 65535
        except ValueError:
            raise self.fail(
                name,
                "the port is not a number from 0 to 65535",
                value,
                f"write it as {schemes[0]}://host[:port][/path]",
            ) from None
        if not parts.hostname:
            raise self.fail(name, "URL has no host", value, f"write it as {schemes[0]}://host[:port][/path]")
        return value

    def pubkey(self, name: str, default: str | None = None) -> str | None:
        value = self.text(name)
        if value is None:
            return default
        if not is_pubkey(value):
            raise self.fail(
                name,
                "not a 32-byte base58 public key",
                value,
                "paste the address as printed by solana address",
            )
        return value

    def positive_int(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or int(value) < 1:
            raise self.fail(name, "not a positive integer", value, "use a whole number such as 1")
        return int(value)

    def parsed(self, name: str, parse: Callable[[str], T], fix: str, *, show_value: bool = True) -> T | None:
        """``parse(value)`` of a set variable; its ValueError (what is wrong) becomes the ConfigError."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as err:
            raise self.fail(name, str(err), value if show_value else None, fix) from None

    def boolean(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise self.fail(name, "not a boolean", value, "use true or false")

    def path(self, name: str, home: Path | None, *, absolute: bool = False) -> Path | None:
        value = self.text(name)
        if value is None:
            return None
        if "\0" in value:
            raise self.fail(
                name, "not a path (it holds a NUL character)", None, "write the path as plain text"
            )
        path = _expand_home(value, home)
        if absolute and not path.is_absolute():
            raise self.fail(
                name, "not an absolute path", value, "Docker bind mounts need a path starting with /"
            )
        return path


def _p2p(reader: _Reader) -> P2PSettings:
    """The client's P2P variables; each failure names the variable, what is wrong and the fix."""
    default = P2PSettings()
    port = reader.parsed(
        EnvVars.P2P_PORT, parse_port, "use a whole number, or 0 for a free port picked at each start"
    )
    bind = reader.parsed(
        EnvVars.P2P_BIND, parse_bind, f"use {default.bind} (every interface) or one IP address of this host"
    )
    advertise = reader.parsed(
        EnvVars.P2P_ADVERTISE,
        lambda text: parse_host_port(text, port_required=False),
        "write the address peers should dial: host or host:port, such as 203.0.113.5:4100",
    )
    bootstrap = reader.parsed(
        EnvVars.P2P_BOOTSTRAP,
        parse_bootstrap,
        "write peers of the run as host:port, separated by commas",
        show_value=False,  # the entry at fault is named in the problem
    )
    return P2PSettings(
        port=default.port if port is None else port,
        bind=bind or default.bind,
        advertise=advertise,
        bootstrap=bootstrap or (),
    )


def _expand_home(value: str, home: Path | None) -> Path:
    # HOME comes from the injected environment, so tests never see the developer's home directory.
    if home is not None and (value == "~" or value.startswith("~/")):
        return home / value[2:]
    return Path(value)


def _endpoints(reader: _Reader) -> tuple[Endpoint, ...]:
    http_schemes, ws_schemes = ("http", "https"), ("ws", "wss")
    primary_http = reader.url(EnvVars.RPC, http_schemes)
    if primary_http is None:
        # No silent local-chain default: a forgotten RPC would point a real join at 127.0.0.1. Commands
        # that never talk to the chain (show-config, download-results, upload-data) run without it; the
        # others stop at require_rpc with the reference's words. Backups without RPC are a mistake now.
        if any(_BACKUP.fullmatch(name) and reader.text(name) for name in reader.values):
            raise ConfigError(MISSING.format(EnvVars.RPC), hint=_MISSING_HINT)
        return ()
    primary_ws = reader.url(EnvVars.WS_RPC, ws_schemes)  # the main job requires it (require_ws)
    endpoints = [Endpoint(primary_http, primary_ws)]
    for name in reader.values:
        match = _BACKUP.fullmatch(name)
        if match and reader.text(name) and match.group(2) != str(int(match.group(2))):
            raise reader.fail(
                name,
                "not a fallback endpoint name",
                None,
                f"fallbacks are {EnvVars.backup_rpc(2)}, {EnvVars.backup_rpc(3)}, ... and "
                f"{EnvVars.backup_ws_rpc(2)}, {EnvVars.backup_ws_rpc(3)}, ... (no leading zero)",
            )
    numbers = sorted(
        {int(m.group(2)) for n in reader.values if (m := _BACKUP.fullmatch(n)) and reader.text(n)}
    )
    expected = 2
    for number in numbers:
        http_name, ws_name = EnvVars.backup_rpc(number), EnvVars.backup_ws_rpc(number)
        present = http_name if reader.text(http_name) else ws_name
        if number < expected:
            raise reader.fail(
                present, "not a backup name", None, "backups are numbered from 2 (RPC is the first)"
            )
        if number > expected:
            missing = f"{EnvVars.backup_rpc(expected)}/{EnvVars.backup_ws_rpc(expected)}"
            raise reader.fail(
                present, f"ignored because {missing} is not set", None, "number backups from 2 without gaps"
            )
        expected += 1
        if not reader.text(http_name) or not reader.text(ws_name):
            other = ws_name if present == http_name else http_name
            raise reader.fail(present, f"set without {other}", None, f"set both {http_name} and {ws_name}")
        http = reader.url(http_name, http_schemes)
        ws = reader.url(ws_name, ws_schemes)
        assert http is not None
        # As the reference: a backup that repeats an endpoint already listed adds nothing.
        if all(e.http != http for e in endpoints):
            endpoints.append(Endpoint(http, ws))
    return tuple(endpoints)


_MISSING_HINT = (
    "set RPC and WS_RPC in the --env-file (or the environment; subcommands also take --rpc); "
    "for the local chain, `run-manager localnet --demo` writes a .env with both"
)


def require_rpc(settings: Settings) -> None:
    """Chain commands need RPC; missing, it is the reference's "Missing required environment variable"."""
    if not settings.endpoints:
        raise ConfigError(MISSING.format(EnvVars.RPC), hint=_MISSING_HINT)


def require_ws(settings: Settings) -> None:
    """The main job watches the run over WebSocket, so WS_RPC must be set (the reference's words)."""
    require_rpc(settings)
    if settings.endpoints[0].ws is None:
        raise ConfigError(MISSING.format(EnvVars.WS_RPC), hint=_MISSING_HINT)


def _run_id(reader: _Reader) -> str | None:
    value = reader.values.get(EnvVars.RUN_ID)
    if value is None:
        return None
    if value == "":
        raise reader.fail(
            EnvVars.RUN_ID,
            "empty",
            None,
            "remove the line to discover runs automatically, or set the run's id",
        )
    size = len(value.encode("utf-8"))
    if size > _RUN_ID_MAX_BYTES:
        raise reader.fail(
            EnvVars.RUN_ID,
            f"{size} bytes long, the limit is 32",
            value,
            "use the run id exactly as it was created",
        )
    return value


def load_settings(
    env_file: Path | None,
    environ: Mapping[str, str],
    *,
    overrides: Mapping[str, tuple[str, str]] | None = None,
) -> Settings:
    """Read ``env_file`` (if any) once, merge it over ``environ`` and validate every variable.

    Precedence, highest first: ``overrides`` (variable -> (value, flag that set it)), the .env file
    (as the reference, which writes it into its own environment), the process environment, the defaults.
    ``os.environ`` is never read or written here. RPC is required (no local-chain default).
    Raises ConfigError naming the variable, its source (file:line) and the fix.
    """
    file_entries = read_env_file(env_file) if env_file is not None else {}
    values, sources, notes, passthrough = _merge(file_entries, env_file, environ, overrides or {})
    reader = _Reader(values, sources)
    home_text = environ.get(AppEnvVars.HOME)
    home = Path(home_text) if home_text else None
    raw_key = reader.text(EnvVars.RAW_WALLET_PRIVATE_KEY)
    return Settings(
        env_file=env_file,
        endpoints=_endpoints(reader),
        run_id=_run_id(reader),
        authorizer=reader.pubkey(EnvVars.AUTHORIZER),
        coordinator_program_id=_required(
            reader.pubkey(EnvVars.COORDINATOR_PROGRAM_ID, DEFAULT_COORDINATOR_PROGRAM_ID)
        ),
        authorizer_program_id=_required(
            reader.pubkey(EnvVars.AUTHORIZER_PROGRAM_ID, DEFAULT_AUTHORIZER_PROGRAM_ID)
        ),
        treasurer_program_id=_required(
            reader.pubkey(EnvVars.TREASURER_PROGRAM_ID, DEFAULT_TREASURER_PROGRAM_ID)
        ),
        raw_wallet_private_key=None if raw_key is None else Secret(raw_key.strip()),
        wallet_private_key_path=reader.path(EnvVars.WALLET_PRIVATE_KEY_PATH, home),
        wallet_path=reader.path(EnvVars.WALLET_PATH, home),
        home=home,
        nvidia_driver_capabilities=reader.text(EnvVars.NVIDIA_DRIVER_CAPABILITIES),
        parallelism_auto=reader.boolean(EnvVars.PARALLELISM_AUTO),
        data_parallelism=reader.positive_int(EnvVars.DATA_PARALLELISM),
        tensor_parallelism=reader.positive_int(EnvVars.TENSOR_PARALLELISM),
        micro_batch_size=reader.positive_int(EnvVars.MICRO_BATCH_SIZE),
        scratch_dir=reader.path(EnvVars.SCRATCH_DIR, home, absolute=True),
        p2p=_p2p(reader),
        passthrough=MappingProxyType(passthrough),
        sources=MappingProxyType(sources),
        notes=tuple(notes),
    )


def _required(value: str | None) -> str:
    assert value is not None  # a default was given
    return value
