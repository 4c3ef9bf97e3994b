"""Builds runs, mints and authorizations on a chain with real signed transactions (for the demo and tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from solana.rpc.async_api import AsyncClient
from solana.rpc.models import TxOpts
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

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
from psyche.errors import TransactionFailed

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
    """Sends and confirms transactions through ``client`` (any Solana RPC), paid by ``payer``."""

    def __init__(self, client: AsyncClient, payer: Keypair) -> None:
        self.client = client
        self.payer = payer
        self._sent: set[Signature] = set()

    async def _sign(self, ixs: Sequence[Instruction], signers: Sequence[Keypair]) -> VersionedTransaction:
        keys = {self.payer.pubkey()}
        unique = [self.payer]
        for kp in signers:
            if kp.pubkey() not in keys:
                keys.add(kp.pubkey())
                unique.append(kp)
        # The same instructions under the same blockhash are the same transaction ("already processed"),
        # so a repeat (a second tick) waits for the next slot's blockhash, as a real client would.
        for _ in range(1_000):
            blockhash = (await self.client.get_latest_blockhash()).value.blockhash
            tx = VersionedTransaction(
                Message.new_with_blockhash(list(ixs), self.payer.pubkey(), blockhash), unique
            )
            if tx.signatures[0] not in self._sent:
                self._sent.add(tx.signatures[0])
                return tx
            await asyncio.sleep(0.005)
        raise TransactionFailed("the chain produced no new blockhash for 5 s")

    async def send(self, ixs: Sequence[Instruction], signers: Sequence[Keypair] = ()) -> Signature:
        """Sign with the payer (+ ``signers``), send with preflight, wait until it is confirmed."""
        tx = await self._sign(ixs, signers)
        sig = (await self.client.send_transaction(tx, opts=TxOpts(skip_confirmation=True))).value
        status = (await self.client.confirm_transaction(sig, sleep_seconds=0.02)).value[0]
        if status is not None and status.err is not None:
            raise TransactionFailed(f"transaction {sig} failed: {status.err}", signature=str(sig))
        return sig

    async def airdrop(self, key: Pubkey, lamports: int) -> None:
        sig = (await self.client.request_airdrop(key, lamports)).value
        await self.client.confirm_transaction(sig, sleep_seconds=0.02)

    async def rent(self, size: int) -> int:
        return (await self.client.get_minimum_balance_for_rent_exemption(size)).value

    async def create_mint(self, decimals: int) -> Pubkey:
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
