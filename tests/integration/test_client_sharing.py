"""One run, one model: reference clients on the local chain share DisTrO results peer to peer.

Each client is the real stack of ``python -m psyche.client train`` (protocol, runner, torch trainer, P2P node
on 127.0.0.1), run on a thread of this process so that the test can read every client's parameters after
every apply. The chain runs faster than real time (FastClock), as in test_client_localnet.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

pytest.importorskip("torch")

import torch

from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.model import Distro
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, PERMISSIONLESS_GRANTEE
from psyche.chain.queries import fetch_run
from psyche.chain.rpc import RpcClient
from psyche.client.actions import RoundKey
from psyche.client.config import TrainerEnv
from psyche.client.identity import derive_identity
from psyche.client.protocol import ClientProtocol
from psyche.client.runner import ChainPort, Runner
from psyche.client.sharing import ResultSharing, start_sharing
from psyche.client.trainer_port import TorchTrainerPort
from psyche.localnet.world import World
from psyche.p2p.settings import P2PSettings
from tests.integration.localnet_support import localnet, run
from tests.integration.test_client_localnet import CONFIG, MODEL, FastClock

pytestmark = pytest.mark.slow

DISTRO = Distro(
    clip_grad_norm=1.0,
    weight_decay=None,
    compression_decay=0.999,
    compression_topk=8,
    compression_chunk=64,
    quantize_1bit=True,
)
SHARED_MODEL = dataclasses.replace(MODEL, optimizer=DISTRO)


def params_hash(port: TorchTrainerPort) -> str:
    """sha256 over every parameter's bytes, in name order."""
    trainer = port.trainer
    assert trainer is not None
    h = hashlib.sha256()
    for name, p in sorted(trainer.model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class HashingTrainer(TorchTrainerPort):
    """The real trainer port, recording a hash of all parameters after every apply and every save."""

    def __init__(self, env: TrainerEnv, run_id: str, sharing: ResultSharing) -> None:
        super().__init__(env, run_id, sharing=sharing)
        self.after_apply: dict[RoundKey, str] = {}
        self.losses: list[float] = []

    def apply(self, acc: CoordinatorAccount, source: RoundKey) -> None:
        super().apply(acc, source)
        self.after_apply[source] = params_hash(self)


@dataclasses.dataclass
class Client:
    wallet: Keypair
    scratch: Path
    sharing: ResultSharing
    trainer: HashingTrainer
    runner: Runner | None = None
    thread: threading.Thread | None = None
    code: int | None = None


def make_client(run_id: str, scratch: Path, bootstrap: list[tuple[str, int]]) -> Client:
    wallet = Keypair()
    identity = derive_identity(run_id, wallet)
    settings = P2PSettings(port=0, bind="127.0.0.1", advertise=None, bootstrap=tuple(bootstrap))
    sharing = start_sharing(identity, settings, rpc_urls=["http://127.0.0.1"], status_dir=scratch)
    trainer = HashingTrainer(TrainerEnv(device="cpu", checkpoint_dir=scratch), run_id, sharing)
    return Client(wallet, scratch, sharing, trainer)


def follow(client: Client, rpc_url: str, ws_url: str, run_id: str, clock: FastClock) -> None:
    identity = derive_identity(run_id, client.wallet)
    with RpcClient([rpc_url]) as rpc:
        chain, first = ChainPort.locate(
            rpc, client.wallet, run_id, PERMISSIONLESS_GRANTEE, identity.public, DEFAULT_PROGRAM_IDS
        )
        protocol = ClientProtocol(client.wallet.pubkey(), identity.public, None, sharing=client.sharing)
        runner = Runner(
            protocol, chain, client.trainer, ws_urls=[ws_url], sharing=client.sharing, clock=clock
        )
        client.sharing.on_change = runner.sharing_changed
        client.runner = runner
        try:
            client.code = runner.run(first)
        finally:
            client.trainer.close()
            client.sharing.close()


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        if c.runner is not None:
            c.runner.stop()
        c.sharing.close()


def final_state(rpc_url: str, run_id: str) -> CoordinatorAccount:
    with RpcClient([rpc_url]) as rpc:
        return fetch_run(rpc, run_id, DEFAULT_PROGRAM_IDS).coordinator


def checkpoint_files(scratch: Path, run_id: str) -> dict[str, dict[str, bytes]]:
    """checkpoint dir name -> file name -> bytes."""
    root = scratch / run_id
    return {
        d.name: {f.name: f.read_bytes() for f in sorted(d.iterdir())}
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def test_three_clients_train_one_model_over_two_epochs(tmp_path: Path, clients: list[Client]) -> None:
    clock = FastClock()
    run_id = "shared-three"
    config = dataclasses.replace(
        CONFIG, init_min_clients=3, min_clients=2, epoch_time=24, total_steps=14, warmup_time=8
    )

    first = make_client(run_id, tmp_path / "c0", [])
    clients.append(first)
    seed = [first.sharing.node.address]
    clients.extend(make_client(run_id, tmp_path / f"c{i}", seed) for i in (1, 2))

    async def scenario() -> CoordinatorAccount:
        async with localnet(clock=clock) as srv, AsyncClient(srv.rpc_url) as rpc:
            owner = Keypair()
            world = World(rpc, owner)
            await world.airdrop(owner.pubkey(), 100 * 10**9)
            for c in clients:
                await world.airdrop(c.wallet.pubkey(), 10**9)
            handle = await world.create_run(run_id)
            await world.authorize(PERMISSIONLESS_GRANTEE)
            await world.configure(handle, config, SHARED_MODEL, earning_rate=1_000_000)
            threads = [asyncio.to_thread(follow, c, srv.rpc_url, srv.ws_url, run_id, clock) for c in clients]
            await asyncio.wait_for(asyncio.gather(*threads), timeout=240)
            return await asyncio.to_thread(final_state, srv.rpc_url, run_id)

    final = run(scenario)

    assert [c.code for c in clients] == [0, 0, 0]
    assert final.run_state == RunState.Finished
    applied = [c.trainer.after_apply for c in clients]
    common = set(applied[0]) & set(applied[1]) & set(applied[2])
    epochs = {key[0] for key in common}
    assert len(epochs) >= 2, f"applies in fewer than two epochs: {sorted(common)}"
    for key in sorted(common):
        assert len({a[key] for a in applied}) == 1, f"parameters differ after applying round {key}"
    # Every epoch-end checkpoint is byte-identical in the three scratch folders.
    saved = [checkpoint_files(c.scratch, run_id) for c in clients]
    assert saved[0] and saved[0].keys() == saved[1].keys() == saved[2].keys()
    for name in saved[0]:
        assert saved[0][name] == saved[1][name] == saved[2][name], f"checkpoint {name} differs"
