"""Doctor: the checks between this machine and a join, as OK/WARN/FAIL records with fixes; composed here."""

from __future__ import annotations

import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from psyche.chain.queries import AccountReader
from psyche.errors import AccountDecodeError, AccountNotFound, RpcUnavailable, RunManagerError
from psyche.manager.constants import EnvVars
from psyche.manager.doctor_host import (
    check_client,
    check_client_version,
    check_disk,
    check_engine,
    check_gpus,
    check_parallelism,
    check_shm,
    check_wallet_key,
)
from psyche.manager.doctor_p2p import P2PProbe, SocketProbe, check_p2p
from psyche.manager.doctor_report import DEFAULT_OPTIONS, Check, DoctorOptions, EngineProbe, Status, skip
from psyche.manager.hardware import DiskUsage, GpuProbe
from psyche.parallelism_table import Table as ParallelismTable

if TYPE_CHECKING:
    from solders.pubkey import Pubkey

    from psyche.chain.queries import Run
    from psyche.manager.procruntime import ClientProbe
    from psyche.manager.settings import Settings
    from psyche.manager.wallet import Wallet

LAMPORTS_PER_SOL = 1_000_000_000
FEE_LAMPORTS = 5_000  # Solana's base fee per signature: less than this cannot pay for the join transaction
SLOW_MS = 1_000.0


class ChainProbe(AccountReader, Protocol):
    """The slice of RpcClient the doctor uses: what queries read (AccountReader), slot, balance, close."""

    def get_slot(self) -> int:
        """The slot of the endpoint answering."""

    def get_balance(self, pubkey: Pubkey) -> int:
        """``pubkey``'s balance in lamports."""

    def close(self) -> None:
        """Close the client and its connections."""


@dataclass(frozen=True, slots=True)
class Seams:
    """Every edge the doctor touches, injected: real ones from the command, fakes in tests."""

    settings: Callable[[], Settings]
    wallet: Callable[[Settings], Wallet]
    rpc: Callable[[Sequence[str], float], ChainProbe]  # (endpoints, timeout) -> client over those only
    ws: Callable[[str, float], None]  # one pubsub round trip; raises RunManagerError
    runtime: Callable[[], EngineProbe]  # raises DockerUnavailable
    gpus: Callable[[], GpuProbe]
    nvidia_hook: Callable[[], str | None]  # the NVIDIA Container Toolkit's hook on this host, or None
    disk_usage: Callable[[Path], DiskUsage]  # raises OSError
    parallelism_table: Callable[[], ParallelismTable]
    file_mode: Callable[[Path], int]  # st_mode; raises OSError
    monotonic: Callable[[], float]
    cdi_spec: Callable[[], str | None] = lambda: None  # a CDI spec file for Podman's GPUs, or None
    client: Callable[[], ClientProbe] = lambda: ClientProbe(None)  # --runtime process: the installed client
    p2p: P2PProbe = field(default_factory=SocketProbe)  # real TCP sockets on this host


# -- configuration ------------------------------------------------------------------------------------


def check_settings(load: Callable[[], Settings]) -> tuple[Check, Settings | None]:
    """The .env parses and every value is valid."""
    from psyche.manager.settings import require_rpc

    try:
        settings = load()
        require_rpc(settings)
    except RunManagerError as err:
        fix = err.hint or "correct the variable named above (docs/configuration.md lists every variable)"
        return Check("env", Status.FAIL, err.message, fix), None
    where = str(settings.env_file) if settings.env_file else "the environment (no --env-file)"
    detail = (
        f"{where}: {len(settings.passthrough)} variable(s), {len(settings.endpoints)} endpoint(s), all valid"
    )
    return Check("env", Status.OK, detail), settings


