"""The one place that fetches AND decodes: runs, join authorization decisions and treasurer rewards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.accounts.authorization import Authorization
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.instance import CoordinatorInstance
from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.accounts.treasurer import Participant, TreasurerRun
from psyche.chain.programs import (
    DEFAULT_PROGRAM_IDS,
    JOIN_RUN_AUTHORIZATION_SCOPE,
    PERMISSIONLESS_GRANTEE,
    ProgramIds,
)
from psyche.chain.rpc import AccountInfo
from psyche.errors import AccountDecodeError, AccountNotFound, ConfigError, NotAuthorized


class AccountReader(Protocol):
    """The slice of RpcClient that queries need (a fake in unit tests, RpcClient for real)."""

    def get_account_info(self, pubkey: Pubkey) -> AccountInfo | None:
        """The account at ``pubkey``, or None if it does not exist."""

    def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountInfo | None]:
        """The accounts for ``pubkeys`` in order, None where one does not exist."""

    def get_program_accounts(
        self, program: Pubkey, filters: Sequence[int | tuple[int, bytes]] = ()
    ) -> list[tuple[Pubkey, bytes]]:
        """Accounts owned by ``program`` matching all filters: int = dataSize, (offset, bytes) = memcmp."""

    @property
    def current_endpoint(self) -> str:
        """The endpoint (redacted) that answers now, for messages."""
        ...


@dataclass(frozen=True, slots=True)
class Run:
    """A run as the chain holds it: the small instance PDA and the big coordinator account."""

    instance_address: Pubkey
    instance: CoordinatorInstance
    coordinator: CoordinatorAccount

    @property
    def run_id(self) -> str:
        return self.instance.run_id

    @property
    def coordinator_address(self) -> Pubkey:
        return self.instance.coordinator_account

    @property
    def state(self) -> RunState:
        return self.coordinator.run_state

    @property
    def num_clients(self) -> int:
        return len(self.coordinator.epoch_state.clients)

    @property
    def min_clients(self) -> int:
        return self.coordinator.config.min_clients

    @property
    def epoch_time(self) -> int:
        return self.coordinator.config.epoch_time

    @property
    def epoch_start_timestamp(self) -> int:
        return self.coordinator.epoch_state.start_timestamp

    @property
    def client_version(self) -> str:
        return self.coordinator.client_version


_RUN_ACCOUNT_HINT = (
    "check RUN_ID's spelling, the cluster (RPC: devnet or mainnet?) and COORDINATOR_PROGRAM_ID; "
    "`run-manager list-runs --all` lists the runs this endpoint knows"
)


def _unreadable(rpc: AccountReader, address: Pubkey, run_id: str, reason: str) -> str:
    # The words of the reference's troubleshooting docs, then what makes the line actionable.
    return (
        f"RPC error: failed to get account {address} (run {run_id!r}, endpoint {rpc.current_endpoint}): "
        f"{reason}"
    )


def _decode_instance(
    rpc: AccountReader, info: AccountInfo | None, address: Pubkey, run_id: str, programs: ProgramIds
) -> CoordinatorInstance:
    if info is None:
        raise AccountNotFound(
            f"run {run_id!r}: coordinator instance",
            str(address),
            message=_unreadable(rpc, address, run_id, "no coordinator instance account at this address"),
            hint=_RUN_ACCOUNT_HINT,
        )
    if info.owner != programs.coordinator:
        reason = f"owned by {info.owner}, not the coordinator program {programs.coordinator}"
        raise AccountDecodeError(_unreadable(rpc, address, run_id, reason), hint=_RUN_ACCOUNT_HINT)
    try:
        return CoordinatorInstance.decode(info.data)
    except AccountDecodeError as exc:
        raise AccountDecodeError(_unreadable(rpc, address, run_id, exc.message)) from exc


def _decode_coordinator(
    rpc: AccountReader, info: AccountInfo | None, address: Pubkey, run_id: str
) -> CoordinatorAccount:
    if info is None:
        raise AccountNotFound(
            f"run {run_id!r}: coordinator",
            str(address),
            message=_unreadable(rpc, address, run_id, "no coordinator account at this address"),
        )
    try:
        return CoordinatorAccount.decode(info.data)
    except AccountDecodeError as exc:
        raise AccountDecodeError(_unreadable(rpc, address, run_id, exc.message)) from exc


def fetch_run(rpc: AccountReader, run_id: str, programs: ProgramIds = DEFAULT_PROGRAM_IDS) -> Run:
    """The run ``run_id``: two reads (the instance PDA, then the coordinator account it names).

    Raises:
        ConfigError: ``run_id`` is over 32 bytes.
        AccountNotFound: no such run (the hint says what to check).
        AccountDecodeError: an account is not a coordinator instance or account (the message names the
            endpoint).
        RpcError: no endpoint answered.
    """
    address = pda.coordinator_instance(run_id, program_id=programs.coordinator)
    instance = _decode_instance(rpc, rpc.get_account_info(address), address, run_id, programs)
    coordinator_address = instance.coordinator_account
    coordinator = _decode_coordinator(
        rpc, rpc.get_account_info(coordinator_address), coordinator_address, run_id
    )
    return Run(address, instance, coordinator)


def fetch_coordinator(rpc: AccountReader, address: Pubkey, run_id: str = "?") -> CoordinatorAccount:
    """Re-read only the coordinator account of a run already found (one read).

    Raises:
        AccountNotFound: the account is gone.
        AccountDecodeError: it is not a coordinator account.
        RpcError: no endpoint answered.
    """
    return _decode_coordinator(rpc, rpc.get_account_info(address), address, run_id)


@dataclass(frozen=True, slots=True)
class RunScan:
    """Every run of the coordinator program that decoded, and the accounts that did not (with why)."""

    runs: list[Run]
    unreadable: tuple[tuple[Pubkey, str], ...]  # (account address, reason), in RPC order

    def readable(self, program: Pubkey) -> str | None:
        """A one-line warning counting the unreadable run accounts (None when all read), or an
        AccountDecodeError when not one run could be read: corrupted data is not "no runs"."""
        if not self.unreadable:
            return None
        count = len(self.unreadable)
        address, reason = self.unreadable[0]
        if not self.runs:
            raise AccountDecodeError(
                f"none of the {count} run account(s) of coordinator program {program} could be read "
                f"(first: {address}: {reason})",
                hint="check COORDINATOR_PROGRAM_ID and that RPC is the cluster the runs live on",
            )
        return f"{count} run account(s) could not be read and are not listed (first: {address}: {reason})"


def scan_runs(rpc: AccountReader, programs: ProgramIds = DEFAULT_PROGRAM_IDS) -> RunScan:
    """Every run of the coordinator program, in RPC order, and the run accounts that could not be read.

    Filters on the instance's size and discriminator (the reference fetches every account the program
    owns, which some public RPCs refuse), then reads the coordinator accounts in batches of 100. A run
    whose instance or coordinator account is missing or not decodable is not a Run but is counted, so a
    caller can tell "no runs" from "runs it cannot read".
    """
    keyed = rpc.get_program_accounts(
        programs.coordinator,
        [CoordinatorInstance.SIZE, (0, CoordinatorInstance.DISCRIMINATOR)],
    )
    unreadable: list[tuple[Pubkey, str]] = []
    instances: list[tuple[Pubkey, CoordinatorInstance]] = []
    for address, data in keyed:
        try:
            instances.append((address, CoordinatorInstance.decode(data)))
        except AccountDecodeError as exc:
            unreadable.append((address, exc.message))
    infos = rpc.get_multiple_accounts([inst.coordinator_account for _, inst in instances])
    runs: list[Run] = []
    for (address, instance), info in zip(instances, infos, strict=True):
        if info is None:
            unreadable.append(
                (instance.coordinator_account, f"run {instance.run_id!r}: no coordinator account")
            )
            continue
        try:
            runs.append(Run(address, instance, CoordinatorAccount.decode(info.data)))
        except AccountDecodeError as exc:
            unreadable.append((instance.coordinator_account, f"run {instance.run_id!r}: {exc.message}"))
    return RunScan(runs, tuple(unreadable))


def list_runs(rpc: AccountReader, programs: ProgramIds = DEFAULT_PROGRAM_IDS) -> list[Run]:
    """Every decodable run of the coordinator program, in RPC order (undecodable ones skipped, as the
    reference's discovery does; ``scan_runs`` also says which)."""
    return scan_runs(rpc, programs).runs


@dataclass(frozen=True, slots=True)
class JoinCheck:
    """Whether ``user`` may join a run, and through which authorization grantee."""

    run: Run
    user: Pubkey
    grantee: Pubkey | None  # the grantee whose authorization admits the user; None = not authorized
    tried: tuple[tuple[Pubkey, Pubkey, str], ...]  # (grantee, authorization PDA, outcome) in order
    already_in_epoch: bool

    @property
    def authorized(self) -> bool:
        return self.grantee is not None

    @property
    def can_join(self) -> bool:
        return self.authorized and not self.already_in_epoch and self.run.state != RunState.Finished


def authorization_grantees(user: Pubkey, authorizer: Pubkey | None) -> list[Pubkey]:
    """Grantees to try, in the reference's order: anyone (111…1), the user's own key, the AUTHORIZER key."""
    order = [PERMISSIONLESS_GRANTEE, user]
    if authorizer is not None:
        order.append(authorizer)
    seen: list[Pubkey] = []
    for key in order:
        if key not in seen:
            seen.append(key)
    return seen


def _authorization_outcome(
    info: AccountInfo | None, join_authority: Pubkey, user: Pubkey, programs: ProgramIds
) -> str:
    if info is None or info.lamports == 0:
        return "no authorization account"
    if info.owner != programs.authorizer:
        return f"account not owned by the authorizer program ({info.owner})"
    try:
        auth = Authorization.decode(info.data)
    except AccountDecodeError as exc:
        return f"not an authorization ({exc})"
    if not auth.active:
        return "authorization inactive"
    if auth.is_valid_for(join_authority, user, JOIN_RUN_AUTHORIZATION_SCOPE):
        return "valid"
    if auth.grantee not in (PERMISSIONLESS_GRANTEE, user):
        return f"{user} is neither the grantee nor one of its {len(auth.delegates)} delegate(s)"
    return "authorization does not match this run's join authority or scope"


def check_join(
    rpc: AccountReader,
    run_id: str,
    user: Pubkey,
    authorizer: Pubkey | None = None,
    programs: ProgramIds = DEFAULT_PROGRAM_IDS,
) -> JoinCheck:
    """Decide whether ``user`` may join ``run_id`` in two RPC round trips.

    Trip 1 reads the instance (for the join authority); trip 2 reads, in one getMultipleAccounts, the
    coordinator account and every candidate authorization PDA.

    Raises:
        ConfigError: ``run_id`` is over 32 bytes.
        AccountNotFound: no such run.
        AccountDecodeError: the run's accounts are not what they should be.
        RpcError: no endpoint answered.
    """
    address = pda.coordinator_instance(run_id, program_id=programs.coordinator)
    instance = _decode_instance(rpc, rpc.get_account_info(address), address, run_id, programs)
    grantees = authorization_grantees(user, authorizer)
    pdas = [pda.authorization(instance.join_authority, g, program_id=programs.authorizer) for g in grantees]
    infos = rpc.get_multiple_accounts([instance.coordinator_account, *pdas])
    coordinator = _decode_coordinator(rpc, infos[0], instance.coordinator_account, run_id)
    run = Run(address, instance, coordinator)
    tried: list[tuple[Pubkey, Pubkey, str]] = []
    chosen: Pubkey | None = None
    for grantee, auth_address, info in zip(grantees, pdas, infos[1:], strict=True):
        outcome = _authorization_outcome(info, instance.join_authority, user, programs)
        tried.append((grantee, auth_address, outcome))
        if outcome == "valid":
            chosen = grantee
            break
    in_epoch = not coordinator.run_state.halted and any(
        c.signer == user for c in coordinator.epoch_state.clients
    )
    return JoinCheck(run, user, chosen, tuple(tried), in_epoch)


def require_authorized(check: JoinCheck) -> Pubkey:
    """The grantee to pass to the client as AUTHORIZER, or NotAuthorized naming the run, key and reasons."""
    if check.grantee is not None:
        return check.grantee
    reasons = "; ".join(f"grantee {g}: {outcome}" for g, _, outcome in check.tried)
    raise NotAuthorized(
        f"{check.user} is not authorized to join run {check.run.run_id!r} ({reasons})",
        hint="ask the run owner for a join authorization, or set AUTHORIZER to the key that authorized you "
        "if this wallet is a delegate; check with `run-manager can-join`",
    )


@dataclass(frozen=True, slots=True)
class Rewards:
    """A user's points and the treasurer's ability to pay them (1 point = 1 base unit of collateral)."""

    run: Run
    treasurer_address: Pubkey
    treasurer: TreasurerRun
    mint: Mint
    user: Pubkey
    earned: int
    claimed: int
    participant_exists: bool
    user_token_account: Pubkey
    user_token_balance: int | None  # None: the associated token account does not exist yet
    treasury_balance: int

    @property
    def unclaimed(self) -> int:
        return max(self.earned - self.claimed, 0)

    @property
    def claimable(self) -> int:
        """What a claim pays now: min(unclaimed, what the treasury holds)."""
        return min(self.unclaimed, self.treasury_balance)


def earned_points(coordinator: CoordinatorAccount, user: Pubkey) -> int:
    """Points of the first ledger entry whose signer is ``user`` (0 if the user never joined)."""
    for client in coordinator.clients_state.clients:
        if client.signer == user:
            return client.earned
    return 0


def fetch_treasurer(
    rpc: AccountReader, run_id: str, index: int | None = None, programs: ProgramIds = DEFAULT_PROGRAM_IDS
) -> tuple[Pubkey, TreasurerRun] | None:
    """The treasurer Run PDA of ``run_id`` (default index from sha256(run_id)), or None if the run has none.

    Raises:
        ConfigError: the run has a treasurer, but not at this index (the message names the run's index),
            or the treasurer at this index belongs to another run.
    """
    wanted = pda.treasurer_index(run_id) if index is None else index
    address = pda.treasurer_run(wanted, program_id=programs.treasurer)
    info = rpc.get_account_info(address)
    which = f"index {wanted}" + (" (the default, from sha256 of the run id)" if index is None else "")
    found = None if info is None or info.lamports == 0 else TreasurerRun.decode(info.data)
    instance = pda.coordinator_instance(run_id, program_id=programs.coordinator)
    if found is not None and found.coordinator_instance == instance:
        return address, found
    actual = run_treasurer(rpc, run_id, programs)
    if actual is not None:
        has = "has no treasurer at" if found is None else "is not the run of the treasurer at"
        raise ConfigError(
            f"run {run_id!r} {has} {which}; it was created with --treasurer-index {actual[1].index}: "
            f"pass --treasurer-index {actual[1].index}"
        )
    if found is not None:
        raise ConfigError(f"the treasurer at {which} belongs to another run, not to {run_id!r}")
    return None


def run_treasurer(
    rpc: AccountReader, run_id: str, programs: ProgramIds = DEFAULT_PROGRAM_IDS
) -> tuple[Pubkey, TreasurerRun] | None:
    """The treasurer that owns ``run_id``, whatever its index, or None (no such run, or a run without one).

    A treasurer-backed run's main authority is its treasurer Run PDA (two reads: instance, authority).
    """
    instance_address = pda.coordinator_instance(run_id, program_id=programs.coordinator)
    info = rpc.get_account_info(instance_address)
    try:
        instance = CoordinatorInstance.decode(info.data) if info is not None else None
        authority = None if instance is None else rpc.get_account_info(instance.main_authority)
        if instance is None or authority is None or authority.owner != programs.treasurer:
            return None
        run = TreasurerRun.decode(authority.data)
    except AccountDecodeError:
        return None
    return (instance.main_authority, run) if run.coordinator_instance == instance_address else None


def fetch_rewards(
    rpc: AccountReader,
    run_id: str,
    user: Pubkey,
    index: int | None = None,
    programs: ProgramIds = DEFAULT_PROGRAM_IDS,
) -> Rewards:
    """Earned, claimed and claimable points of ``user`` in a treasurer-backed run.

    Raises:
        AccountNotFound: the run has no treasurer, or the treasurer's collateral mint is gone.
        AccountDecodeError: an account is not of the type expected.
        RpcError: no endpoint answered.
    """
    run = fetch_run(rpc, run_id, programs)
    found = fetch_treasurer(rpc, run_id, index, programs)
    if found is None:
        raise AccountNotFound(f"run {run_id!r} has no treasurer; treasurer run", "(none)")
    treasurer_address, treasurer = found
    mint_key = treasurer.collateral_mint
    participant_address = pda.participant(treasurer_address, user, program_id=programs.treasurer)
    user_ata = pda.associated_token_account(user, mint_key)
    run_ata = pda.associated_token_account(treasurer_address, mint_key)
    mint_info, participant_info, user_ata_info, run_ata_info = rpc.get_multiple_accounts(
        [mint_key, participant_address, user_ata, run_ata]
    )
    if mint_info is None:
        raise AccountNotFound("collateral mint", str(mint_key))
    mint = Mint.decode(mint_info.data)
    claimed = 0
    if participant_info is not None and participant_info.lamports > 0:
        claimed = Participant.decode(participant_info.data).claimed_earned_points
    user_balance = None if user_ata_info is None else TokenAccount.decode(user_ata_info.data).amount
    treasury = 0 if run_ata_info is None else TokenAccount.decode(run_ata_info.data).amount
    return Rewards(
        run=run,
        treasurer_address=treasurer_address,
        treasurer=treasurer,
        mint=mint,
        user=user,
        earned=earned_points(run.coordinator, user),
        claimed=claimed,
        participant_exists=participant_info is not None and participant_info.lamports > 0,
        user_token_account=user_ata,
        user_token_balance=user_balance,
        treasury_balance=treasury,
    )
