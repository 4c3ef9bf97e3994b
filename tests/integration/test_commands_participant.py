"""A participant's whole journey and the authorization commands, end to end against `run-manager localnet`."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from psyche.chain import pda, round_view
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.state import Bloom
from psyche.chain.accounts.token import TokenAccount
from psyche.chain.instructions import coordinator
from psyche.chain.rpc import RpcClient
from psyche.localnet.world import World
from tests.support.commands import (
    Cli,
    Localnet,
    error_line,
    run_toml,
    with_world,
    write_keypair,
)

pytestmark = pytest.mark.slow

# The fixtures cli, endpoints and net come from tests/support/commands.py through the conftest: every
# test runs on RPC and again through a dead RPC + RPC_2.

RUN = "journey"


def _funded(net: Localnet, tmp_path: Path, name: str) -> tuple[Keypair, Path]:
    key = Keypair()
    net.airdrop(key)
    return key, write_keypair(tmp_path, name, key)


def _account(net: Localnet, address: Pubkey) -> CoordinatorAccount:
    with RpcClient([net.rpc_url]) as rpc:
        info = rpc.get_account_info(address)
    assert info is not None
    return CoordinatorAccount.decode(info.data)


def _tokens(net: Localnet, address: Pubkey) -> int:
    with RpcClient([net.rpc_url]) as rpc:
        info = rpc.get_account_info(address)
    return 0 if info is None else TokenAccount.decode(info.data).amount


class Epoch:
    """Drives the run through instructions: joins and witnesses as the clients, ticks through the CLI."""

    def __init__(self, net: Localnet, cli: Cli, owner: Path, instance: Pubkey, account: Pubkey) -> None:
        self.net, self.cli, self.owner, self.instance, self.account = net, cli, owner, instance, account

    def state(self) -> RunState:
        return _account(self.net, self.account).run_state

    def tick(self, after_seconds: int) -> RunState:
        self.net.advance_clock(after_seconds)
        self.cli.ok("tick", "-r", RUN, "--count", "1", "--ms-interval", "0", "-w", self.owner)
        return self.state()

    def join(self, client: Keypair, authorization: Pubkey) -> None:
        ix = coordinator.join_run(
            client.pubkey(), authorization, self.instance, self.account, Keypair().pubkey()
        )
        with_world(self.net, client, lambda w: w.send([ix]))

    def witness_all(self, clients: list[Keypair]) -> None:
        acc = _account(self.net, self.account)
        for kp in clients:
            proof = round_view.witness_proof(acc, kp.pubkey())
            assert proof is not None and proof.witness
            ix = coordinator.witness(
                kp.pubkey(),
                self.instance,
                self.account,
                proof=proof,
                participant_bloom=Bloom(),
                broadcast_bloom=Bloom(),
                broadcast_merkle=bytes(32),
            )
            with_world(self.net, kp, functools.partial(send_one, ix=ix))


async def send_one(world: World, ix: Instruction) -> Signature:
    """Send one instruction as its own transaction."""
    return await world.send([ix])


def test_participant_journey_authorize_join_earn_claim_once(cli: Cli, net: Localnet, tmp_path: Path) -> None:
    owner_key, owner = _funded(net, tmp_path, "owner")
    a_key, a_wallet = _funded(net, tmp_path, "a")
    b_key, _ = _funded(net, tmp_path, "b")
    a, b, o = str(a_key.pubkey()), str(b_key.pubkey()), str(owner_key.pubkey())
    mint = with_world(net, owner_key, lambda w: w.create_mint(6))
    with_world(net, owner_key, lambda w: w.mint_to(mint, owner_key.pubkey(), 10_000_000))

    # The run owner: a treasurer-backed run, configured, funded, rates set, resumed.
    created = cli.json(
        "create-run", "-r", RUN, "-c", "test", "--treasurer-collateral-mint", str(mint), "-w", owner
    )
    cli.ok("update-config", "-r", RUN, "--config-path", run_toml(tmp_path), "-w", owner)
    cli.ok("set-future-epoch-rates", "-r", RUN, "--earning-rate-total-shared", "1", "-w", owner)
    cli.ok("treasurer-top-up-rewards", "-r", RUN, "--collateral-amount", "2", "-w", owner)
    cli.ok("set-paused", "-r", RUN, "--resume", "-w", owner)

    # Not authorized yet: every grantee tried is named.
    refused = cli.fails("can-join", "-r", RUN, "--address", a)
    assert error_line(refused) == (
        f"Error: {a} cannot join run 'journey': no authorization from join authority {o} for grantee "
        f"11111111111111111111111111111111 (anyone); no authorization from join authority {o} for grantee "
        f"{a} (a permissioned run needs --authorizer <the key the run owner authorized>)"
    )
    authorized = cli.json("join-authorization-create", "--authorizer", a, "-w", owner)
    assert authorized["active"] is True and authorized["created"] is True
    read = cli.ok("join-authorization-read", "--join-authority", o, "--authorizer", a)
    assert f"Grantee:   {a}" in read.stdout and "Active:    true" in read.stdout

    # B is not A's delegate yet; once A adds it, B may join through A's authorization.
    not_delegate = cli.fails("can-join", "-r", RUN, "--address", b, "--authorizer", a)
    assert f"not a delegate of grantee {a}" in error_line(not_delegate)
    delegated = cli.json(
        "join-authorization-delegate", "--join-authority", o, "--delegates-added", b, "-w", a_wallet
    )
    assert delegated["delegates"] == [b]
    ok_b = cli.json("can-join", "-r", RUN, "--address", b, "--authorizer", a)
    assert ok_b["can_join"] is True and ok_b["grantee"] == a
    # Two round trips; behind a dead primary, one refused connection more (then RPC_2 sticks).
    assert ok_b["rpc_round_trips"] == (3 if cli.fallback else 2)
    # A checks itself from its wallet (no --address).
    passed = cli.ok("can-join", "-r", RUN, "--authorizer", a, "-w", a_wallet)
    assert passed.stdout.startswith(f"✓ Can join run journey as {a}")

    # Deactivated, then re-activated by the join authority.
    cli.ok("join-authorization-delete", "--authorizer", a, "-w", owner)
    inactive = cli.fails("can-join", "-r", RUN, "--address", a, "--authorizer", a)
    assert (
        error_line(inactive)
        == f"Error: {a} cannot join run 'journey': the authorization for grantee {a} is inactive"
    )
    again = cli.json("join-authorization-create", "--authorizer", a, "-w", owner)
    assert again["active"] is True and again["created"] is False

    # Join and finish an epoch through the program's instructions.
    epoch = Epoch(
        net,
        cli,
        owner,
        Pubkey.from_string(created["instance"]),
        Pubkey.from_string(created["coordinator_account"]),
    )
    auth_a = pda.authorization(owner_key.pubkey(), a_key.pubkey())
    epoch.join(a_key, auth_a)
    epoch.join(b_key, auth_a)
    assert epoch.tick(4) == RunState.Warmup
    assert epoch.tick(6) == RunState.RoundTrain
    in_epoch = cli.fails("can-join", "-r", RUN, "--address", a, "--authorizer", a)
    assert "a client with this pubkey is in the current epoch" in error_line(in_epoch)
    ckpt = cli.json("checkpoint", "-r", RUN, "--repo", "org/model-2", "--revision", "abc", "-w", a_wallet)
    assert ckpt["repo"] == "org/model-2"
    user = cli.json("json-dump-user", "-r", RUN, "--address", a)
    assert user["coordinator_account"]["epoch_alive"] == {"state": "Healthy", "exited_height": 0}
    seen = []
    for _ in range(2):
        epoch.witness_all([a_key, b_key])
        seen.append(epoch.state())
        seen.append(epoch.tick(3))
    seen.append(epoch.tick(6))
    assert seen == [
        RunState.RoundWitness,
        RunState.RoundTrain,
        RunState.RoundWitness,
        RunState.Cooldown,
        RunState.Finished,
    ]
    dump = cli.json("json-dump-run", "-r", RUN)
    assert dump["coordinator_account"]["accounting"]["sum_earned"] == 1_000_000
    assert dump["treasurer_run"]["total_unclaimed_earned_points"] == 1_000_000

    # A claims exactly its points (creating its token account and participant), then nothing more.
    ata = pda.associated_token_account(a_key.pubkey(), mint)
    assert _tokens(net, ata) == 0
    claim = cli.json("treasurer-claim-rewards", "-r", RUN, "-w", a_wallet)
    assert (claim["earned_points"], claim["claimed_points"], claim["paid_points"]) == (500_000, 0, 500_000)
    assert _tokens(net, ata) == 500_000
    second = cli.ok("treasurer-claim-rewards", "-r", RUN, "-w", a_wallet)
    assert "Nothing to claim: all 500000 earned points are already claimed" in second.stdout
    assert "Paid:" in second.stdout and _tokens(net, ata) == 500_000
    user = cli.json("json-dump-user", "-r", RUN, "--address", a)
    assert user["treasurer_participant"] == {
        "collateral_mint": str(mint),
        "collateral_amount": 0.5,
        "claimed_earned_points": 500_000,
        "claimed_collateral_amount": 0.5,
    }
    finished = cli.fails("can-join", "-r", RUN, "--address", b, "--authorizer", a)
    assert error_line(finished) == f"Error: {b} cannot join run 'journey': the run is finished"


def test_authorization_commands_and_delegate_forms(cli: Cli, net: Localnet, tmp_path: Path) -> None:
    grantor_key, grantor = _funded(net, tmp_path, "grantor")
    master_key, master = _funded(net, tmp_path, "master")
    g, m = str(grantor_key.pubkey()), str(master_key.pubkey())
    d1, d2, d3 = (str(Keypair().pubkey()) for _ in range(3))
    missing = cli.fails("join-authorization-read", "--join-authority", g, "--authorizer", m)
    assert error_line(missing).startswith(
        f"Error: no authorization from {g} for grantee {m}; authorization account"
    )
    not_yet = cli.fails(
        "join-authorization-delegate", "--join-authority", g, "--delegates-added", d1, "-w", master
    )
    assert "ask the join authority to run join-authorization-create --authorizer" in error_line(not_yet)
    cli.ok("join-authorization-create", "--authorizer", m, "-w", grantor)
    same = cli.ok("join-authorization-create", "--authorizer", m, "-w", grantor)
    assert same.stdout.startswith("Authorization already exists and is active; nothing sent")
    # The reference's forms: several keys after one flag, the singular alias, and repeating the flag.
    many = cli.json(
        "join-authorization-delegate", "--join-authority", g, "--delegates-added", d1, d2, "-w", master
    )
    assert many["delegates"] == [d1, d2]
    alias = cli.json(
        "join-authorization-delegate", "--join-authority", g, "--delegate-added", d3, "-w", master
    )
    assert alias["delegates"] == [d1, d2, d3]
    cleared = cli.json(
        "join-authorization-delegate", "--join-authority", g, "--delegates-clear", "-w", master
    )
    assert cleared["delegates"] == []
    env_form = cli.json(
        "join-authorization-delegate",
        "-w",
        master,
        env={"JOIN_AUTHORITY": g, "DELEGATES_ADDED": f"{d1} {d2}"},
    )
    assert env_form["delegates"] == [d1, d2]
    nothing = cli.fails("join-authorization-delegate", "--join-authority", g, "-w", master)
    assert (
        error_line(nothing)
        == "Error: nothing to do: pass --delegates-clear and/or --delegates-added <PUBKEY>..."
    )
    deleted = cli.json("join-authorization-delete", "--authorizer", m, "-w", grantor)
    assert deleted["active"] is False and deleted["signature"] is not None
    twice = cli.ok("join-authorization-delete", "--authorizer", m, "-w", grantor)
    assert twice.stdout.startswith("Authorization already inactive; nothing sent")
    read = cli.json("join-authorization-read", "--join-authority", g, "--authorizer", m)
    assert read["active"] is False and read["delegates"] == [d1, d2]
    # Permissionless: grantee 111…1 is the default for read.
    cli.ok("join-authorization-create", "--authorizer", "11111111111111111111111111111111", "-w", grantor)
    anyone = cli.json("join-authorization-read", "--join-authority", g)
    assert anyone["grantee"] == "11111111111111111111111111111111" and anyone["active"] is True


def test_list_runs_table_joinable_first(cli: Cli, net: Localnet, tmp_path: Path) -> None:
    _, owner = _funded(net, tmp_path, "lister")
    viewer_key = Keypair()
    viewer = write_keypair(tmp_path, "viewer", viewer_key)
    empty = cli.ok(
        "list-runs", "--all", "--coordinator-program-id", "PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw"
    )
    assert (
        empty.stdout == "No runs found on coordinator program PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw\n"
    )
    # By default, as the reference: the runs the wallet can join, so a wallet is needed.
    no_wallet = cli.fails("list-runs")
    assert error_line(no_wallet).startswith("Error: Failed to read wallet file from: ")
    assert "hint: pass --address <PUBKEY>, or --all to list every run without a wallet" in no_wallet.stderr
    cli.ok("create-run", "-r", "list-a-uninit", "-c", "v1", "-w", owner)
    cli.ok("create-run", "-r", "list-b-open", "-c", "v1", "-w", owner)
    cli.ok("update-config", "-r", "list-b-open", "--config-path", run_toml(tmp_path), "-w", owner)
    cli.ok("set-paused", "-r", "list-b-open", "--resume", "-w", owner)
    cli.ok("join-authorization-create", "--authorizer", "11111111111111111111111111111111", "-w", owner)
    records = cli.json("list-runs", "--all")
    mine = [r for r in records if r["run_id"].startswith("list-")]
    assert [(r["run_id"], r["joinable"]) for r in mine] == [("list-b-open", True), ("list-a-uninit", False)]
    joinable = [r["joinable"] for r in records]
    assert joinable == sorted(joinable, reverse=True)  # joinable runs first
    joinable_only = cli.json("list-runs", "-w", viewer)
    assert "list-b-open" in [r["run_id"] for r in joinable_only]
    assert all(r["joinable"] for r in joinable_only) and "list-a-uninit" not in str(joinable_only)
    own = cli.ok("list-runs", "-w", viewer).stdout.splitlines()
    assert own[0] == f"Found {len(joinable_only)} joinable run(s) by {viewer_key.pubkey()}:"
    nobody = cli.ok("list-runs", "-w", viewer, "--authorizer", str(Keypair().pubkey()))
    assert nobody.stdout == "No available runs to join\n"
    text = cli.ok("list-runs", "--all").stdout.splitlines()
    assert text[0].startswith("Found ") and text[1].split() == [
        "run-id",
        "state",
        "clients",
        "epoch",
        "time",
        "time",
        "left",
    ]
    row = next(line for line in text if "list-b-open" in line)
    assert (
        row.startswith("  list-b-open")
        and "Waiting for members   0/2 waiting   40s" in row
        and row.endswith("-")
    )