def check_wallet(
    settings: Settings, load: Callable[[Settings], Wallet], file_mode: Callable[[Path], int]
) -> tuple[list[Check], Wallet | None]:
    """The wallet loads; its key file (or the .env holding the raw key) is not readable by others."""
    try:
        wallet = load(settings)
    except RunManagerError as err:
        return [Check("wallet", Status.FAIL, err.message, err.hint), skip("wallet file", "the wallet")], None
    checks = [Check("wallet", Status.OK, f"{wallet.pubkey} from {wallet.source.description}")]
    path = wallet.source.path
    if path is None and settings.sources.get(EnvVars.RAW_WALLET_PRIVATE_KEY, "").startswith(
        str(settings.env_file)
    ):
        path = settings.env_file  # the raw key lives in the .env file: that file is the secret now
    if path is None:
        checks.append(Check("wallet file", Status.OK, "key given in the environment (no file to protect)"))
        return checks, wallet
    try:
        mode = stat.S_IMODE(file_mode(path))
    except OSError as exc:
        checks.append(Check("wallet file", Status.WARN, f"cannot stat {path}: {exc.strerror}"))
        return checks, wallet
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        detail = f"{path} has mode {mode:04o}: group or others can read the key"
        checks.append(Check("wallet file", Status.WARN, detail, f"chmod 600 {path}"))
    else:
        checks.append(Check("wallet file", Status.OK, f"{path} has mode {mode:04o}"))
    return checks, wallet


# -- network ------------------------------------------------------------------------------------------


def _endpoint_names(settings: Settings) -> list[tuple[str, str]]:
    names = [(EnvVars.RPC, EnvVars.WS_RPC)]
    names += [
        (EnvVars.backup_rpc(n), EnvVars.backup_ws_rpc(n)) for n in range(2, len(settings.endpoints) + 1)
    ]
    return names


def _timed(
    name: str, label: str, probe: Callable[[], str], monotonic: Callable[[], float], fix: str
) -> tuple[Check, float | None]:
    start = monotonic()
    try:
        seen = probe()
    except RunManagerError as err:
        reason = "; ".join(err.failures.values()) if isinstance(err, RpcUnavailable) else err.message
        return Check(name, Status.FAIL, f"{label} did not answer: {reason}", fix), None
    ms = (monotonic() - start) * 1000
    status = Status.WARN if ms > SLOW_MS else Status.OK
    slow_fix = (
        f"over {SLOW_MS:.0f} ms: use a closer or paid endpoint first" if status == Status.WARN else None
    )
    return Check(name, status, f"{label}: {seen} in {ms:.0f} ms", slow_fix), ms


def _mark_slowest(checks: list[Check], times: list[float | None]) -> None:
    answered = [(t, i) for i, t in enumerate(times) if t is not None]
    if len(answered) >= 2:
        _, i = max(answered)
        c = checks[i]
        checks[i] = Check(c.name, c.status, c.detail + " (slowest)", c.fix)


def check_endpoints(settings: Settings, seams: Seams, timeout: float) -> tuple[list[Check], list[str]]:
    """Each RPC and WS endpoint answers on its own, timed; also returns the HTTP URLs that answered."""
    from psyche.chain.endpoints import redact

    http_checks: list[Check] = []
    http_times: list[float | None] = []
    ws_checks: list[Check] = []
    ws_times: list[float | None] = []
    healthy: list[str] = []
    for endpoint, (http_name, ws_name) in zip(settings.endpoints, _endpoint_names(settings), strict=False):

        def slot(url: str = endpoint.http) -> str:
            client = seams.rpc([url], timeout)
            try:
                return f"slot {client.get_slot()}"
            finally:
                client.close()

        fix = f"check {http_name} {settings.where(http_name)}: URL, API key, and that the node is up"
        check, ms = _timed(http_name, redact(endpoint.http), slot, seams.monotonic, fix)
        http_checks.append(check)
        http_times.append(ms)
        if ms is not None:
            healthy.append(endpoint.http)
        if endpoint.ws is None:
            continue

        def round_trip(url: str = endpoint.ws) -> str:
            seams.ws(url, timeout)
            return "slotSubscribe answered"

        fix = f"check {ws_name} {settings.where(ws_name)}: the node's pubsub URL (often port 8900 or /ws)"
        check, ms = _timed(ws_name, redact(endpoint.ws), round_trip, seams.monotonic, fix)
        ws_checks.append(check)
        ws_times.append(ms)
    _mark_slowest(http_checks, http_times)
    _mark_slowest(ws_checks, ws_times)
    return http_checks + ws_checks, healthy


