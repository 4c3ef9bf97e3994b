"""`Coordinator::tick` and its transitions (spec 5.1, 5.2), on the mutable working state."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.model import Checkpoint, CheckpointKind
from psyche.chain.accounts.state import ClientState
from psyche.chain.committee import witness_quorum
from psyche.chain.data_selection import batch_size
from psyche.chain.logic.errors import CoordinatorErrorCode as E
from psyche.chain.logic.errors import CoordinatorPanic, fail
from psyche.chain.logic.work import MAX_CLIENTS, NUM_ROUNDS, WClient, Work, with_checkpoint

HALTED = frozenset({RunState.Uninitialized, RunState.Finished, RunState.Paused})
ACTIVE = frozenset({RunState.RoundTrain, RunState.RoundWitness, RunState.Cooldown})


class TickResult(Enum):
    """What `Coordinator::tick` reports to the program wrapper."""

    TICKED = "ticked"
    EPOCH_END_OK = "epoch_end_ok"
    EPOCH_END_FAILED = "epoch_end_failed"


def halted(w: Work) -> bool:
    """Uninitialized, Finished or Paused."""
    return w.run_state in HALTED


def active(w: Work) -> bool:
    """RoundTrain, RoundWitness or Cooldown."""
    return w.run_state in ACTIVE


def check_timeout(w: Work, now: int, duration: int) -> bool:
    """True once ``duration`` has passed since the state began, but never in the same second."""
    return w.run_state_start != now and now >= duration + w.run_state_start


def check_epoch_timeout(w: Work, now: int) -> bool:
    """The epoch's ``epoch_time`` has passed (same strict rule, from ``start_timestamp``)."""
    return w.start_timestamp != now and now >= w.start_timestamp + w.config.epoch_time


def change_state(w: Work, now: int, new: RunState) -> None:
    """Enter ``new`` at ``now``; the program asserts that the state really changes.

    Raises:
        CoordinatorPanic: ``new`` is the current state (the program asserts).
    """
    if w.run_state == new:
        raise CoordinatorPanic(f"coordinator panicked: change_state to the same state {new.name}")
    w.run_state_start = now
    w.run_state = new


def move_clients_to_exited(w: Work, height: int) -> None:
    """Move every non-Healthy epoch client, in order, to the exited list stamped with ``height``.

    Raises:
        CoordinatorPanic: the exited list is full.
    """
    keep: list[WClient] = []
    for c in w.clients:
        if c.state != ClientState.Healthy:
            if len(w.exited) >= MAX_CLIENTS:
                raise CoordinatorPanic("coordinator panicked: exited_clients full")
            c.exited_height = height
            w.exited.append(c)
        else:
            keep.append(c)
    w.clients = keep


def withdraw_all(w: Work) -> None:
    """Every Healthy epoch client becomes Withdrawn (others keep their state)."""
    for c in w.clients:
        if c.state == ClientState.Healthy:
            c.state = ClientState.Withdrawn


def round_batch_size(w: Work, data_index: int) -> int:
    """Batch size of a round starting at ``data_index``."""
    return batch_size(w.config, data_index, w.model.max_seq_len)


def quorum(w: Work, num_witnesses: int) -> int:
    """`Coordinator::witness_quorum`; the program's unreachable!() (0 and 0) is a panic.

    Raises:
        CoordinatorPanic: no witnesses and a witness quorum of 0 (the program's unreachable!()).
    """
    try:
        return witness_quorum(num_witnesses, w.config.witness_nodes)
    except ValueError as exc:
        raise CoordinatorPanic("coordinator panicked: witness quorum of zero witnesses") from exc


def start_waiting_for_members(w: Work, now: int) -> None:
    """WaitingForMembers, or Finished once ``step >= total_steps``."""
    target = RunState.WaitingForMembers if w.step < w.config.total_steps else RunState.Finished
    change_state(w, now, target)


def start_round_train(w: Work, now: int, random_seed: int, tie_breaker_tasks: int = 0) -> None:
    """Open the next round (or round 0 of the epoch) and enter RoundTrain."""
    if w.first_round:
        head, height, data_index = 0, 0, w.epoch_start_data_index
    else:
        prev = w.rounds[w.rounds_head]
        head = (w.rounds_head + 1) % NUM_ROUNDS
        height = prev.height + 1
        data_index = prev.data_index + round_batch_size(w, prev.data_index)
    w.rounds_head = head
    r = w.rounds[head]
    r.clients_len = len(w.clients)
    r.height = height
    r.data_index = data_index
    r.tie_breaker_tasks = tie_breaker_tasks
    r.random_seed = random_seed
    r.witnesses = []
    change_state(w, now, RunState.RoundTrain)


def start_cooldown(w: Work, now: int) -> None:
    """Enter Cooldown, clearing the current round's witnesses (they are reused in warmup)."""
    w.current_round.witnesses = []
    change_state(w, now, RunState.Cooldown)


def _revert_to_storage(cp: Checkpoint) -> Checkpoint:
    if cp.kind == CheckpointKind.P2P:
        return Checkpoint(CheckpointKind.Hub, cp.repo)
    if cp.kind == CheckpointKind.P2PGcs:
        return Checkpoint(CheckpointKind.Gcs, cp.repo)
    return cp


