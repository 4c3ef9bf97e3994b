"""One run, one model: reference clients on the local chain share DisTrO results peer to peer.

Each client is the real stack of ``python -m psyche.client train`` (protocol, runner, torch trainer, P2P node
on 127.0.0.1), run on a thread of this process so that the test can read every client's parameters after
every apply. The chain runs faster than real time (FastClock), as in test_client_localnet.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from solders.keypair import Keypair

pytest.importorskip("torch")

import torch

from psyche.chain import round_view
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, PERMISSIONLESS_GRANTEE
from psyche.chain.queries import fetch_run
from psyche.chain.rpc import RpcClient
from psyche.client.actions import RoundKey, Train
from psyche.client.config import TrainerEnv
from psyche.client.distro import SparseParam
from psyche.client.distro_payload import encode_payload
from psyche.client.exchange import NOT_ASSIGNED
from psyche.client.identity import derive_identity
from psyche.client.protocol import ClientProtocol
from psyche.client.runner import ChainPort, Runner
from psyche.client.sharing import STATUS_FILE, ResultSharing, start_sharing
from psyche.client.train import Trainer
from psyche.client.trainer_port import TorchTrainerPort
from psyche.localnet.demo_run import DEMO_DISTRO
from psyche.p2p.node import P2PNode
from psyche.p2p.settings import P2PSettings
from psyche.p2p.wire import Broadcast, Proof, TrainingResult, encode_broadcast
from tests.support.client_run import CONFIG, MODEL, SPEED, permissionless_run
from tests.support.clock import FastClock
from tests.support.localnet import chain_rpc, localnet, run
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.slow

SHARED_MODEL = dataclasses.replace(MODEL, optimizer=DEMO_DISTRO)  # upstream's DisTrO settings


def params_hash(port: TorchTrainerPort) -> str:
    """sha256 over every parameter's bytes, in name order."""
    trainer = port.trainer
    assert isinstance(trainer, Trainer)
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


class MischievousSharing(ResultSharing):
    """An epoch client that, besides its honest result, announces three bad ones every round: a payload
    whose bytes do not match its commitment, a batch not assigned to it, and an oversized payload."""

    def publish(self, acc: CoordinatorAccount, task: Train, results: list[SparseParam]) -> bytes:
        digest = super().publish(acc, task, results)
        index = self._my_index(acc)
        committee, position = round_view.committee_proof(acc, index, round_view.current_round(acc))
        batch = (task.start, task.end)
        honest = encode_payload(task.step, task.step, batch, results, self.quantize_1bit)
        other_batch = (task.end + 1, task.end + 1 + task.end - task.start)
        for blob, announced_batch in (
            (honest, batch),  # announced under a commitment it does not hash to
            (honest, other_batch),
            (os.urandom(self.max_payload + 1), batch),
        ):
            commitment = os.urandom(32)
            broadcast = Broadcast(
                task.step,
                Proof(committee, position, index),
                commitment,
                self.identity.sign(commitment),
                self._next_nonce(),
                TrainingResult(announced_batch, self.node.publish(blob, tag=task.step)),
            )
            self.node.send_all(encode_broadcast(broadcast))
        return digest


class Outsider:
    """A P2P node whose key is not an epoch client's, announcing a result to everyone it finds."""

    def __init__(self, targets: list[Client]) -> None:
        self.identity = derive_identity("outsider", Keypair())
        bootstrap = [targets[0].sharing.node.address]
        self.node = P2PNode(self.identity, "127.0.0.1", 0, None, bootstrap, lambda s, d: None).start()
        self.node.set_allowed({c.sharing.identity.public for c in targets})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        commitment = bytes(32)
        while not self.stop.wait(0.5):
            ticket = self.node.publish(b"not a payload", tag=0)
            broadcast = Broadcast(
                1,
                Proof(0, 0, 0),
                commitment,
                self.identity.sign(commitment),
                1,
                TrainingResult((0, 0), ticket),
            )
            self.node.send_all(encode_broadcast(broadcast))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.node.close()


