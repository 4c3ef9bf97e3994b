"""Participant operations: may a key join a run, claim rewards, which runs a key can join, a user's view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from solders.pubkey import Pubkey

from psyche.errors import JoinRefused, NotAuthorized, RunManagerError
from psyche.manager.operations import ChainAccess

if TYPE_CHECKING:
    from psyche.chain.accounts.treasurer import Participant
    from psyche.chain.queries import JoinCheck, Rewards, Run
    from psyche.manager.operations.decisions import ClaimPlan
    from psyche.manager.operations.runs import TreasurerView


@dataclass(frozen=True, slots=True)
class JoinDecision:
    """can_join's answer: the check made, why the key may not join (None: it may) and what admits it."""

    check: JoinCheck
    refusal: str | None
    chosen: tuple[Pubkey, Pubkey] | None  # (grantee, authorization) of the valid authorization

    def error(self) -> RunManagerError | None:
        """The refusal as an error: NotAuthorized without a valid authorization, else JoinRefused."""
        if self.refusal is None:
            return None
        return (NotAuthorized if self.check.grantee is None else JoinRefused)(self.refusal)


def can_join(chain: ChainAccess, run_id: str, user: Pubkey, authorizer: Pubkey | None) -> JoinDecision:
    """Whether ``user`` may join ``run_id`` (through ``authorizer``'s grant if given); two RPC round trips.

    Raises:
        AccountNotFound, AccountDecodeError: the run cannot be read.
    """
    from psyche.chain.queries import check_join
    from psyche.manager.operations.decisions import join_refusal

    check = check_join(chain.reader, run_id, user, authorizer, chain.programs)
    chosen = next(((g, a) for g, a, outcome in check.tried if outcome == "valid"), None)
    return JoinDecision(check, join_refusal(check, authorizer), chosen)


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim: the rewards read, what was planned, and the transaction (None when nothing was claimable)."""

    rewards: Rewards
    plan: ClaimPlan
    signature: str | None
    participant: Pubkey  # the wallet's participant account of the treasurer run


def claim_rewards(chain: ChainAccess, run_id: str, *, treasurer_index: int | None = None) -> Claim:
    """Claim the wallet's claimable points as collateral tokens; nothing is sent when none are claimable.

    One transaction: the wallet's token account (if missing), its participant account (if missing), then
    the claim of min(earned - claimed, treasury balance).

    Raises:
        AccountNotFound: no such run, or the run has no treasurer.
        ConfigError: the run has a treasurer at another index than ``treasurer_index``.
        TransactionFailed: the transaction failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain import pda
    from psyche.chain.queries import fetch_rewards
    from psyche.manager.operations.decisions import claim_plan

    user = chain.sender.payer
    programs = chain.programs
    rewards = fetch_rewards(chain.reader, run_id, user, treasurer_index, programs)
    plan = claim_plan(rewards)
    treasurer_run = rewards.treasurer_address
    participant = pda.participant(treasurer_run, user, program_id=programs.treasurer)
    if plan.nothing:
        return Claim(rewards, plan, None, participant)
    mint = rewards.treasurer.collateral_mint
    instructions = []
    if plan.create_token_account:
        instructions.append(ix.create_associated_token_account_idempotent(user, user, mint))
    if plan.create_participant:
        instructions.append(ix.participant_create(user, user, treasurer_run, program_id=programs.treasurer))
    instructions.append(
        ix.participant_claim(
            user,
            rewards.user_token_account,
            treasurer_run,
            pda.associated_token_account(treasurer_run, mint),
            rewards.run.coordinator_address,
            plan.amount,
            program_id=programs.treasurer,
        )
    )
    sent = chain.sender.send(instructions)
    return Claim(rewards, plan, str(sent.signature), participant)


@dataclass(frozen=True, slots=True)
class RunListing:
    """list_runs' answer: the runs considered, those listed (joinable first) and which are joinable."""

    scanned_any: bool  # the coordinator program holds at least one readable run
    runs: list[Run]  # after the join-authority filter
    listed: list[Run]  # joinable first; only the joinable ones unless every run was asked for
    joinable: frozenset[Pubkey]  # instance addresses of the runs ``user`` (or anyone) can join

    def is_joinable(self, run: Run) -> bool:
        """Whether the key can join ``run``."""
        return run.instance_address in self.joinable


