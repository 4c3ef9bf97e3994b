"""The reference client on the local chain: joins a permissionless run, trains, witnesses, earns points."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from pathlib import Path

import pytest
from solders.keypair import Keypair

pytest.importorskip("torch")

from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, PERMISSIONLESS_GRANTEE
from psyche.chain.rpc import RpcClient
from psyche.client.actions import Train, TrainOutcome
from psyche.client.config import TrainerEnv
from psyche.client.identity import derive_identity
from psyche.client.protocol import ClientProtocol
from psyche.client.rank_processes import RankGroup
from psyche.client.runner import ChainPort, Runner
from psyche.client.trainer_port import TorchTrainerPort
from psyche.localnet.world import World
from tests.support.client_run import CONFIG, EARNING_RATE, MODEL, SPEED, TOTAL_STEPS, permissionless_run
from tests.support.clock import FastClock
from tests.support.localnet import chain_rpc, localnet, run

pytestmark = pytest.mark.slow

RANKS_CONFIG = dataclasses.replace(CONFIG, warmup_time=20)  # 5 s real: rank 1 starts and imports torch


class RecordingTrainer(TorchTrainerPort):
    """The real torch trainer port, remembering every loss."""

    def __init__(self, env: TrainerEnv, run_id: str) -> None:
        super().__init__(env, run_id)
        self.losses: list[float] = []

    def train(self, acc: CoordinatorAccount, task: Train) -> TrainOutcome:
        outcome = super().train(acc, task)
        self.losses.append(outcome.loss)
        return outcome


@pytest.mark.parametrize("websocket", [True, False], ids=["websocket", "polling"])
def test_one_client_trains_a_whole_run_and_earns_points(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, websocket: bool
) -> None:
    # Polling sees the chain once a real second: at 4x a whole round witness window (0.25 s real) fits
    # between two polls and a busy CI machine made the last witness land after Cooldown began. At 2x the
    # client still polls, trains and witnesses every round; the assertions are the same.
    clock = FastClock(SPEED if websocket else SPEED / 2)
    wallet = Keypair()
    run_id = "client-e2e"

    async def scenario() -> tuple[int, CoordinatorAccount, RecordingTrainer]:
        async with localnet(clock=clock) as srv, chain_rpc(srv.rpc_url) as client:
            await permissionless_run(client, run_id, [wallet.pubkey()])

            trainer = RecordingTrainer(TrainerEnv(device="cpu", checkpoint_dir=tmp_path / "ckpt"), run_id)
            # The client is synchronous: it runs on a thread so that this event loop keeps serving the chain.
            code, final = await asyncio.wait_for(
                asyncio.to_thread(
                    follow, srv.rpc_url, srv.ws_url if websocket else None, wallet, run_id, trainer, clock
                ),
                timeout=90,
            )
            return code, final, trainer

    with caplog.at_level(logging.INFO, logger="psyche.client"):
        code, final, trainer = run(scenario)

    assert code == 0
    assert final.run_state == RunState.Finished
    assert final.progress.step >= TOTAL_STEPS
    ledger = {c.signer: c for c in final.clients_state.clients}
    assert ledger[wallet.pubkey()].earned == EARNING_RATE  # the only finishing client takes the whole rate
    assert len(trainer.losses) >= TOTAL_STEPS - 1
    assert trainer.losses[-1] < trainer.losses[0]
    assert "joined the run for the next epoch" in caplog.text
    assert "witness failed" not in caplog.text and "join_run failed" not in caplog.text
    assert list((tmp_path / "ckpt" / run_id).iterdir()), "no checkpoint written at the epoch's end"


def test_two_clients_on_a_treasurer_run_both_train_witness_and_earn(tmp_path: Path) -> None:
    """The grand end-to-end: two wallets, a permissionless treasurer-backed run, one full epoch."""
    clock = FastClock(SPEED)
    wallets = [Keypair(), Keypair()]
    run_id = "client-e2e-two"
    config = dataclasses.replace(CONFIG, init_min_clients=2, min_clients=2)

    async def scenario() -> list[tuple[int, CoordinatorAccount]]:
        async with localnet(clock=clock) as srv, chain_rpc(srv.rpc_url) as client:
            owner = Keypair()
            world = World(client, owner)
            await world.airdrop(owner.pubkey(), 100 * 10**9)
            mint = await world.create_mint(6)
            await world.mint_to(mint, owner.pubkey(), 10**12)
            handle = await world.create_treasurer_run(run_id, mint)
            await world.fund_treasury(handle, 2 * EARNING_RATE)
            await world.authorize(PERMISSIONLESS_GRANTEE)
            await world.configure(handle, config, MODEL, earning_rate=EARNING_RATE)
            for wallet in wallets:
                await world.airdrop(wallet.pubkey(), 10**9)
            runs = [
                asyncio.to_thread(follow, srv.rpc_url, srv.ws_url, wallet, run_id, trainers[i], clock)
                for i, wallet in enumerate(wallets)
            ]
            return list(await asyncio.wait_for(asyncio.gather(*runs), timeout=120))

    trainers = [RecordingTrainer(TrainerEnv(device="cpu"), run_id) for _ in wallets]
    results = run(scenario)

    assert [code for code, _ in results] == [0, 0]
    final = max((acc for _, acc in results), key=lambda a: a.nonce)
    assert final.run_state == RunState.Finished
    ledger = {c.signer: c for c in final.clients_state.clients}
    assert [ledger[w.pubkey()].earned for w in wallets] == [EARNING_RATE // 2] * 2
    for trainer in trainers:
        assert len(trainer.losses) >= 2
        assert trainer.losses[-1] < trainer.losses[0]


@pytest.mark.parametrize(("dp", "tp"), [(2, 1), (1, 2)], ids=["dp2", "tp2"])
def test_a_client_with_two_training_ranks_trains_a_whole_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, dp: int, tp: int
) -> None:
    """DATA_PARALLELISM=2 (or TENSOR_PARALLELISM=2): rank 0 follows the chain, rank 1 is a gloo process."""
    clock = FastClock(SPEED)
    wallet = Keypair()
    run_id = f"client-e2e-dp{dp}-tp{tp}"
    env = TrainerEnv(device="cpu", data_parallelism=dp, tensor_parallelism=tp, checkpoint_dir=tmp_path / "ck")
    trainer = RecordingTrainer(env, run_id)

    async def scenario() -> tuple[int, CoordinatorAccount]:
        async with localnet(clock=clock) as srv, chain_rpc(srv.rpc_url) as client:
            await _permissionless_run(client, run_id, wallet)
            return await asyncio.wait_for(
                asyncio.to_thread(follow, srv.rpc_url, srv.ws_url, wallet, run_id, trainer, clock),
                timeout=120,
            )

    with caplog.at_level(logging.INFO, logger="psyche.client"):
        code, final = run(scenario)

    assert code == 0
    assert final.run_state == RunState.Finished
    assert {c.signer: c.earned for c in final.clients_state.clients}[wallet.pubkey()] == EARNING_RATE
    assert len(trainer.losses) >= TOTAL_STEPS - 2  # a loaded machine may miss a round's train window
    assert trainer.losses[-1] < trainer.losses[0]
    assert f"2 training ranks (dp={dp} tp={tp}) on cpu" in caplog.text
    assert trainer.ranks is None and trainer.failure is None  # closed cleanly
    assert list((tmp_path / "ck" / run_id).iterdir()), "no checkpoint written at the epoch's end"


def test_a_training_rank_crash_ends_the_client_with_exit_1_within_seconds(tmp_path: Path) -> None:
    clock = FastClock(SPEED)
    wallet = Keypair()
    run_id = "client-e2e-crash"
    trainer = RecordingTrainer(TrainerEnv(device="cpu", data_parallelism=2), run_id)
    timings: dict[str, float] = {}

    async def scenario() -> tuple[int, CoordinatorAccount]:
        async with localnet(clock=clock) as srv, chain_rpc(srv.rpc_url) as client:
            await _permissionless_run(client, run_id, wallet)
            following = asyncio.ensure_future(
                asyncio.to_thread(follow, srv.rpc_url, srv.ws_url, wallet, run_id, trainer, clock)
            )
            while not trainer.losses:  # rank 1 has trained a step with us
                assert not following.done(), "the client ended before training"
                await asyncio.sleep(0.05)
            assert isinstance(trainer.ranks, RankGroup)
            pid = trainer.ranks.pids[0]
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            timings["killed"] = time.monotonic()
            result = await asyncio.wait_for(following, timeout=30)
            timings["ended"] = time.monotonic()
            print(f"rank 1 killed -> client ended: {timings['ended'] - timings['killed']:.2f} s")
            return result

    code, final = run(scenario)

    assert code == 1
    assert trainer.failure == "training rank 1 was killed by SIGKILL"
    assert timings["ended"] - timings["killed"] < 5
    assert final.run_state != RunState.Finished


async def _permissionless_run(client: RpcClient, run_id: str, wallet: Keypair) -> None:
    """A one-client run whose warmup leaves time to start a second training process (torch import)."""
    await permissionless_run(client, run_id, [wallet.pubkey()], RANKS_CONFIG)


def follow(
    rpc_url: str,
    ws_url: str | None,
    wallet: Keypair,
    run_id: str,
    trainer: RecordingTrainer,
    clock: FastClock,
) -> tuple[int, CoordinatorAccount]:
    """What ``python -m psyche.client train`` does after parsing its environment."""
    identity = derive_identity(run_id, wallet)
    with RpcClient([rpc_url]) as rpc:
        chain, first = ChainPort.locate(
            rpc, wallet, run_id, PERMISSIONLESS_GRANTEE, identity.public, DEFAULT_PROGRAM_IDS
        )
        assert first.run_state == RunState.WaitingForMembers
        protocol = ClientProtocol(wallet.pubkey(), identity.public, None)
        runner = Runner(protocol, chain, trainer, ws_urls=[ws_url] if ws_url else [], clock=clock)
        trainer.on_failure = runner.fail
        try:
            code = runner.run(first)
        finally:
            trainer.close()
        return code, CoordinatorAccount.decode(chain.read())
