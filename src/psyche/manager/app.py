"""The application object commands receive through ctx.obj: settings, UI, and lazily built clients."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from psyche.manager.constants import AppEnvVars

if TYPE_CHECKING:
    from psyche.chain.rpc import RpcClient
    from psyche.manager.settings import Settings
    from psyche.manager.ui import UI
    from psyche.manager.wallet import Wallet


@dataclass(frozen=True, slots=True)
class RootOptions:
    """The top-level (Docker-mode) flags, as parsed by the CLI."""

    env_file: Path | None = None
    local: bool = False
    authorizer: str | None = None  # join_authority filter for run discovery, not the AUTHORIZER variable
    entrypoint: str | None = None
    entrypoint_args: tuple[str, ...] = ()
    coordinator_program_id: str | None = None
    privileged: bool = False
    image_repository: str = "nousresearch/psyche-client"
    gpus: bool = True  # request every GPU (DeviceRequest count=-1); --no-gpus for CPU-only clients
    timestamps: bool = False
    metrics_port: int | None = None  # serve Prometheus metrics on 127.0.0.1:<port> (psyche.manager.metrics)
    stall_timeout: float | None = None  # restart a client that wrote no log line for this many seconds
    wallet_key_via: str = "auto"  # auto | file | env: how the container gets the wallet key (launch.KeyVia)
    runtime: str = "docker"  # docker: a container on Docker/Podman; process: the installed client as a child


@dataclass(slots=True)
class App:
    """Shared state for one invocation; every expensive part is created on first use."""

    ui: UI
    environ: Mapping[str, str]
    options: RootOptions = field(default_factory=RootOptions)
    exit: Callable[[int], NoReturn] | None = None
    # Variable -> (value, flag that set it): subcommand flags such as --rpc, applied over .env and env.
    overrides: dict[str, tuple[str, str]] = field(default_factory=dict)
    _settings: Settings | None = None
    _wallet: Wallet | None = None
    _rpc: RpcClient | None = None

    @property
    def debug(self) -> bool:
        """RUN_MANAGER_DEBUG=1: show tracebacks with locals for unexpected errors."""
        return self.environ.get(AppEnvVars.DEBUG) == "1"

    @property
    def settings(self) -> Settings:
        """Settings from --env-file (if given) and the environment, loaded and validated once."""
        if self._settings is None:
            from psyche.manager.constants import EnvVars
            from psyche.manager.settings import load_settings

            overrides: dict[str, tuple[str, str]] = dict(self.overrides)
            if self.options.coordinator_program_id is not None:
                overrides[EnvVars.COORDINATOR_PROGRAM_ID] = (
                    self.options.coordinator_program_id,
                    "--coordinator-program-id",
                )
            self._settings = load_settings(self.options.env_file, self.environ, overrides=overrides)
            for note in self._settings.notes:
                self.ui.info(f"[run-manager] {note}")
        return self._settings

    def use_env_file(self, path: Path) -> None:
        """A subcommand's ``--env-file``: the same as the root one (before the settings are loaded)."""
        self.options = dataclasses.replace(self.options, env_file=path)

    @property
    def wallet(self) -> Wallet:
        """The checked keypair; its warnings (file permissions) are shown once, when first loaded."""
        if self._wallet is None:
            from psyche.manager.wallet import load_wallet

            self._wallet = load_wallet(self.settings)
            for warning in self._wallet.warnings:
                self.ui.warning(warning)
        return self._wallet

    @property
    def rpc(self) -> RpcClient:
        """The JSON-RPC client over every configured endpoint, in order (RPC, RPC_2, ...)."""
        if self._rpc is None:
            from psyche.chain.rpc import RpcClient
            from psyche.manager.settings import require_rpc

            require_rpc(self.settings)
            self._rpc = RpcClient([endpoint.http for endpoint in self.settings.endpoints])
        return self._rpc

    def close(self) -> None:
        """Release what was opened (the RPC connection pool); safe to call more than once."""
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None

    def abort(self, code: int = 1) -> NoReturn:
        """Leave with ``code`` through the injected exit (click's ctx.exit), or SystemExit without one."""
        if self.exit is not None:
            self.exit(code)
        raise SystemExit(code)
