"""``localnet --demo``: seed a ready-to-join world through real signed transactions and write its files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.accounts.model import Checkpoint
from psyche.chain.programs import PERMISSIONLESS_GRANTEE
from psyche.chain.rpc import RpcClient
from psyche.localnet.demo_run import DEMO_DISTRO
from psyche.localnet.ledger import LAMPORTS_PER_SOL
from psyche.localnet.presets import small_config, small_model
from psyche.localnet.world import RunHandle, World

# The small preset at a real-time pace, open to a single client.
DEMO_CONFIG = small_config(
    warmup_time=30,
    cooldown_time=30,
    max_round_train_time=60,
    round_witness_time=15,
    epoch_time=600,
    total_steps=1_000,
    init_min_clients=1,
    min_clients=1,
)
# Upstream's DisTrO settings (demo_run.DEMO_DISTRO), so a run seeded here trains as a real one does.
DEMO_MODEL = small_model(
    max_seq_len=512, checkpoint=Checkpoint.hub("psyche-demo/tiny-llama"), optimizer=DEMO_DISTRO
)
REWARD_DECIMALS = 6
REWARD_PER_EPOCH = 10 * 10**REWARD_DECIMALS
TREASURY_FUNDING = 100_000 * 10**REWARD_DECIMALS


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """What the demo created (public keys and paths only: key files hold the secrets)."""

    owner: Pubkey
    participant: Pubkey
    delegate: Pubkey
    join_authority: Pubkey
    open_run: RunHandle
    private_run: RunHandle
    rewards_run: RunHandle
    reward_mint: Pubkey
    env_file: Path
    # Wallets for the demo's clients 2..N (participant-<i>.json, 10 SOL each); the participant is client 1.
    more_clients: tuple[Pubkey, ...] = ()

    @property
    def clients(self) -> tuple[Pubkey, ...]:
        """Every client wallet, client 1 (the participant) first."""
        return (self.participant, *self.more_clients)


def client_keyfile(index: int) -> str:
    """The key file of demo client ``index`` (1-based): client 1 is the participant."""
    return "participant.json" if index == 1 else f"participant-{index}.json"


def write_keypair(path: Path, keypair: Keypair) -> None:
    """A Solana CLI keypair file (JSON array of the 64 bytes), readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(list(bytes(keypair)), handle)