def make_client(
    run_id: str, scratch: Path, bootstrap: list[tuple[str, int]], kind: type[ResultSharing] = ResultSharing
) -> Client:
    wallet = Keypair()
    identity = derive_identity(run_id, wallet)
    settings = P2PSettings(port=0, bind="127.0.0.1", advertise=None, bootstrap=tuple(bootstrap))
    sharing = start_sharing(identity, settings, rpc_urls=["http://127.0.0.1"], status_dir=scratch, kind=kind)
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
    """One honest pair and one client that also announces bad results; an outsider announces too."""
    clock = FastClock(SPEED)
    run_id = "shared-three"
    config = dataclasses.replace(
        CONFIG, init_min_clients=3, min_clients=2, epoch_time=20, total_steps=1000, warmup_time=8
    )

    first = make_client(run_id, tmp_path / "c0", [])
    clients.append(first)
    seed = [first.sharing.node.address]
    clients.append(make_client(run_id, tmp_path / "c1", seed))
    clients.append(make_client(run_id, tmp_path / "c2", seed, MischievousSharing))
    outsider = Outsider(clients)

    async def scenario() -> CoordinatorAccount:
        async with localnet(clock=clock) as srv, chain_rpc(srv.rpc_url) as rpc:
            await permissionless_run(rpc, run_id, [c.wallet.pubkey() for c in clients], config, SHARED_MODEL)
            threads = [
                asyncio.ensure_future(asyncio.to_thread(follow, c, srv.rpc_url, srv.ws_url, run_id, clock))
                for c in clients
            ]
            try:
                # Two epochs are enough, whatever the machine's speed makes an epoch's length in rounds.
                await until(lambda: all(applied_in(c, epoch=1) >= 2 for c in clients), threads, 240)
            finally:  # also on failure: a client left running would keep this event loop from closing
                stop(clients)
                await asyncio.wait_for(asyncio.gather(*threads, return_exceptions=True), timeout=60)
            return await asyncio.to_thread(final_state, srv.rpc_url, run_id)

    try:
        final = run(scenario)
    finally:
        outsider.close()

    assert [c.code for c in clients] == [0, 0, 0]
    assert final.progress.epoch >= 1
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
    # The honest clients refused and counted every kind of bad announcement; none was applied (the
    # parameters above stayed equal to the mischievous client's own, which applied only agreed results).
    for honest in clients[:2]:
        refused = honest.sharing.node.stats()["refused"]
        for reason in ("commitment-mismatch", NOT_ASSIGNED, "too-large", "not-allowed"):
            assert refused.get(reason, 0) >= 1, f"{reason!r} not counted: {refused}"
        status = json.loads((honest.scratch / STATUS_FILE).read_text())
        assert status["results_applied"] == 3 or status["results_applied"] == 0
        assert status["refused"][NOT_ASSIGNED] >= 1


