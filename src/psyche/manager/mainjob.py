"""The main job (Docker mode): find the run, check authorization, then supervise the client container."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from solders.pubkey import Pubkey

from psyche.chain import queries
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.programs import ProgramIds
from psyche.chain.ws import SubscriptionDown, SubscriptionUp, WatchEvent
from psyche.env_contract import ClientEnvVars
from psyche.errors import ConfigError, RunManagerError
from psyche.manager.app import App
from psyche.manager.chainwait import is_transient
from psyche.manager.clientpkg import DISTRIBUTION
from psyche.manager.constants import AppEnvVars, EnvVars
from psyche.manager.images import DEFAULT_LOCAL_REPOSITORY
from psyche.manager.launch import KeyVia, RestartPolicy
from psyche.manager.settings import Settings, require_ws
from psyche.manager.ui import UI

if TYPE_CHECKING:
    from psyche.manager.procruntime import ProcessRuntime
    from psyche.manager.runtime import DockerRuntime

# Variables the run-manager sets for the container itself; .env values of these are replaced.
_MANAGED = frozenset(
    {
        EnvVars.RUN_ID,
        EnvVars.AUTHORIZER,
        EnvVars.RAW_WALLET_PRIVATE_KEY,
        ClientEnvVars.CLIENT_VERSION,
    }
)


def container_env(settings: Settings, wallet_secret: str, run_id: str, grantee: Pubkey) -> dict[str, str]:
    """The client's whole environment, from the one parsed Settings (never via argv).

    Every .env variable passes through; the endpoints (with fallbacks), the run, the authorization
    grantee, the key, the program IDs, the parallelism and the P2P settings are set from their validated
    values.
    """
    env = {k: v for k, v in settings.passthrough.items() if k not in _MANAGED}
    for n, endpoint in enumerate(settings.endpoints, start=1):
        http_name = EnvVars.RPC if n == 1 else EnvVars.backup_rpc(n)
        ws_name = EnvVars.WS_RPC if n == 1 else EnvVars.backup_ws_rpc(n)
        env[http_name] = endpoint.http
        if endpoint.ws:
            env[ws_name] = endpoint.ws
    env[EnvVars.RUN_ID] = run_id
    env[EnvVars.AUTHORIZER] = str(grantee)
    env[EnvVars.RAW_WALLET_PRIVATE_KEY] = wallet_secret
    env[EnvVars.NVIDIA_DRIVER_CAPABILITIES] = settings.nvidia_driver_capabilities or "all"
    # The programs the manager found the run under, wherever they were given (.env, shell, flag): the
    # client must follow the same run, not the default programs'.
    env[EnvVars.COORDINATOR_PROGRAM_ID] = settings.coordinator_program_id
    env[EnvVars.AUTHORIZER_PROGRAM_ID] = settings.authorizer_program_id
    env[EnvVars.TREASURER_PROGRAM_ID] = settings.treasurer_program_id
    for name, value in (
        (EnvVars.DATA_PARALLELISM, settings.data_parallelism),
        (EnvVars.TENSOR_PARALLELISM, settings.tensor_parallelism),
        (EnvVars.MICRO_BATCH_SIZE, settings.micro_batch_size),
    ):
        if value is not None:
            env[name] = str(value)
    if settings.parallelism_auto is not None:
        env[EnvVars.PARALLELISM_AUTO] = "true" if settings.parallelism_auto else "false"
    # Host networking (ContainerSpec.network_mode): the port the client binds is this host's port.
    env.update(settings.p2p.container_env())
    return env


def wallet_key_via(flag: str, local_engine: bool) -> KeyVia:
    """--wallet-key-via for the launch: ``auto`` is ``env`` for a remote engine (no host file to mount)."""
    if flag == "file":
        return "file"
    if flag == "env" or not local_engine:
        return "env"
    return "auto"


def restart_policy(environ: Mapping[str, str]) -> RestartPolicy:
    """The default policy, with RUN_MANAGER_RESTART_BACKOFF (seconds) and RUN_MANAGER_MAX_RESTARTS applied.

    MAX_RESTARTS caps both quick-crash restarts and exit-10 restarts on an unchanged client_version.

    Raises:
        ConfigError: a variable is not a number in its range.
    """
    policy = RestartPolicy()
    backoff = environ.get(AppEnvVars.RESTART_BACKOFF)
    if backoff is not None:
        try:
            base = float(backoff)
        except ValueError:
            base = -1.0
        if not 0 <= base <= 3600:
            raise ConfigError(f"{AppEnvVars.RESTART_BACKOFF}: not a number of seconds (0-3600): {backoff!r}")
        policy = replace(policy, backoff_base=base, backoff_cap=max(base, policy.backoff_cap))
    restarts = environ.get(AppEnvVars.MAX_RESTARTS)
    if restarts is not None:
        if not restarts.strip().isdigit():
            raise ConfigError(f"{AppEnvVars.MAX_RESTARTS}: not a whole number >= 0: {restarts!r}")
        policy = replace(policy, max_restarts=int(restarts), max_version_retries=int(restarts))
    return policy


@dataclass(frozen=True, slots=True)
class Selected:
    """The run the start chose, and the key its join authorization was granted to."""

    run: queries.Run
    grantee: Pubkey


def discover_run(
    rpc: queries.AccountReader,
    user: Pubkey,
    authorizer: Pubkey | None,
    join_authority_filter: Pubkey | None,
    programs: ProgramIds,
    ui: UI,
    now: int,
) -> Selected:
    """Discovery (RUN_ID unset): joinable runs, WaitingForMembers first; the first one is selected.

    Raises:
        RunManagerError: no runs on the coordinator program, or none this user may join.
    """
    scan = queries.scan_runs(rpc, programs)
    warning = scan.readable(programs.coordinator)  # none readable: an error, not "No runs found"
    if warning is not None:
        ui.warning(warning)
    runs = scan.runs
    if not runs:
        raise RunManagerError(f"No runs found on coordinator program {programs.coordinator}")
    candidates: list[Selected] = []
    for run in runs:
        if run.state in (RunState.Uninitialized, RunState.Finished, RunState.Paused):
            continue
        if join_authority_filter is not None and run.instance.join_authority != join_authority_filter:
            continue
        try:
            check = queries.check_join(rpc, run.run_id, user, authorizer, programs)
        except RunManagerError as exc:
            if is_transient(exc):
                raise  # the chain went away mid-discovery: not an answer about this run
            continue  # the reference counts errors as "not joinable"
        if check.grantee is not None:
            candidates.append(Selected(check.run, check.grantee))
    if not candidates:
        raise RunManagerError(
            f"No joinable runs found for user {user}",
            hint="set RUN_ID in your .env, or ask a run owner for a join authorization",
        )
    from psyche.manager.commands.format import RUN_TABLE_HEADER, format_table, run_table_row
    from psyche.manager.operations.decisions import joinable_first

    ordered = [candidates[i] for i in joinable_first([(c.run.state, True) for c in candidates])]
    rows = [
        run_table_row(
            c.run.run_id,
            c.run.state,
            c.run.num_clients,
            c.run.min_clients,
            c.run.epoch_time,
            c.run.epoch_start_timestamp,
            now,
        )
        for c in ordered
    ]
    ui.data(f"Found {len(ordered)} available run(s):")
    for line in format_table(RUN_TABLE_HEADER, rows):
        ui.data(line)
    chosen = ordered[0]
    ui.data(f"Selected run: {chosen.run.run_id} ({rows[0][1]}, {rows[0][2]})")
    return chosen


def select_run(
    app: App,
    programs: ProgramIds,
    now: Callable[[], float] = time.time,
    wait: Callable[[Callable[[], Selected]], Selected] = lambda lookup: lookup(),
) -> Selected:
    """RUN_ID from the settings (then authorization in the reference's order), or discovery.

    The chain lookups run through ``wait`` (a ``ChainWait.read``), the lines that say what is looked up
    are printed once, before it.

    Raises:
        NotAuthorized: the wallet may not join RUN_ID.
        RunManagerError: no run found, or none this wallet may join (discovery).
        AccountNotFound: the run does not exist.
        RpcError: no endpoint answered.
    """
    settings, ui = app.settings, app.ui
    user = app.wallet.keypair().pubkey()
    authorizer = Pubkey.from_string(settings.authorizer) if settings.authorizer else None
    if authorizer is None:
        ui.info("AUTHORIZER env var not set, skipping delegate key authorization")
    else:
        ui.info(f"Using delegate authorizer from AUTHORIZER env var: {authorizer}")
    if settings.run_id:
        run_id = settings.run_id
        ui.info(f"Using RUN_ID from environment: {run_id}")

        def by_id() -> Selected:
            check = queries.check_join(app.rpc, run_id, user, authorizer, programs)
            return Selected(check.run, queries.require_authorized(check))

        return wait(by_id)
    ui.info("RUN_ID not set, discovering available runs...")
    join_filter = Pubkey.from_string(app.options.authorizer) if app.options.authorizer else None
    return wait(lambda: discover_run(app.rpc, user, authorizer, join_filter, programs, ui, int(now())))


def _watch_event_reporter(ui: UI) -> Callable[[WatchEvent], None]:
    def report(event: WatchEvent) -> None:
        if isinstance(event, SubscriptionDown):
            ui.warning(
                f"[run-manager] version watch: no WebSocket subscription ({event.url}: {event.reason}); "
                "polling meanwhile"
            )
        elif isinstance(event, SubscriptionUp):
            ui.info(f"[run-manager] version watch: subscribed on {event.url}")

    return report


def run_main_job(app: App) -> int:
    """Docker mode, after settings and wallet loaded: returns the process exit code.

    Raises:
        RunManagerError: the run cannot be selected, or the runtime cannot be opened, before the job starts.
    """
    from psyche.manager.chainwait import ChainWait, sleep_through
    from psyche.manager.launch import LaunchConfig
    from psyche.manager.metrics import MainJobMetrics
    from psyche.manager.render import EventRenderer
    from psyche.manager.runtime import engine_is_local, host_devices
    from psyche.manager.supervisor import Supervisor, handle_signals
    from psyche.manager.versionwatch import VersionWatch

    settings, ui, options = app.settings, app.ui, app.options
    programs = settings.program_ids()
    policy = replace(restart_policy(app.environ), stall_timeout=options.stall_timeout)
    process = options.runtime == "process"
    runtime, reachable = _open_runtime(app)
    renderer = EventRenderer(ui, timestamps=options.timestamps, process=process)
    try:
        ui.info(reachable)
        selected = select_run(app, programs, wait=ChainWait(policy.chain_retry, sleep_through, renderer).read)
        run = selected.run
        ui.info(f"Authorized to join run {run.run_id!r} through grantee {selected.grantee}")
        env = container_env(settings, app.wallet.secret_for_env(), run.run_id, selected.grantee)
        launch = LaunchConfig(
            run_id=run.run_id,
            env=env,
            local=options.local or process,  # the process runtime's "image" is the installed package
            local_repository=DISTRIBUTION if process else DEFAULT_LOCAL_REPOSITORY,
            repository=options.image_repository,
            gpus=options.gpus,
            privileged=options.privileged,
            entrypoint=options.entrypoint,
            command=options.entrypoint_args,
            scratch_dir=str(settings.scratch_dir) if settings.scratch_dir else None,
            devices=() if process else host_devices(),
            timestamps=options.timestamps,
            wallet=str(app.wallet.keypair().pubkey()),
            wallet_key_via=wallet_key_via(options.wallet_key_via, process or engine_is_local(app.environ)),
        )

        def read_version() -> str:
            return queries.fetch_coordinator(app.rpc, run.coordinator_address, run.run_id).client_version

        rpc_urls = [e.http for e in settings.endpoints]
        metrics = MainJobMetrics(options.metrics_port, run.run_id, rpc_urls, ui.info)
        supervisor = Supervisor(runtime, launch, read_version, on_event=metrics.tee(renderer), policy=policy)
        watch = VersionWatch(
            run.coordinator_address,
            run.client_version,
            read_version,
            supervisor.notify_version_changed,
            ws_urls=_ws_urls(settings),
            on_event=_watch_event_reporter(ui),
        )
        with metrics, watch, handle_signals(supervisor.request_stop):
            return supervisor.run()
    finally:
        renderer.close()
        runtime.close()


def _open_runtime(app: App) -> tuple[DockerRuntime | ProcessRuntime, str]:
    """The runtime --runtime names, and the line that says what it found."""
    if app.options.runtime == "process":
        from psyche.manager.procruntime import ProcessRuntime, installed_version

        process = ProcessRuntime(installed=installed_version(), environ=app.environ)
        return process, process.describe()
    from psyche.manager.runtime import DockerRuntime

    # Connecting asked the engine's /version already (Podman takes 0.4 s to answer it: no second call).
    docker = DockerRuntime(environ=app.environ)
    return docker, f"{docker.engine().describe(docker.api_version())} reachable"


def _ws_urls(settings: Settings) -> Sequence[str]:
    require_ws(settings)  # the CLI checked it before the wallet; kept for callers that did not
    return [e.ws for e in settings.endpoints if e.ws]
