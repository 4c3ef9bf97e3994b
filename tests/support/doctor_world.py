"""The doctor's seams over fakes: one World whose fields say what the machine, chain and engine answer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain.accounts.model import LLM, Checkpoint
from psyche.chain.programs import PERMISSIONLESS_GRANTEE
from psyche.chain.rpc import AccountInfo
from psyche.errors import DockerUnavailable, RpcError, RpcUnavailable
from psyche.manager.doctor import ChainProbe, Seams, run_doctor
from psyche.manager.doctor_report import Check, DoctorOptions, EngineProbe
from psyche.manager.engines import EngineId, EngineKind
from psyche.manager.hardware import (
    DiskUsage,
    Gpu,
    GpuProbe,
)
from psyche.manager.procruntime import ClientProbe
from psyche.manager.settings import load_settings
from psyche.manager.wallet import load_wallet
from psyche.parallelism_table import Parallelism as TableRow
from psyche.parallelism_table import Table as ParallelismTable
from tests.support.clock import FakeClock
from tests.support.fake_chain import FakeChain, seed_authorization, seed_run
from tests.support.p2p_fakes import PEER, FakeP2P

KEYPAIR = Keypair.from_seed(bytes(range(1, 33)))
USER = KEYPAIR.pubkey()
KEY_JSON = json.dumps(list(bytes(KEYPAIR)))
GIB = 2**30
H100 = Gpu("NVIDIA H100 80GB HBM3", 81559, "550.54.15")
RPC1, RPC2 = "http://127.0.0.1:8899", "http://127.0.0.1:9899"
WS1, WS2 = "ws://127.0.0.1:8900", "ws://127.0.0.1:9900"


class FakeRpc(ChainProbe):
    """An RpcClient over the FakeChain; endpoints in ``dead`` refuse, each answer costs ``latency[url]``."""

    def __init__(self, world: World, urls: Sequence[str]) -> None:
        self.world = world
        self.urls = list(urls)
        self.closed = False

    @property
    def current_endpoint(self) -> str:
        return next((u for u in self.urls if u not in self.world.dead), self.urls[0])

    def _answer(self) -> None:
        alive = [u for u in self.urls if u not in self.world.dead]
        if not alive:
            raise RpcUnavailable({u: "ConnectError: [Errno 111] Connection refused" for u in self.urls})
        self.world.clock.now += self.world.latency.get(alive[0], 0.02)

    def get_slot(self) -> int:
        self._answer()
        return 1234

    def get_balance(self, pubkey: Pubkey) -> int:
        self._answer()
        return self.world.balance

    def get_account_info(self, pubkey: Pubkey) -> AccountInfo | None:
        self._answer()
        return self.world.chain.get_account_info(pubkey)

    def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountInfo | None]:
        self._answer()
        return self.world.chain.get_multiple_accounts(pubkeys)

    def get_program_accounts(
        self, program: Pubkey, filters: Sequence[int | tuple[int, bytes]] = ()
    ) -> list[tuple[Pubkey, bytes]]:
        self._answer()
        return self.world.chain.get_program_accounts(program, filters)

    def close(self) -> None:
        self.closed = True


class FakeEngine(EngineProbe):
    def __init__(
        self,
        *,
        nvidia: bool = True,
        images: tuple[str, ...] = (),
        root: str | None = "/var/lib/docker",
        labels: dict[str, dict[str, str]] | None = None,
        kind: EngineKind = "docker",
    ):
        self.kind: EngineKind = kind
        self.nvidia = nvidia
        self.images = images
        self.root = root
        self.labels = labels or {}

    def version(self) -> str:
        return "27.1.0"

    def api_version(self) -> str:
        return "1.45"

    def engine(self) -> EngineId:
        return EngineId(self.kind, self.version())

    def has_nvidia_runtime(self) -> bool:
        return self.nvidia

    def image_exists(self, image: str) -> bool:
        return image in self.images

    def data_root(self) -> str | None:
        return self.root

    def image_labels(self, image: str) -> dict[str, str]:
        return self.labels.get(image, {})


TABLE: ParallelismTable = {"org/model": {"H100": {1: TableRow(1, 1, 8), 8: TableRow(8, 1, 8)}}}
# The seeded run's model: PARALLELISM_AUTO looks up the repo its checkpoint names.
RUN_MODEL = dataclasses.replace(LLM.zeroed(), checkpoint=Checkpoint.hub("org/model"))


@dataclasses.dataclass
class World:
    """Everything the fakes answer from; tests change a field, then call ``doctor()``."""

    tmp: Path
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    chain: FakeChain = dataclasses.field(default_factory=FakeChain)
    dead: set[str] = dataclasses.field(default_factory=set)
    dead_ws: set[str] = dataclasses.field(default_factory=set)
    latency: dict[str, float] = dataclasses.field(default_factory=dict)
    balance: int = 2_000_000_000
    engine: FakeEngine | None = dataclasses.field(default_factory=FakeEngine)
    gpus: GpuProbe = dataclasses.field(default_factory=lambda: GpuProbe((H100,) * 8))
    free: dict[str, int] = dataclasses.field(default_factory=lambda: {"/var/lib/docker": 500 * GIB})
    mode: int = 0o100600
    clock: FakeClock = dataclasses.field(default_factory=lambda: FakeClock(start=100.0))
    opened: list[FakeRpc] = dataclasses.field(default_factory=list)
    hook: str | None = "/usr/bin/nvidia-container-runtime-hook"
    p2p: FakeP2P = dataclasses.field(default_factory=FakeP2P)
    cdi: str | None = None
    client: ClientProbe = dataclasses.field(
        default_factory=lambda: ClientProbe("1", "2.13.0+cu128", 8, "12.8")
    )

    def __post_init__(self) -> None:
        key = self.tmp / "id.json"
        key.write_text(KEY_JSON)
        self.env = {
            "RPC": RPC1,
            "WS_RPC": WS1,
            "RPC_2": RPC2,
            "WS_RPC_2": WS2,
            "RUN_ID": "test",
            "WALLET_PRIVATE_KEY_PATH": str(key),
            "PARALLELISM_AUTO": "true",
            "P2P_BOOTSTRAP": f"{PEER}:4100",
        }
        seed_run(self.chain, model=RUN_MODEL)
        seed_authorization(self.chain, PERMISSIONLESS_GRANTEE)

    def rpc(self, urls: Sequence[str], timeout: float) -> FakeRpc:
        client = FakeRpc(self, urls)
        self.opened.append(client)
        return client

    def ws(self, url: str, timeout: float) -> None:
        if url in self.dead_ws:
            raise RpcError("ConnectionRefusedError: Connect call failed")
        self.clock.now += 0.01

    def runtime(self) -> FakeEngine:
        if self.engine is None:
            raise DockerUnavailable(
                "Failed to execute docker command.", hint="start Docker, check DOCKER_HOST"
            )
        return self.engine

    def disk(self, path: Path) -> DiskUsage:
        if str(path) == "/dev/shm":
            return DiskUsage(16 * GIB, 0, 16 * GIB)
        if str(path) not in self.free:
            raise FileNotFoundError(2, "No such file or directory")
        return DiskUsage(1000 * GIB, 0, self.free[str(path)])

    def seams(self, table: Callable[[], ParallelismTable] = lambda: TABLE) -> Seams:
        return Seams(
            settings=lambda: load_settings(None, self.env),
            wallet=load_wallet,
            rpc=self.rpc,
            ws=self.ws,
            runtime=self.runtime,
            gpus=lambda: self.gpus,
            nvidia_hook=lambda: self.hook,
            disk_usage=self.disk,
            parallelism_table=table,
            file_mode=lambda path: self.mode,
            monotonic=self.clock,
            p2p=self.p2p,
            cdi_spec=lambda: self.cdi,
            client=lambda: self.client,
        )

    def doctor(self, **options: object) -> dict[str, Check]:
        checks = run_doctor(self.seams(), DoctorOptions(**options))  # type: ignore[arg-type]
        self.checks = checks
        return {c.name: c for c in checks}


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)