def test_a_killed_client_is_dropped_and_a_joiner_fetches_the_model_from_peers(
    tmp_path: Path, clients: list[Client]
) -> None:
    clock = FastClock(SPEED)
    run_id = "shared-join"
    config = dataclasses.replace(
        # epoch_time: a loaded machine runs few rounds per epoch; the victim's drop (at the earliest two
        # rounds after its last result) must come before the epoch's end. round_witness_time: a witness that
        # waits for the last payload until RoundWitness starts gets 1 s (real) to land, not 0.25 s.
        CONFIG,
        init_min_clients=3,
        min_clients=2,
        epoch_time=160,
        round_witness_time=4,
        total_steps=1000,
        warmup_time=40,
    )
    first = make_client(run_id, tmp_path / "c0", [])
    clients.append(first)
    seed = [first.sharing.node.address]
    clients.extend(make_client(run_id, tmp_path / f"c{i}", seed) for i in (1, 2))
    joiner = make_client(run_id, tmp_path / "c3", seed)
    seen: dict[str, CoordinatorAccount] = {}

    async def scenario() -> CoordinatorAccount:
        async with localnet(clock=clock) as srv, chain_rpc(srv.rpc_url) as rpc:
            wallets = [c.wallet.pubkey() for c in [*clients, joiner]]
            await permissionless_run(rpc, run_id, wallets, config, SHARED_MODEL)
            running = [
                asyncio.ensure_future(asyncio.to_thread(follow, c, srv.rpc_url, srv.ws_url, run_id, clock))
                for c in clients
            ]
            try:
                victim = clients[2]
                # It took part in epoch 0's first apply.
                await until(lambda: (0, 0) in victim.trainer.after_apply, running, 120)
                assert victim.runner is not None
                victim.runner.stop()  # killed mid-epoch: it stops sharing and witnessing
                await asyncio.wait_for(running[2], timeout=30)
                seen["dropped"] = await asyncio.to_thread(wait_for_drop, srv.rpc_url, run_id, victim)
                clients.append(joiner)  # joins the next epoch and must fetch the model from its peers
                running.append(
                    asyncio.ensure_future(
                        asyncio.to_thread(follow, joiner, srv.rpc_url, srv.ws_url, run_id, clock)
                    )
                )
                survivors = [clients[0], clients[1], joiner]
                alive = [running[0], running[1], running[3]]
                await until(lambda: applied_in(joiner, epoch=1) >= 2, alive, 240)
                stop(survivors)
                await asyncio.wait_for(asyncio.gather(*alive), timeout=60)
            finally:  # also on failure: a client left running would keep this event loop from closing
                stop([*clients, joiner])
                await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), timeout=60)
            return await asyncio.to_thread(final_state, srv.rpc_url, run_id)

    final = run(scenario)

    assert [clients[i].code for i in (0, 1, 3)] == [0, 0, 0]
    assert final.progress.epoch >= 1
    dropped = seen["dropped"]
    victim_signer = clients[2].wallet.pubkey()
    assert any(
        c.signer == victim_signer and c.state.name == "Dropped" for c in dropped.epoch_state.exited_clients
    )
    survivors = [clients[0].trainer.after_apply, clients[1].trainer.after_apply]
    for key in sorted(set(survivors[0]) & set(survivors[1])):
        assert survivors[0][key] == survivors[1][key], f"survivors differ after round {key}"
    joined = joiner.trainer.after_apply
    assert joined and min(joined)[0] >= 1, f"the joiner applied nothing in a later epoch: {sorted(joined)}"
    for key in sorted(joined):
        assert joined[key] == survivors[0][key], f"the joiner differs from its peers after round {key}"
    assert any(p.name.startswith("epoch-000000") for p in (joiner.scratch / run_id).iterdir())


def applied_in(client: Client, *, epoch: int) -> int:
    """How many rounds of ``epoch`` (or later) ``client`` applied."""
    return sum(1 for key in list(client.trainer.after_apply) if key[0] >= epoch)


async def until(done: Callable[[], bool], running: Sequence[asyncio.Future[None]], timeout: float) -> None:
    """Wait for ``done()``; a client that ends first, or the timeout, fails the test."""

    def reached() -> bool:
        ended = [f for f in running if f.done()]
        assert not ended, f"a client ended early: {[f.exception() for f in ended]}"
        return done()

    await wait_until_async(reached, timeout=timeout, what="the clients' goal", interval=0.1)


def stop(clients: list[Client]) -> None:
    for c in clients:
        if c.runner is not None:
            c.runner.stop()


def wait_for_drop(rpc_url: str, run_id: str, victim: Client, timeout: float = 60.0) -> CoordinatorAccount:
    """The coordinator once the chain removed ``victim`` from the epoch as unhealthy."""
    deadline = time.monotonic() + timeout
    signer = victim.wallet.pubkey()
    while time.monotonic() < deadline:
        acc = final_state(rpc_url, run_id)
        if any(c.signer == signer for c in acc.epoch_state.exited_clients):
            return acc
        if acc.run_state not in (RunState.RoundTrain, RunState.RoundWitness):
            raise AssertionError(
                f"the epoch ended ({acc.run_state.name}) before the killed client was dropped"
            )
        time.sleep(0.2)
    raise AssertionError("the killed client was never removed from the epoch")
