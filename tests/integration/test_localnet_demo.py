"""``localnet --demo``: the seeded world is joinable as printed, and its files are usable."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from psyche.chain import pda
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.instructions import coordinator
from psyche.chain.programs import PERMISSIONLESS_GRANTEE
from psyche.localnet.demo import TREASURY_FUNDING, build_demo, describe
from psyche.localnet.world import World
from tests.support.localnet import chain_rpc, localnet, run


def _keypair(path: Path) -> Keypair:
    return Keypair.from_bytes(bytes(json.loads(path.read_text())))


def test_demo_world_is_ready_to_join(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client, chain_rpc(srv.rpc_url) as rpc:
            demo = await build_demo(rpc, srv.rpc_url, srv.ws_url, tmp_path)
            participant = _keypair(tmp_path / "participant.json")
            delegate = _keypair(tmp_path / "delegate.json")
            assert participant.pubkey() == demo.participant and delegate.pubkey() == demo.delegate
            assert stat.S_IMODE((tmp_path / "participant.json").stat().st_mode) == 0o600
            env = demo.env_file.read_text()
            assert f"RPC={srv.rpc_url}\n" in env and "RUN_ID=demo-open\n" in env
            assert f"WS_RPC={srv.ws_url}\n" in env  # both named explicitly: neither has a default
            assert f"WALLET_PRIVATE_KEY_PATH={(tmp_path / 'participant.json').resolve()}\n" in env

            for handle in (demo.open_run, demo.private_run, demo.rewards_run):
                info = (await client.get_account_info(handle.account)).value
                assert info is not None
                assert CoordinatorAccount.decode(bytes(info.data)).run_state == RunState.WaitingForMembers
            assert demo.rewards_run.treasurer_run is not None
            vault = pda.associated_token_account(demo.rewards_run.treasurer_run, demo.reward_mint)
            assert int((await client.get_token_account_balance(vault)).value.amount) == TREASURY_FUNDING

            # The participant joins the open run with the "anyone" grant; its delegate joins the private one.
            open_auth = pda.authorization(demo.owner, PERMISSIONLESS_GRANTEE)
            private_auth = pda.authorization(demo.join_authority, demo.participant)
            await World(rpc, participant).send(
                [
                    coordinator.join_run(
                        demo.participant,
                        open_auth,
                        demo.open_run.instance,
                        demo.open_run.account,
                        demo.delegate,
                    )
                ]
            )
            await World(rpc, delegate).send(
                [
                    coordinator.join_run(
                        demo.delegate,
                        private_auth,
                        demo.private_run.instance,
                        demo.private_run.account,
                        demo.delegate,
                    )
                ]
            )
            info = (await client.get_account_info(demo.private_run.account)).value
            assert info is not None
            ledger = CoordinatorAccount.decode(bytes(info.data)).clients_state.clients
            assert [c.signer for c in ledger] == [demo.delegate]
            text = "\n".join(describe(demo, tmp_path))
            for key in (demo.owner, demo.participant, demo.delegate, demo.reward_mint, demo.open_run.account):
                assert str(key) in text
            for path in tmp_path.iterdir():
                if path.suffix == ".json":
                    secret = json.loads(path.read_text())
                    assert str(secret) not in text

    run(scenario)


def test_demo_with_three_clients_makes_three_funded_wallets_that_may_join(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client, chain_rpc(srv.rpc_url) as rpc:
            demo = await build_demo(rpc, srv.rpc_url, srv.ws_url, tmp_path, clients=3)
            files = ["participant.json", "participant-2.json", "participant-3.json"]
            keys = [_keypair(tmp_path / name) for name in files]
            assert tuple(k.pubkey() for k in keys) == demo.clients
            assert len(set(demo.clients)) == 3
            for key in demo.clients:
                assert (await client.get_balance(key)).value > 9 * 10**9  # 10 SOL, less the fees paid
            for name in files:
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
            # The runs the demo clients join are open to anyone: the owner's permissionless grant exists.
            grant = pda.authorization(demo.owner, PERMISSIONLESS_GRANTEE)
            assert (await client.get_account_info(grant)).value is not None
            text = "\n".join(describe(demo, tmp_path))
            assert f"  client 3           {demo.clients[2]}  (participant-3.json, 10 SOL)" in text

    run(scenario)
