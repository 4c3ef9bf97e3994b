"""A full epoch on the localnet through real signed transactions: joins, ticks, witnesses, rewards, claims."""

from __future__ import annotations

import json
from typing import Any

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain import pda, round_view
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.state import Bloom
from psyche.chain.accounts.treasurer import Participant
from psyche.chain.instructions import coordinator, treasurer
from psyche.chain.instructions.system import create_associated_token_account_idempotent
from psyche.localnet.presets import small_config, small_model
from psyche.localnet.world import RunHandle, World
from tests.support.clock import FakeClock
from tests.support.localnet import chain_rpc, localnet, raw_rpc, run, send

CONFIG = small_config(total_steps=3)
MODEL = small_model()
EARNING_RATE = 1_000_000


def _preflight_err(exc: RPCException) -> Any:
    return json.loads(exc.args[0].to_json())["data"]["err"]


async def _account(client: AsyncClient, key: Pubkey) -> CoordinatorAccount:
    info = (await client.get_account_info(key)).value
    assert info is not None
    return CoordinatorAccount.decode(bytes(info.data))


async def _token_amount(client: AsyncClient, key: Pubkey) -> int:
    return int((await client.get_token_account_balance(key)).value.amount)


class Epoch:
    """Two clients on one treasurer run, with a fake clock the test moves."""

    def __init__(
        self, world: World, client: AsyncClient, handle: RunHandle, clock: FakeClock, clients: list[Keypair]
    ) -> None:
        self.world, self.client, self.run, self.clock, self.clients = world, client, handle, clock, clients

    async def state(self) -> RunState:
        return (await _account(self.client, self.run.account)).run_state

    async def tick(self, after_seconds: int) -> RunState:
        self.clock.now += after_seconds
        await self.world.send(
            [coordinator.tick(self.world.payer.pubkey(), self.run.instance, self.run.account)]
        )
        return await self.state()

    async def witness_all(self) -> None:
        acc = await _account(self.client, self.run.account)
        for kp in self.clients:
            proof = round_view.witness_proof(acc, kp.pubkey())
            assert proof is not None and proof.witness
            ix = coordinator.witness(
                kp.pubkey(),
                self.run.instance,
                self.run.account,
                proof=proof,
                participant_bloom=Bloom(),
                broadcast_bloom=Bloom(),
                broadcast_merkle=bytes(32),
            )
            await self.world.send([ix], [kp])