async def build_demo(
    client: RpcClient, rpc_url: str, ws_url: str, out_dir: Path, *, clients: int = 1
) -> DemoWorld:
    """Create the runs, wallets and authorizations, and write keypairs and ``.env`` into ``out_dir``.

    ``clients`` wallets can join the permissionless runs: the participant and ``participant-<i>.json``
    for i = 2..clients (``scripts/demo --clients N`` runs one run-manager per wallet).
    """
    if clients < 1:
        raise ValueError("clients must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    owner, participant, delegate, join_authority = Keypair(), Keypair(), Keypair(), Keypair()
    more = [Keypair() for _ in range(clients - 1)]
    world = World(client, owner)
    await world.airdrop(owner.pubkey(), 1_000 * LAMPORTS_PER_SOL)
    for kp in (participant, join_authority, *more):
        await world.airdrop(kp.pubkey(), 10 * LAMPORTS_PER_SOL)
    await world.airdrop(delegate.pubkey(), LAMPORTS_PER_SOL)

    open_run = await world.create_run("demo-open")
    await world.configure(open_run, DEMO_CONFIG, DEMO_MODEL)
    await world.authorize(PERMISSIONLESS_GRANTEE)  # every run whose join authority is the owner is open

    # A separate join authority, so the owner's permissionless grant does not open this run too.
    private_run = await world.create_run("demo-private", join_authority=join_authority.pubkey())
    await world.configure(private_run, DEMO_CONFIG, DEMO_MODEL)
    await World(client, join_authority).authorize(participant.pubkey())
    await World(client, participant).add_delegates(participant, join_authority.pubkey(), [delegate.pubkey()])

    mint = await world.create_mint(REWARD_DECIMALS)
    await world.mint_to(mint, owner.pubkey(), 10 * TREASURY_FUNDING)
    rewards_run = await world.create_treasurer_run("demo-rewards", mint)
    await world.fund_treasury(rewards_run, TREASURY_FUNDING)
    await world.configure(rewards_run, DEMO_CONFIG, DEMO_MODEL, earning_rate=REWARD_PER_EPOCH)

    files = {"owner.json": owner, "participant.json": participant, "delegate.json": delegate}
    files["join-authority.json"] = join_authority
    files.update({client_keyfile(i): kp for i, kp in enumerate(more, start=2)})
    for name, kp in files.items():
        write_keypair(out_dir / name, kp)
    env_file = out_dir / ".env"
    env_file.write_text(
        "# Written by `run-manager localnet --demo`: the participant joins the permissionless run.\n"
        f"RPC={rpc_url}\nWS_RPC={ws_url}\nRUN_ID=demo-open\n"
        f"WALLET_PRIVATE_KEY_PATH={(out_dir / 'participant.json').resolve()}\n"
        "# Other runs: RUN_ID=demo-rewards (treasurer-backed, permissionless);\n"
        f"# RUN_ID=demo-private with AUTHORIZER={participant.pubkey()} (the participant or its delegate).\n"
    )
    return DemoWorld(
        owner.pubkey(),
        participant.pubkey(),
        delegate.pubkey(),
        join_authority.pubkey(),
        open_run,
        private_run,
        rewards_run,
        mint,
        env_file,
        tuple(kp.pubkey() for kp in more),
    )


def describe(demo: DemoWorld, out_dir: Path) -> list[str]:
    """Human-readable lines listing everything the demo created."""
    lines = [
        f"demo: files in {out_dir.resolve()}",
        f"  run owner          {demo.owner}  (owner.json, 1000 SOL)",
        f"  participant        {demo.participant}  (participant.json, 10 SOL)",
    ]
    lines += [
        f"  client {i:<11} {key}  ({client_keyfile(i)}, 10 SOL)"
        for i, key in enumerate(demo.more_clients, start=2)
    ]
    lines += [
        f"  delegate           {demo.delegate}  (delegate.json, 1 SOL)",
        f"  join authority     {demo.join_authority}  (join-authority.json, of demo-private)",
        f"  reward mint        {demo.reward_mint}  ({REWARD_DECIMALS} decimals)",
    ]
    for label, run in (
        ("permissionless run", demo.open_run),
        ("permissioned run", demo.private_run),
        ("treasurer run", demo.rewards_run),
    ):
        lines.append(f"  {label:<18} {run.run_id}: instance {run.instance}, account {run.account}")
    treasury = demo.rewards_run.treasurer_run
    if treasury is not None:
        vault = pda.associated_token_account(treasury, demo.reward_mint)
        lines.append(f"  treasury           run {treasury}, vault {vault} ({TREASURY_FUNDING} base units)")
    lines.append(f"  authorization      {pda.authorization(demo.owner, PERMISSIONLESS_GRANTEE)} (anyone)")
    lines.append(
        f"  authorization      {pda.authorization(demo.join_authority, demo.participant)} "
        "(participant + delegate)"
    )
    lines.append(f"  env file           {demo.env_file.resolve()}")
    return lines


async def seed_demo(
    rpc_url: str, ws_url: str, out_dir: Path, *, echo: Callable[[str], None], clients: int = 1
) -> DemoWorld:
    """Build the demo world on the chain at ``rpc_url`` and print what was created."""
    with RpcClient([rpc_url]) as client:
        demo = await build_demo(client, rpc_url, ws_url, out_dir, clients=clients)
    for line in describe(demo, out_dir):
        echo(line)
    return demo