def _switch_to_p2p(cp: Checkpoint) -> Checkpoint:
    if cp.kind in (CheckpointKind.Hub, CheckpointKind.Dummy):
        return Checkpoint(CheckpointKind.P2P, cp.repo)
    if cp.kind == CheckpointKind.Gcs:
        return Checkpoint(CheckpointKind.P2PGcs, cp.repo)
    return cp


def tick_waiting_for_members(w: Work, pending: Sequence[tuple[Pubkey, Pubkey]], now: int) -> TickResult:
    """Start the epoch's warmup once enough clients are pending and the extra time has passed."""
    if not (
        len(pending) >= w.config.init_min_clients
        and check_timeout(w, now, w.config.waiting_for_members_extra_time)
    ):
        return TickResult.TICKED
    move_clients_to_exited(w, w.current_round.height)
    pending_signers = {signer for signer, _ in pending}
    if not any(c.signer in pending_signers for c in w.clients):
        # No peer of the last epoch is back, so nobody can serve a P2P checkpoint.
        w.model = with_checkpoint(w.model, _revert_to_storage(w.model.checkpoint))
    cold_start_epoch = w.cold_start_epoch
    w.zero_epoch()
    w.first_round = True
    w.cold_start_epoch = cold_start_epoch
    w.start_step = w.step
    w.start_timestamp = now
    w.clients = [WClient(signer, p2p) for signer, p2p in pending[:MAX_CLIENTS]]
    change_state(w, now, RunState.Warmup)
    return TickResult.TICKED


def tick_warmup(w: Work, now: int, random_seed: int) -> TickResult:
    """Start round 0 after warmup_time; fall back to WaitingForMembers below min_clients."""
    if check_timeout(w, now, w.config.warmup_time):
        start_round_train(w, now, random_seed)
    else:
        move_clients_to_exited(w, 0)
    if len(w.clients) < w.config.min_clients:
        start_waiting_for_members(w, now)
        return TickResult.EPOCH_END_FAILED
    return TickResult.TICKED


def tick_round_train(w: Work, now: int) -> TickResult:
    """RoundTrain → RoundWitness after max_round_train_time."""
    if check_timeout(w, now, w.config.max_round_train_time):
        change_state(w, now, RunState.RoundWitness)
    return TickResult.TICKED


def tick_round_witness(w: Work, now: int, random_seed: int) -> TickResult:
    """End the round: count the step, drop the unhealthy, then Cooldown or the next round."""
    if not check_timeout(w, now, w.config.round_witness_time):
        return TickResult.TICKED
    w.first_round = False
    w.step += 1
    current = w.current_round
    num_witnesses = len(current.witnesses)
    move_clients_to_exited(w, current.height)
    if num_witnesses == 0:
        # Nobody witnessed: we cannot tell who is alive, so nobody finishes the epoch.
        withdraw_all(w)
        start_cooldown(w, now)
        return TickResult.TICKED
    if check_epoch_timeout(w, now) and w.last_step == 0:
        last_step = w.step + 2
        if last_step >= 4:  # the pipeline needs at least 4 rounds per epoch
            w.last_step = last_step
    if w.last_step != 0 and w.step == w.last_step:
        start_cooldown(w, now)
        return TickResult.TICKED
    if (
        len(w.clients) < w.config.min_clients
        or num_witnesses < quorum(w, num_witnesses)
        or w.step >= w.config.total_steps
        or w.pending_pause
    ):
        start_cooldown(w, now)
        return TickResult.TICKED
    start_round_train(w, now, random_seed)
    return TickResult.TICKED


def tick_cooldown(w: Work, now: int) -> TickResult:
    """End the epoch: advance data and epoch, switch the checkpoint to P2P, then wait, pause or finish."""
    if not check_timeout(w, now, w.config.cooldown_time):
        return TickResult.TICKED
    current = w.current_round
    w.epoch_start_data_index = current.data_index + round_batch_size(w, current.data_index)
    w.epoch += 1
    move_clients_to_exited(w, current.height)
    w.model = with_checkpoint(w.model, _switch_to_p2p(w.model.checkpoint))
    if w.pending_pause:
        withdraw_all(w)
        change_state(w, now, RunState.Paused)
        w.pending_pause = False
        w.cold_start_epoch = True
    else:
        start_waiting_for_members(w, now)
        w.cold_start_epoch = False
    return TickResult.EPOCH_END_OK


def coordinator_tick(
    w: Work, pending: Sequence[tuple[Pubkey, Pubkey]] | None, now: int, random_seed: int
) -> TickResult:
    """`Coordinator::tick`: dispatch on the run state; halted runs fail with Halted (6015).

    Raises:
        CoordinatorProgramError: CoordinatorErrorHalted (6015).
        CoordinatorPanic: a state change the program would assert against.
    """
    state = w.run_state
    if state in HALTED:
        raise fail(E.CoordinatorErrorHalted)
    if state == RunState.WaitingForMembers:
        return TickResult.TICKED if pending is None else tick_waiting_for_members(w, pending, now)
    if state == RunState.Warmup:
        return tick_warmup(w, now, random_seed)
    if state == RunState.RoundTrain:
        return tick_round_train(w, now)
    if state == RunState.RoundWitness:
        return tick_round_witness(w, now, random_seed)
    return tick_cooldown(w, now)
