"""The program wrapper around the state machine: tick flags, rewards, and the owner/join instructions."""

from __future__ import annotations

import dataclasses

from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.model import (
    CoordinatorConfig,
    CoordinatorProgress,
    Model,
    RunMetadata,
    cold_start_check,
    config_check,
    model_check,
    progress_check,
)
from psyche.chain.accounts.state import ClientState, NodeIdentity
from psyche.chain.committee import tick_random_seed
from psyche.chain.logic.errors import CoordinatorErrorCode as E
from psyche.chain.logic.errors import CoordinatorPanic, fail
from psyche.chain.logic.machine import (
    TickResult,
    active,
    change_state,
    coordinator_tick,
    halted,
    start_waiting_for_members,
    withdraw_all,
)
from psyche.chain.logic.work import MAX_CLIENTS, WLedger, Work, load, store

RUN_ID_MAX_BYTES = 32
CLIENT_VERSION_MAX_BYTES = 96


def program_tick(w: Work, now: int, slot: int) -> None:
    """`CoordinatorInstanceState::tick`: pending list, `Coordinator::tick`, then flags or the reward pass."""
    pending = None
    if w.run_state == RunState.WaitingForMembers:
        w.is_warmup_first_tick = True
        w.is_training_first_tick = True
        pending = [(c.signer, c.p2p_identity) for c in w.ledger if c.active == w.next_active]
    result = coordinator_tick(w, pending, now, tick_random_seed(now, slot))
    if result is TickResult.TICKED:
        if w.first_round and w.run_state == RunState.Warmup and w.is_warmup_first_tick:
            w.current_rates = w.future_rates
            w.is_warmup_first_tick = False
        elif w.first_round and w.run_state == RunState.RoundTrain and w.is_training_first_tick:
            # Joins so far counted for this epoch; everyone must re-join for the next one.
            w.next_active += 1
            w.is_training_first_tick = False
    else:
        # Paid on EpochEnd(false) from Warmup too: the program ignores the success flag.
        reward_pass(w)


def reward_pass(w: Work) -> None:
    """The EpochEnd cursor walk (spec 5.6): ledger order against the finished and exited lists."""
    finished, exited = w.clients, w.exited
    earning, slashing = w.current_rates
    fi = ei = 0
    for entry in w.ledger:
        if fi < len(finished) and entry.signer == finished[fi].signer:
            if finished[fi].state == ClientState.Healthy:
                entry.earned += earning // len(finished)
            fi += 1
        if ei < len(exited) and entry.signer == exited[ei].signer:
            if exited[ei].state == ClientState.Ejected:
                entry.slashed += slashing
            ei += 1


def find_signer(w: Work, user: Pubkey) -> WLedger:
    """`ClientsState::find_signer`: the ledger entry of ``user``, else SignerNotAClient (6007).

    Raises:
        CoordinatorProgramError: SignerNotAClient (6007).
    """
    for entry in w.ledger:
        if entry.signer == user:
            return entry
    raise fail(E.SignerNotAClient)


def begin(acc: CoordinatorAccount) -> Work:
    """Working copy with the nonce already bumped (every nonce-bumping handler starts this way)."""
    w = load(acc)
    w.nonce += 1
    return w


# ---------------------------------------------------------------- instructions


def init(run_id: str, client_version: str) -> CoordinatorAccount:
    """`init_coordinator`'s effect on the account: zeroed state, version 1, nonce 0 (run_id > 32 B → 6023).

    Raises:
        CoordinatorProgramError: RunIdInvalidLength (6023).
    """
    if len(run_id.encode()) > RUN_ID_MAX_BYTES:
        raise fail(E.RunIdInvalidLength)
    return CoordinatorAccount.initial(run_id, client_version)


def check_free(acc: CoordinatorAccount) -> None:
    """`free_coordinator`'s state rule: only a halted run may be closed (else 6009).

    Raises:
        CoordinatorProgramError: CloseCoordinatorNotHalted (6009).
    """
    if not RunState(acc.run_state).halted:
        raise fail(E.CloseCoordinatorNotHalted)


def tick(acc: CoordinatorAccount, now: int, slot: int) -> CoordinatorAccount:
    """`tick`: advance the state machine (Halted → 6015).

    Raises:
        CoordinatorProgramError: CoordinatorErrorHalted (6015).
        CoordinatorPanic: a state change the program would assert against.
    """
    w = begin(acc)
    program_tick(w, now, slot)
    return store(w)


def simulate_tick(acc: CoordinatorAccount, now: int, slot: int = 0) -> CoordinatorAccount | None:
    """What a `tick` sent now would produce, or None when it would fail (halted) or change nothing.

    "Nothing" ignores the nonce and the two first-tick flags, which every WaitingForMembers tick rewrites.
    ``slot`` only feeds a new round's random seed; clients can leave it at 0.
    """
    if acc.run_state in (RunState.Uninitialized, RunState.Finished, RunState.Paused):
        return None
    after = tick(acc, now, slot)
    same = dataclasses.replace(
        after,
        nonce=acc.nonce,
        is_warmup_first_tick=acc.is_warmup_first_tick,
        is_training_first_tick=acc.is_training_first_tick,
    )
    return None if same == acc else after


