"""Pure decisions behind the commands: why a join is refused, which runs are joinable, what a claim pays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from solders.pubkey import Pubkey

from psyche.chain.accounts.authorization import Authorization
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.programs import JOIN_RUN_AUTHORIZATION_SCOPE, PERMISSIONLESS_GRANTEE
from psyche.chain.queries import JoinCheck, Rewards
from psyche.chain.rpc import AccountInfo
from psyche.errors import AccountDecodeError

# States a client can join (the reference drops Uninitialized, Finished and Paused from discovery).
JOINABLE_STATES = frozenset(
    {
        RunState.WaitingForMembers,
        RunState.Warmup,
        RunState.RoundTrain,
        RunState.RoundWitness,
        RunState.Cooldown,
    }
)


def grantee_label(grantee: Pubkey) -> str:
    """A grantee as users read it: the all-zero key means anyone."""
    return f"{grantee} (anyone)" if grantee == PERMISSIONLESS_GRANTEE else str(grantee)


def _reason(grantee: Pubkey, outcome: str, join_authority: Pubkey) -> str:
    who = grantee_label(grantee)
    if outcome == "no authorization account":
        return f"no authorization from join authority {join_authority} for grantee {who}"
    if outcome == "authorization inactive":
        return f"the authorization for grantee {who} is inactive"
    if "delegate" in outcome:
        return f"not a delegate of grantee {who}: {outcome}"
    return f"grantee {who}: {outcome}"


def join_refusal(check: JoinCheck, authorizer: Pubkey | None) -> str | None:
    """One line saying why ``check.user`` may not join, or None when it may (in the reference's order).

    With ``authorizer`` given, an authorization failure is told through that grantee; without it, through
    every grantee tried.
    """
    run_id = check.run.run_id
    join_authority = check.run.instance.join_authority
    prefix = f"{check.user} cannot join run {run_id!r}"
    if check.grantee is None:
        tried = (
            [t for t in check.tried if t[0] == authorizer] if authorizer is not None else list(check.tried)
        )
        reasons = "; ".join(_reason(g, outcome, join_authority) for g, _, outcome in tried or check.tried)
        if authorizer is None:
            reasons += " (a permissioned run needs --authorizer <the key the run owner authorized>)"
        return f"{prefix}: {reasons}"
    state = check.run.state
    if state == RunState.Paused:
        return f"{prefix}: the run is paused"
    if state == RunState.Uninitialized:
        return f"{prefix}: the run is not started yet (Uninitialized)"
    if state == RunState.Finished:
        return f"{prefix}: the run is finished"
    if check.already_in_epoch:
        return (
            f"{prefix}: a client with this pubkey is in the current epoch, you can't join with this key "
            "(use another key, e.g. a delegate)"
        )
    return None


def authorization_valid(
    info: AccountInfo | None, authorizer_program: Pubkey, join_authority: Pubkey, user: Pubkey
) -> bool:
    """True when ``info`` is a live Authorization of the authorizer program valid for ``user`` to join."""
    if info is None or info.lamports == 0 or info.owner != authorizer_program:
        return False
    try:
        auth = Authorization.decode(info.data)
    except AccountDecodeError:
        return False
    return auth.is_valid_for(join_authority, user, JOIN_RUN_AUTHORIZATION_SCOPE)


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """What treasurer-claim-rewards sends: missing accounts to create and the points to claim."""

    create_token_account: bool
    create_participant: bool
    amount: int

    @property
    def nothing(self) -> bool:
        return self.amount == 0


def claim_plan(rewards: Rewards) -> ClaimPlan:
    """Claim ``min(earned - claimed, treasury balance)``; create token account and participant if needed."""
    return ClaimPlan(
        create_token_account=rewards.user_token_balance is None,
        create_participant=not rewards.participant_exists,
        amount=rewards.claimable,
    )


def nothing_to_claim(rewards: Rewards) -> str:
    """The message for a claim of zero: why there is nothing, in one line."""
    if rewards.earned == 0:
        return f"Nothing to claim: {rewards.user} has earned no points in run {rewards.run.run_id!r} yet"
    if rewards.unclaimed == 0:
        return f"Nothing to claim: all {rewards.earned} earned points are already claimed"
    return (
        f"Nothing to claim now: {rewards.unclaimed} points are unclaimed but the treasury holds 0; "
        "ask the run owner to top it up (treasurer-top-up-rewards)"
    )


def joinable_first(items: Sequence[tuple[RunState, bool]]) -> list[int]:
    """Indexes in display order: joinable first (Waiting for members before the others), RPC order kept."""

    def rank(index: int) -> tuple[int, int]:
        state, joinable = items[index]
        if not joinable:
            return (2, 0)
        return (0, 0) if state == RunState.WaitingForMembers else (1, 0)

    return sorted(range(len(items)), key=rank)  # sorted() is stable: RPC order within each rank
