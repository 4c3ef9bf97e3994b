"""Builds runs, mints and authorizations on a chain with real signed transactions (for the demo and tests).

It sends through the project's one TransactionSender (psyche.chain.transactions) over RpcClient, so the
local chain needs no other Solana client at run time; tests check the chain with solana-py, independently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from psyche.chain import pda
from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.model import LLM, CoordinatorConfig
from psyche.chain.accounts.token import Mint
from psyche.chain.instructions import authorizer, coordinator, treasurer
from psyche.chain.instructions.system import (
    create_associated_token_account_idempotent,
    system_create_account,
    token_transfer,
)
from psyche.chain.layout import Writer
from psyche.chain.programs import COORDINATOR_PROGRAM_ID, PERMISSIONLESS_GRANTEE, TOKEN_PROGRAM_ID
from psyche.chain.rpc import RpcClient
from psyche.chain.transactions import TransactionSender

# The local chain makes a slot every few tens of milliseconds: poll at its pace, not a cluster's.
_CONFIRM_POLL_S = 0.02
_BLOCKHASH_POLL_S = 0.005

_MINT_TO = 7
_INITIALIZE_MINT2 = 20


@dataclass(frozen=True, slots=True)
class RunHandle:
    """Where a run lives on chain."""

    run_id: str
    instance: Pubkey
    account: Pubkey
    treasurer_run: Pubkey | None = None
    collateral_mint: Pubkey | None = None


class World:
    """Sends and confirms transactions through ``rpc`` (any Solana RPC), paid by ``payer``.

    The methods are coroutines that run the (blocking) RPC calls on a worker thread, so the world can be
    seeded from the event loop that serves the local chain itself.
    """

    def __init__(self, rpc: RpcClient, payer: Keypair) -> None:
        self.rpc = rpc
        self.payer = payer
        self._sender = TransactionSender(
            rpc, payer, confirm_poll=_CONFIRM_POLL_S, blockhash_poll=_BLOCKHASH_POLL_S
        )

    async def send(self, ixs: Sequence[Instruction], signers: Sequence[Keypair] = ()) -> Signature:
        """Sign with the payer (+ ``signers``), send with preflight, wait until it is confirmed.

        A repeat of a transaction already sent (a second tick) waits for the next slot's blockhash.

        Raises:
            TransactionFailed: preflight or execution failed (with the logs and the named program error).
        """
        sent = await asyncio.to_thread(self._sender.send, ixs, signers=signers)
        return sent.signature

    async def airdrop(self, key: Pubkey, lamports: int) -> None:
        """Ask the chain for ``lamports`` to ``key`` and wait until they are there."""

        def airdrop() -> None:
            signature = self.rpc.request_airdrop(key, lamports)
            self.rpc.confirm_transaction(signature, poll_interval=_CONFIRM_POLL_S)

        await asyncio.to_thread(airdrop)

    async def rent(self, size: int) -> int:
        """Lamports that make an account of ``size`` bytes rent-exempt."""
        return await asyncio.to_thread(self.rpc.get_minimum_balance_for_rent_exemption, size)

    async def create_mint(self, decimals: int) -> Pubkey:
        """A new SPL mint with ``decimals``, the payer its mint authority; its address."""
        mint = Keypair()
        data = Writer().u8(_INITIALIZE_MINT2).u8(decimals).pubkey(self.payer.pubkey()).u8(0).getvalue()
        init = Instruction(TOKEN_PROGRAM_ID, data, [_meta(mint.pubkey(), writable=True)])
        create = system_create_account(
            self.payer.pubkey(), mint.pubkey(), await self.rent(Mint.SIZE), Mint.SIZE, TOKEN_PROGRAM_ID
        )
        await self.send([create, init], [mint])
        return mint.pubkey()

    async def mint_to(self, mint: Pubkey, owner: Pubkey, amount: int) -> Pubkey:
        """Mint ``amount`` base units into ``owner``'s ATA (created if missing); returns the ATA."""
        ata = pda.associated_token_account(owner, mint)
        data = Writer().u8(_MINT_TO).u64(amount).getvalue()
        mint_ix = Instruction(
            TOKEN_PROGRAM_ID,
            data,
            [_meta(mint, writable=True), _meta(ata, writable=True), _meta(self.payer.pubkey(), signer=True)],
        )
        create = create_associated_token_account_idempotent(self.payer.pubkey(), owner, mint)
        await self.send([create, mint_ix])
        return ata

    async def _coordinator_account(self) -> tuple[Keypair, Instruction]:
        account = Keypair()
        size = CoordinatorAccount.SIZE
        create = system_create_account(
            self.payer.pubkey(), account.pubkey(), await self.rent(size), size, COORDINATOR_PROGRAM_ID
        )
        return account, create

    async def create_run(self, run_id: str, *, join_authority: Pubkey | None = None) -> RunHandle:
        """A plain coordinator run owned by the payer (Uninitialized until configured)."""
        account, create = await self._coordinator_account()
        init = coordinator.init_coordinator(
            self.payer.pubkey(),
            account.pubkey(),
            main_authority=self.payer.pubkey(),
            join_authority=join_authority or self.payer.pubkey(),
            run_id=run_id,
            client_version="test",
        )
        await self.send([create, init], [account])
        return RunHandle(run_id, pda.coordinator_instance(run_id), account.pubkey())

    async def create_treasurer_run(
        self, run_id: str, collateral_mint: Pubkey, *, join_authority: Pubkey | None = None
    ) -> RunHandle:
        """A treasurer-backed run (index derived from the run id, as the run-manager does)."""
        account, create = await self._coordinator_account()
        index = pda.treasurer_index(run_id)
        ix = treasurer.run_create(
            self.payer.pubkey(),
            account.pubkey(),
            collateral_mint,
            index=index,
            run_id=run_id,
            client_version="test",
            main_authority=self.payer.pubkey(),
            join_authority=join_authority or self.payer.pubkey(),
        )
        await self.send([create, ix], [account])
        run = pda.treasurer_run(index)
        return RunHandle(run_id, pda.coordinator_instance(run_id), account.pubkey(), run, collateral_mint)

    async def configure(
        self, run: RunHandle, config: CoordinatorConfig, model: LLM, *, earning_rate: int | None = None
    ) -> None:
        """Set config, model and future rates, then resume (Uninitialized → WaitingForMembers)."""
        owner = self.payer.pubkey()
        if run.treasurer_run is not None:
            ix = treasurer.run_update(
                owner,
                run.treasurer_run,
                run.instance,
                run.account,
                config=config,
                model=model,
                epoch_earning_rate_total_shared=earning_rate,
                paused=False,
            )
            await self.send([ix])
            return
        ixs = [coordinator.update(owner, run.instance, run.account, config=config, model=model)]
        if earning_rate is not None:
            ixs.append(
                coordinator.set_future_epoch_rates(
                    owner, run.instance, run.account, earning_rate_total_shared=earning_rate
                )
            )
        ixs.append(coordinator.set_paused(owner, run.instance, run.account, False))
        await self.send(ixs)

    async def authorize(self, grantee: Pubkey = PERMISSIONLESS_GRANTEE) -> Pubkey:
        """Create and activate a join authorization from the payer (join authority) to ``grantee``."""
        address = pda.authorization(self.payer.pubkey(), grantee)
        create = authorizer.authorization_create(self.payer.pubkey(), self.payer.pubkey(), grantee)
        activate = authorizer.authorization_grantor_update(self.payer.pubkey(), address, True)
        await self.send([create, activate])
        return address

    async def add_delegates(
        self, grantee: Keypair, join_authority: Pubkey, delegates: Sequence[Pubkey]
    ) -> None:
        """``grantee`` lets ``delegates`` join on its behalf (the payer pays the extra rent)."""
        address = pda.authorization(join_authority, grantee.pubkey())
        ix = authorizer.authorization_grantee_update(
            self.payer.pubkey(), grantee.pubkey(), address, delegates_added=list(delegates)
        )
        await self.send([ix], [grantee])

    async def fund_treasury(self, run: RunHandle, amount: int) -> None:
        """Move ``amount`` collateral base units from the payer's ATA into the run's vault."""
        assert run.treasurer_run is not None and run.collateral_mint is not None
        source = pda.associated_token_account(self.payer.pubkey(), run.collateral_mint)
        vault = pda.associated_token_account(run.treasurer_run, run.collateral_mint)
        await self.send([token_transfer(source, vault, self.payer.pubkey(), amount)])


def _meta(key: Pubkey, *, signer: bool = False, writable: bool = False) -> AccountMeta:
    return AccountMeta(key, signer, writable)