def test_full_epoch_rewards_and_claims() -> None:
    clock = FakeClock(start=1_750_000_000.0)

    async def scenario() -> None:
        async with (
            localnet(clock=clock, clock_control=True) as srv,
            AsyncClient(srv.rpc_url) as client,
            chain_rpc(srv.rpc_url) as rpc,
        ):
            owner = Keypair()
            world = World(rpc, owner)
            await world.airdrop(owner.pubkey(), 100 * 10**9)
            mint = await world.create_mint(6)
            await world.mint_to(mint, owner.pubkey(), 10**12)
            handle = await world.create_treasurer_run("epoch-test", mint)
            await world.fund_treasury(handle, 2_000_000)
            await world.configure(handle, CONFIG, MODEL, earning_rate=EARNING_RATE)
            epoch = Epoch(world, client, handle, clock, [Keypair(), Keypair()])
            assert await epoch.state() == RunState.WaitingForMembers

            # Client A has its own authorization; B first tries with A's and is refused (2003).
            a, b = epoch.clients
            for kp in (a, b):
                await world.airdrop(kp.pubkey(), 10**9)
            auth_a = await world.authorize(a.pubkey())
            join_b = coordinator.join_run(
                b.pubkey(), auth_a, handle.instance, handle.account, Keypair().pubkey()
            )
            with pytest.raises(RPCException) as caught:  # through solana-py: the node's own error
                await send(client, [join_b], owner, [b])
            assert _preflight_err(caught.value) == {"InstructionError": [0, {"Custom": 2003}]}
            # A lists B as a delegate: the same authorization now lets B join.
            await world.add_delegates(a, owner.pubkey(), [b.pubkey()])
            for kp in (a, b):
                ix = coordinator.join_run(
                    kp.pubkey(), auth_a, handle.instance, handle.account, Keypair().pubkey()
                )
                await world.send([ix], [kp])

            seen = [await epoch.tick(4)]  # WaitingForMembers -> Warmup
            seen.append(await epoch.tick(6))  # Warmup -> RoundTrain
            for _ in range(2):  # two rounds: witnesses, then the witness window closes
                await epoch.witness_all()
                seen.append(await epoch.state())
                seen.append(await epoch.tick(3))
            seen.append(await epoch.tick(6))  # Cooldown -> Finished (step 3 = total_steps)
            assert seen == [
                RunState.Warmup,
                RunState.RoundTrain,
                RunState.RoundWitness,
                RunState.RoundTrain,
                RunState.RoundWitness,
                RunState.Cooldown,
                RunState.Finished,
            ]
            acc = await _account(client, handle.account)
            earned = {c.signer: c.earned for c in acc.clients_state.clients}
            assert earned == {a.pubkey(): EARNING_RATE // 2, b.pubkey(): EARNING_RATE // 2}

            # A claims through the treasurer: exactly its points, once.
            assert handle.treasurer_run is not None
            user_ata = pda.associated_token_account(a.pubkey(), mint)
            vault = pda.associated_token_account(handle.treasurer_run, mint)
            setup = [
                create_associated_token_account_idempotent(a.pubkey(), a.pubkey(), mint),
                treasurer.participant_create(a.pubkey(), a.pubkey(), handle.treasurer_run),
            ]
            await World(rpc, a).send(setup)
            before = await _token_amount(client, user_ata)

            def claim(amount: int) -> Any:
                assert handle.treasurer_run is not None
                return treasurer.participant_claim(
                    a.pubkey(), user_ata, handle.treasurer_run, vault, handle.account, amount
                )

            await World(rpc, a).send([claim(EARNING_RATE // 2)])
            assert await _token_amount(client, user_ata) == before + EARNING_RATE // 2
            assert await _token_amount(client, vault) == 2_000_000 - EARNING_RATE // 2
            await World(rpc, a).send([claim(0)])  # what the run-manager sends with nothing left
            with pytest.raises(RPCException) as caught:
                await send(client, [claim(1)], a)
            assert _preflight_err(caught.value) == {"InstructionError": [0, {"Custom": 6000}]}
            assert await _token_amount(client, user_ata) == before + EARNING_RATE // 2
            participant = (
                await client.get_account_info(pda.participant(handle.treasurer_run, a.pubkey()))
            ).value
            assert participant is not None
            assert Participant.decode(bytes(participant.data)).claimed_earned_points == EARNING_RATE // 2

    run(scenario)


def test_clock_control_rpc_moves_chain_time() -> None:
    async def scenario() -> None:
        async with localnet(clock_control=True) as srv:
            req = {"jsonrpc": "2.0", "id": 1, "method": "localnet_advanceClock", "params": [3600]}
            first = (await raw_rpc(srv.rpc_url, req))["result"]["unixTimestamp"]
            second = (await raw_rpc(srv.rpc_url, req))["result"]["unixTimestamp"]
            assert second - first >= 3600

    run(scenario)


def test_anchor_checks_owner_seeds_and_version() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client, chain_rpc(srv.rpc_url) as rpc:
            owner = Keypair()
            world = World(rpc, owner)
            await world.airdrop(owner.pubkey(), 100 * 10**9)
            handle = await world.create_run("checks")
            await world.configure(handle, CONFIG, MODEL)
            stranger = Keypair()
            await world.airdrop(stranger.pubkey(), 10**9)
            # Not the main authority: the instance constraint fails (2003).
            with pytest.raises(RPCException) as caught:
                await send(
                    client,
                    [coordinator.set_paused(stranger.pubkey(), handle.instance, handle.account, True)],
                    stranger,
                )
            assert _preflight_err(caught.value) == {"InstructionError": [0, {"Custom": 2003}]}
            # An authorization address that is not an Authorizer account: not initialized (3012).
            bogus = coordinator.join_run(
                stranger.pubkey(), Keypair().pubkey(), handle.instance, handle.account, owner.pubkey()
            )
            with pytest.raises(RPCException) as caught:
                await send(client, [bogus], stranger)
            assert _preflight_err(caught.value) == {"InstructionError": [0, {"Custom": 3012}]}
            # A System-owned, funded key as authorization: wrong owner (3007).
            wrong_owner = coordinator.join_run(
                stranger.pubkey(), owner.pubkey(), handle.instance, handle.account, owner.pubkey()
            )
            with pytest.raises(RPCException) as caught:
                await send(client, [wrong_owner], stranger)
            assert _preflight_err(caught.value) == {"InstructionError": [0, {"Custom": 3007}]}
            # Another run's instance with this run's account: PDA seeds hold, account constraint fails (2003);
            # a coordinator account passed as the instance: discriminator mismatch (3002).
            tick = coordinator.tick(owner.pubkey(), handle.account, handle.account)
            with pytest.raises(RPCException) as caught:
                await send(client, [tick], owner)
            assert _preflight_err(caught.value) == {"InstructionError": [0, {"Custom": 3002}]}
            # version != 1: a corrupted account fails the version constraint (2003).
            raw = bytearray(srv.chain.ledger.accounts[handle.account].data)
            raw[8] = 2
            srv.chain.ledger.accounts[handle.account].data[:] = raw
            with pytest.raises(RPCException) as caught:
                await send(client, [coordinator.tick(owner.pubkey(), handle.instance, handle.account)], owner)
            assert _preflight_err(caught.value) == {"InstructionError": [0, {"Custom": 2003}]}
            logs = json.loads(caught.value.args[0].to_json())["data"]["logs"]
            assert any("AnchorError caused by account: coordinator_account" in line for line in logs)

    run(scenario)