def list_runs(
    chain: ChainAccess,
    *,
    user: Pubkey | None,
    extra_grantee: Pubkey | None,
    join_authority: str | None,
    every_run: bool,
    warn: Callable[[str], None],
) -> RunListing:
    """The runs of the coordinator program and which of them ``user`` can join, in one more RPC call.

    A run is joinable when it is in a joinable state and an authorization from its join authority is valid
    for ``user`` through the permissionless grant, ``user``'s own or ``extra_grantee``'s (AUTHORIZER); with
    no ``user`` only the permissionless grant counts. ``join_authority`` keeps only the runs it authorizes;
    ``warn`` hears about run accounts that could not be read.

    Raises:
        AccountDecodeError: not one run account could be read.
    """
    from psyche.chain import pda
    from psyche.chain.programs import PERMISSIONLESS_GRANTEE
    from psyche.chain.queries import scan_runs
    from psyche.manager.operations.decisions import JOINABLE_STATES, authorization_valid, joinable_first

    programs = chain.programs
    scan = scan_runs(chain.reader, programs)
    warning = scan.readable(programs.coordinator)
    if warning is not None:
        warn(warning)
    runs = scan.runs
    if join_authority is not None:
        runs = [r for r in runs if str(r.instance.join_authority) == join_authority]
    grantees = [PERMISSIONLESS_GRANTEE]
    if user is not None:
        grantees.append(user)
        if extra_grantee is not None:
            grantees.append(extra_grantee)
    candidates = [r for r in runs if r.state in JOINABLE_STATES]
    keys = [
        pda.authorization(r.instance.join_authority, g, program_id=programs.authorizer)
        for r in candidates
        for g in grantees
    ]
    infos = chain.reader.get_multiple_accounts(keys) if keys else []
    joinable: set[Pubkey] = set()
    for i, run in enumerate(candidates):
        for j, grantee in enumerate(grantees):
            checker = user if user is not None else grantee
            info = infos[i * len(grantees) + j]
            if authorization_valid(info, programs.authorizer, run.instance.join_authority, checker):
                joinable.add(run.instance_address)
                break
    order = joinable_first([(r.state, r.instance_address in joinable) for r in runs])
    listed = [runs[i] for i in order]
    if not every_run:
        listed = [r for r in listed if r.instance_address in joinable]
    return RunListing(bool(scan.runs), runs, listed, frozenset(joinable))


@dataclass(frozen=True, slots=True)
class UserView:
    """What json-dump-user prints: the run, the user's lamports and, on a treasurer run, its claims."""

    run: Run
    lamports: int
    treasurer: TreasurerView | None
    participant: Participant | None
    token_balance: int | None


def load_user(
    chain: ChainAccess, run_id: str, user: Pubkey, *, treasurer_index: int | None = None
) -> UserView:
    """``user``'s standing in a run: its balance; on a treasurer run, its participant and token account.

    Raises:
        AccountNotFound, AccountDecodeError: the run (or its treasurer's mint) cannot be read.
    """
    from psyche.chain import pda
    from psyche.chain.accounts.token import TokenAccount
    from psyche.chain.accounts.treasurer import Participant
    from psyche.chain.queries import fetch_run
    from psyche.manager.operations.runs import load_treasurer_view

    programs = chain.programs
    run = fetch_run(chain.reader, run_id, programs)
    lamports = chain.reader.get_balance(user)
    view = load_treasurer_view(chain, run_id, treasurer_index)
    participant = None
    balance = None
    if view is not None:
        p_info, ata_info = chain.reader.get_multiple_accounts(
            [
                pda.participant(view.address, user, program_id=programs.treasurer),
                pda.associated_token_account(user, view.run.collateral_mint),
            ]
        )
        if p_info is not None and p_info.lamports > 0:
            participant = Participant.decode(p_info.data)
        if ata_info is not None:
            balance = TokenAccount.decode(ata_info.data).amount
    return UserView(run, lamports, view, participant, balance)