# -- chain --------------------------------------------------------------------------------------------


def check_balance(rpc: ChainProbe, wallet: Wallet, low: int) -> Check:
    """The wallet holds SOL for transaction fees."""
    from solders.pubkey import Pubkey

    try:
        lamports = rpc.get_balance(Pubkey.from_string(wallet.pubkey))
    except RunManagerError as err:
        return Check("balance", Status.FAIL, f"could not read the balance: {err.message}", err.hint)
    shown = f"{lamports / LAMPORTS_PER_SOL:.9f} SOL ({lamports} lamports)"
    fund = f"send SOL to {wallet.pubkey} (devnet/localnet: solana airdrop 1 {wallet.pubkey})"
    if lamports < FEE_LAMPORTS:
        return Check("balance", Status.FAIL, f"{shown}: cannot pay one transaction fee", fund)
    if lamports < low:
        return Check("balance", Status.WARN, f"{shown}: under {low / LAMPORTS_PER_SOL:g} SOL", fund)
    return Check("balance", Status.OK, shown)


def check_run(rpc: ChainProbe, settings: Settings) -> tuple[Check, Run | None]:
    """The run exists, and its state allows joining."""
    from psyche.chain.accounts.coordinator import RunState
    from psyche.chain.queries import fetch_run

    if settings.run_id is None:
        detail = "RUN_ID unset: the run-manager will pick a run this wallet may join"
        return Check("run", Status.WARN, detail, "set RUN_ID to check one run"), None
    try:
        run = fetch_run(rpc, settings.run_id, settings.program_ids())
    except (AccountNotFound, AccountDecodeError) as err:
        fix = (
            f"check RUN_ID {settings.where(EnvVars.RUN_ID)} and COORDINATOR_PROGRAM_ID "
            f"({settings.coordinator_program_id}); `run-manager list-runs --all` lists the runs"
        )
        return Check("run", Status.FAIL, err.message, fix), None
    except RunManagerError as err:
        return Check("run", Status.FAIL, err.message, err.hint), None
    detail = (
        f"{run.run_id!r}: {run.state.display}, {run.num_clients} client(s) (min {run.min_clients}), "
        f"client_version {run.client_version!r}"
    )
    if run.state == RunState.Finished:
        return Check("run", Status.FAIL, detail, "the run is over: pick another RUN_ID"), run
    if run.state.halted:
        return Check("run", Status.WARN, detail, "the owner must resume the run before anyone can join"), run
    return Check("run", Status.OK, detail), run


def check_image(run: Run, engine: EngineProbe | None, options: DoctorOptions) -> Check:
    """The run's client_version maps to an image reference (present locally, where --local needs it)."""
    from psyche.manager.images import image_for_version

    kwargs = {} if options.repository is None else {"repository": options.repository}
    try:
        image = image_for_version(run.client_version, local=options.local, **kwargs)
    except RunManagerError as err:
        return Check("image", Status.FAIL, err.message, err.hint)
    if engine is None:
        return Check("image", Status.OK, image.reference)
    try:
        present = engine.image_exists(image.reference)
    except RunManagerError as err:
        return Check("image", Status.WARN, f"{image.reference}: cannot ask the engine: {err.message}")
    if present:
        return Check("image", Status.OK, f"{image.reference} (present in the engine)")
    if options.local:
        fix = f"build or load {image.reference} (docker images), or drop --local to pull it"
        return Check(
            "image", Status.FAIL, f"{image.reference}: not in the engine and --local never pulls", fix
        )
    return Check("image", Status.OK, f"{image.reference} (will be pulled)")