def join_run(
    acc: CoordinatorAccount, user: Pubkey, client_id: NodeIdentity, now: int, slot: int
) -> CoordinatorAccount:
    """`join_run`: register or re-activate ``client_id`` for the next epoch, then tick unless halted.

    Raises:
        CoordinatorProgramError: SignerMismatch, MoreClientsThanBatches or ClientsFull.
        CoordinatorPanic: from the tick that follows.
    """
    if client_id.signer != user:
        raise fail(E.SignerMismatch)
    w = begin(acc)
    for entry in w.ledger:
        if entry.signer == client_id.signer:
            entry.p2p_identity = client_id.p2p_identity  # the p2p key may change between joins
            entry.active = w.next_active
            break
    else:
        if len(w.ledger) == w.config.global_batch_size_end:
            raise fail(E.MoreClientsThanBatches)
        if len(w.ledger) >= MAX_CLIENTS:
            raise fail(E.ClientsFull)
        w.ledger.append(WLedger(client_id.signer, client_id.p2p_identity, active=w.next_active))
    if not halted(w):
        program_tick(w, now, slot)
    return store(w)


def set_paused(acc: CoordinatorAccount, paused: bool, now: int, slot: int) -> CoordinatorAccount:
    """`set_paused` (spec 5.4): pause now or at the epoch's end; resume into WaitingForMembers and tick.

    Raises:
        CoordinatorProgramError: CoordinatorErrorHalted (pausing a halted run), a failed sanity check (Config,
            Model, Progress) or CoordinatorErrorCannotResume on resume.
        CoordinatorPanic: from the tick that follows a resume.
    """
    w = begin(acc)
    if paused:
        if halted(w):
            raise fail(E.CoordinatorErrorHalted)
        if active(w):
            w.pending_pause = True
        else:
            withdraw_all(w)
            change_state(w, now, RunState.Paused)
            w.cold_start_epoch = True
        return store(w)
    if not config_check(w.config):
        raise fail(E.ConfigSanityCheckFailed)
    if not model_check(w.model):
        raise fail(E.ModelSanityCheckFailed)
    if not cold_start_check(w.config, w.model):
        raise fail(E.ConfigSanityCheckFailed)
    if w.run_state == RunState.Uninitialized:
        # The only way out of Uninitialized; step 1 is the first valid step.
        w.run_state = RunState.Paused
        w.step = 1
    if not progress_check(CoordinatorProgress(w.epoch, w.step, w.epoch_start_data_index)):
        raise fail(E.ProgressSanityCheckFailed)
    if w.run_state != RunState.Paused:
        raise fail(E.CoordinatorErrorCannotResume)
    start_waiting_for_members(w, now)
    w.next_active += 1  # every earlier join is void: everyone re-joins after a resume
    program_tick(w, now, slot)  # Finished is halted, so a resume past total_steps fails here (6015)
    return store(w)


def update(
    acc: CoordinatorAccount,
    metadata: RunMetadata | None = None,
    config: CoordinatorConfig | None = None,
    model: Model | None = None,
    progress: CoordinatorProgress | None = None,
) -> CoordinatorAccount:
    """`update`: metadata any time; config/model/progress only while halted, each sanity-checked.

    Raises:
        CoordinatorProgramError: UpdateConfigFinished, UpdateConfigNotHalted, or a failed Config/Model sanity
            check.
    """
    if acc.run_state == RunState.Finished:
        raise fail(E.UpdateConfigFinished)
    if not RunState(acc.run_state).halted and any(x is not None for x in (config, model, progress)):
        raise fail(E.UpdateConfigNotHalted)
    new_config, new_model = acc.config, acc.model
    if config is not None:
        if not config_check(config):
            raise fail(E.ConfigSanityCheckFailed)
        new_config = config
    if model is not None:
        if not model_check(model):
            raise fail(E.ModelSanityCheckFailed)
        new_model = model
    if (config is not None or model is not None) and not cold_start_check(new_config, new_model):
        raise fail(E.ConfigSanityCheckFailed)
    if progress is not None and not progress_check(progress):
        raise fail(E.ModelSanityCheckFailed)  # sic: the program reuses the model error here
    return dataclasses.replace(
        acc,
        nonce=acc.nonce + 1,
        metadata=acc.metadata if metadata is None else metadata,
        config=new_config,
        model=new_model,
        progress=acc.progress if progress is None else progress,
    )


def update_client_version(acc: CoordinatorAccount, new_version: str) -> CoordinatorAccount:
    """`update_client_version`: only while halted (6001); no nonce bump; > 96 bytes aborts the program.

    Raises:
        CoordinatorProgramError: UpdateConfigNotHalted (6001).
        CoordinatorPanic: ``new_version`` is over 96 bytes.
    """
    if not RunState(acc.run_state).halted:
        raise fail(E.UpdateConfigNotHalted)
    if len(new_version.encode()) > CLIENT_VERSION_MAX_BYTES:
        raise CoordinatorPanic("coordinator panicked: client_version longer than 96 bytes")
    return dataclasses.replace(acc, client_version=new_version)


def set_future_epoch_rates(
    acc: CoordinatorAccount, earning_rate_total_shared: int | None, slashing_rate_per_client: int | None
) -> CoordinatorAccount:
    """`set_future_epoch_rates`: set the given future rates (copied to current at the next warmup)."""
    future = acc.clients_state.future_epoch_rates
    if earning_rate_total_shared is not None:
        future = dataclasses.replace(future, earning_rate_total_shared=earning_rate_total_shared)
    if slashing_rate_per_client is not None:
        future = dataclasses.replace(future, slashing_rate_per_client=slashing_rate_per_client)
    clients_state = dataclasses.replace(acc.clients_state, future_epoch_rates=future)
    return dataclasses.replace(acc, nonce=acc.nonce + 1, clients_state=clients_state)