def _grantee_words(grantee: Pubkey, user: Pubkey) -> str:
    from psyche.chain.programs import PERMISSIONLESS_GRANTEE

    if grantee == PERMISSIONLESS_GRANTEE:
        return f"permissionless (grantee {grantee})"
    if grantee == user:
        return f"this wallet's own authorization (grantee {grantee})"
    return f"delegate of AUTHORIZER {grantee}"


def check_authorization(rpc: ChainProbe, settings: Settings, wallet: Wallet) -> Check:
    """The wallet is authorized to join, and through which grantee."""
    from solders.pubkey import Pubkey

    from psyche.chain.queries import check_join, require_authorized

    assert settings.run_id is not None
    user = Pubkey.from_string(wallet.pubkey)
    authorizer = Pubkey.from_string(settings.authorizer) if settings.authorizer else None
    try:
        join = check_join(rpc, settings.run_id, user, authorizer, settings.program_ids())
        grantee = require_authorized(join)
    except RunManagerError as err:
        return Check("authorization", Status.FAIL, err.message, err.hint)
    detail = f"authorized through {_grantee_words(grantee, user)}"
    if join.already_in_epoch:
        fix = "a client with this key is in the current epoch: stop it, or join with another wallet"
        return Check("authorization", Status.WARN, detail + "; already in the current epoch", fix)
    return Check("authorization", Status.OK, detail)


# -- composition --------------------------------------------------------------------------------------


def run_doctor(seams: Seams, options: DoctorOptions = DEFAULT_OPTIONS) -> list[Check]:
    """Every check, in report order; a check whose prerequisite failed is SKIP."""
    process = options.runtime == "process"
    checks: list[Check] = []
    env_check, settings = check_settings(seams.settings)
    checks.append(env_check)
    wallet: Wallet | None = None
    run: Run | None = None
    if process:
        client = seams.client()
        engine_checks, engine = check_client(client, options.gpus)
    else:
        engine_checks, engine = check_engine(seams.runtime, seams.nvidia_hook, options.gpus, seams.cdi_spec)
    if settings is not None:
        wallet_checks, wallet = check_wallet(settings, seams.wallet, seams.file_mode)
        checks += wallet_checks
        endpoint_checks, healthy = check_endpoints(settings, seams, options.timeout)
        checks += endpoint_checks
        if healthy:
            rpc = seams.rpc(healthy, options.timeout)
            try:
                checks.append(
                    check_balance(rpc, wallet, options.low_balance)
                    if wallet
                    else skip("balance", "the wallet")
                )
                run_check, run = check_run(rpc, settings)
                checks.append(run_check)
                if process:
                    checks.append(
                        check_client_version(run, client) if run else skip("client version", "the run")
                    )
                else:
                    checks.append(check_image(run, engine, options) if run else skip("image", "the run"))
                if run is not None and wallet is not None:
                    checks.append(check_authorization(rpc, settings, wallet))
                else:
                    checks.append(skip("authorization", "the run and the wallet"))
            finally:
                rpc.close()
        else:
            checks += [
                skip(n, "an RPC endpoint that answers") for n in ("balance", "run", "image", "authorization")
            ]
        checks += check_p2p(settings, seams.p2p, options.timeout)
    else:
        checks += [skip(n, "a valid .env") for n in ("wallet", "RPC", "run", "p2p")]
    checks += engine_checks
    if not process:  # a child process has no image to store and gets the key as a /dev/shm file
        checks.append(check_wallet_key(run, engine, options))
        image_present = any(c.name == "image" and "present in the engine" in c.detail for c in checks)
        checks.append(check_disk(engine, image_present, seams.disk_usage, options.image_size))
    probe = seams.gpus()
    checks.append(check_gpus(probe, options.gpus))
    if settings is not None:
        model = run.coordinator.model if run is not None else None
        checks.append(check_parallelism(settings, probe, seams.parallelism_table, model))
    else:
        checks.append(skip("parallelism", "a valid .env"))
    if not process:
        checks.append(check_shm(seams.disk_usage, options.container_shm))
    return checks
