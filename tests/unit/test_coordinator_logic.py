"""The coordinator state machine driven through whole epochs with a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from psyche.chain import logic as cl
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.model import Checkpoint, CheckpointKind, GcsRepo, HubRepo
from psyche.chain.accounts.state import ClientState, EpochClient, NodeIdentity
from tests.support.coordinator import CONFIG, Run, configured, key, replace_acc


def _start_epoch(run: Run, t: int = 1001) -> None:
    """Clients 1 and 2 join; Warmup starts 3 s (waiting_for_members_extra_time) after the resume."""
    run.at(t).join(1)
    run.join(2)
    run.at(1003).tick()
    assert run.state() == RunState.Warmup


def test_resume_from_uninitialized_goes_through_paused_to_waiting() -> None:
    run = configured()
    assert run.state() == RunState.WaitingForMembers
    assert run.acc.progress.step == 1
    assert run.acc.clients_state.next_active == 1
    assert run.acc.run_state_start_unix_timestamp == 1000
    assert run.acc.is_warmup_first_tick and run.acc.is_training_first_tick


def test_full_epoch_with_two_clients_pays_each_half() -> None:
    run = configured()
    _start_epoch(run)
    assert run.acc.clients_state.current_epoch_rates.earning_rate_total_shared == 1000
    assert [c.signer for c in run.acc.epoch_state.clients] == [key(1), key(2)]
    assert run.acc.epoch_state.start_timestamp == 1003

    run.at(1004).warmup_witness(1)
    assert run.state() == RunState.Warmup
    run.warmup_witness(2)  # both warmup witnesses (= min(2 clients, 32)) start round 0 early
    assert run.state() == RunState.RoundTrain
    assert run.acc.clients_state.next_active == 2  # everyone must re-join for the next epoch
    assert (run.round.height, run.round.data_index, run.round.clients_len) == (0, 0, 2)

    heights, t = [], 1004
    while run.state() != RunState.Cooldown:
        assert run.state() == RunState.RoundTrain
        heights.append(run.round.height)
        t += 1
        run.at(t).witness(1)
        run.witness(2)  # the second witness completes the round early
        assert run.state() == RunState.RoundWitness
        t += 2
        run.at(t).tick()
    # epoch_time 40 from 1003 passes at the round ending at 1045: last_step = step + 2, two more rounds.
    assert heights == list(range(len(heights)))
    assert run.acc.epoch_state.last_step == run.acc.progress.step
    assert run.acc.progress.step == len(heights) + 1
    assert run.acc.epoch_state.rounds[run.acc.epoch_state.rounds_head].witnesses == ()
    last_round_index = run.round.data_index
    assert last_round_index == 8 * (len(heights) - 1)

    run.at(t + 5).tick()
    assert run.state() == RunState.WaitingForMembers
    assert run.acc.progress.epoch == 1
    assert run.acc.progress.epoch_start_data_index == last_round_index + 8
    assert run.acc.model.checkpoint == Checkpoint(CheckpointKind.P2P, HubRepo("org/model"))
    assert run.ledger(1).earned == 500 and run.ledger(2).earned == 500
    assert run.acc.epoch_state.cold_start_epoch is False


def test_new_epoch_needs_fresh_joins() -> None:
    run = configured()
    _start_epoch(run)
    run.at(1010).tick()  # warmup_time over: round 0
    assert run.state() == RunState.RoundTrain
    assert run.acc.clients_state.next_active == 2
    # Joining now only counts for the next epoch; the old joins are void.
    assert all(c.active == 1 for c in run.acc.clients_state.clients)
    run.at(1011).join(1)
    assert run.ledger(1).active == 2

    run = configured()
    _start_epoch(run)
    run.at(1010).tick()
    run.at(1021).tick()  # train timeout
    run.at(1023).tick()  # no witnesses: everyone withdrawn, cooldown
    run.at(1028).tick()
    assert run.state() == RunState.WaitingForMembers
    run.at(1100).tick()
    assert run.state() == RunState.WaitingForMembers  # nobody pending any more
    run.join(1)
    run.join(2)
    run.at(1101).tick()
    assert run.state() == RunState.Warmup


def test_zero_witness_round_withdraws_everyone_and_pays_nothing() -> None:
    run = configured()
    _start_epoch(run)
    run.at(1008).tick()
    assert run.state() == RunState.RoundTrain
    run.at(1018).tick()
    assert run.state() == RunState.RoundWitness
    run.at(1020).tick()
    assert run.state() == RunState.Cooldown
    assert all(c.state == ClientState.Withdrawn for c in run.acc.epoch_state.clients)
    run.at(1025).tick()
    assert run.state() == RunState.WaitingForMembers
    assert [c.signer for c in run.acc.epoch_state.exited_clients] == [key(1), key(2)]
    assert run.acc.epoch_state.clients == ()
    assert run.ledger(1).earned == 0 and run.ledger(2).earned == 0


def test_timeouts_never_fire_in_the_second_the_state_began() -> None:
    config = dataclasses.replace(CONFIG, warmup_time=0, waiting_for_members_extra_time=1)
    run = configured(config)
    run.at(1000).join(1)
    run.join(2)
    assert run.state() == RunState.WaitingForMembers  # same second as the resume
    run.at(1001).tick()
    assert run.state() == RunState.Warmup
    run.tick()
    assert run.state() == RunState.Warmup  # warmup_time 0, but still the same second
    run.at(1002).tick()
    assert run.state() == RunState.RoundTrain
    run.at(1011).tick()
    assert run.state() == RunState.RoundTrain  # 9 < max_round_train_time
    run.at(1012).tick()
    assert run.state() == RunState.RoundWitness


def test_pause_while_waiting_is_immediate() -> None:
    run = configured()
    run.at(1001).join(1)
    run.at(1002).pause(True)
    assert run.state() == RunState.Paused
    assert run.acc.run_state_start_unix_timestamp == 1002
    assert run.acc.epoch_state.cold_start_epoch is True
    with pytest.raises(cl.CoordinatorProgramError) as err:
        cl.tick(run.acc, 1003, 1)
    assert err.value.code == 6015


def test_pause_while_training_waits_for_the_epoch_end() -> None:
    run = configured()
    _start_epoch(run)
    run.at(1008).tick()
    run.at(1009).pause(True)
    assert run.state() == RunState.RoundTrain
    assert run.acc.pending_pause is True
    run.at(1010).witness(1)
    run.witness(2)
    run.at(1012).tick()
    assert run.state() == RunState.Cooldown  # pending pause ends the epoch early
    run.at(1017).tick()
    assert run.state() == RunState.Paused
    assert run.acc.pending_pause is False
    assert run.acc.epoch_state.cold_start_epoch is True
    assert run.acc.progress.epoch == 1
    assert all(c.state == ClientState.Withdrawn for c in run.acc.epoch_state.clients)
    assert run.ledger(1).earned == 0  # withdrawn by the pause: no points for this epoch

    run.at(1100).pause(False)
    assert run.state() == RunState.WaitingForMembers
    assert run.acc.clients_state.next_active == 3


def test_resume_past_total_steps_fails_with_halted() -> None:
    run = configured()
    run.pause(True)
    replace_acc(run, progress=dataclasses.replace(run.acc.progress, step=CONFIG.total_steps))
    with pytest.raises(cl.CoordinatorProgramError) as err:
        cl.set_paused(run.acc, False, 1200, 1)
    assert (err.value.code, err.value.name) == (6015, "CoordinatorErrorHalted")


def test_epoch_end_false_from_warmup_still_pays() -> None:
    run = configured()
    _start_epoch(run)
    # The owner cannot do this while running; it stands for clients lost during warmup.
    replace_acc(run, config=dataclasses.replace(CONFIG, min_clients=3))
    run.at(1004).tick()
    assert run.state() == RunState.WaitingForMembers
    assert run.ledger(1).earned == 500 and run.ledger(2).earned == 500


def test_health_check_drops_an_unseen_trainer() -> None:
    run = configured()
    for i in (1, 2, 3):
        run.at(1001).join(i)
    run.at(1003).tick()
    run.at(1008).tick()
    t = 1008
    for _ in range(2):  # rounds 0 and 1; witnesses 1 and 2 only ever saw 1 and 2
        assert run.state() == RunState.RoundTrain
        run.at(t + 1).witness(1, [1, 2])
        run.witness(2, [1, 2])
        run.at(t + 10).tick()
        assert run.state() == RunState.RoundWitness
        run.at(t + 12).tick()
        t += 12
    assert run.round.height == 2
    prev = run.acc.epoch_state.rounds[1]
    from psyche.chain import committee

    def report(accused: int) -> None:
        idx = run.index_of(accused)
        pos = committee.committee_position(idx, prev.clients_len, prev.random_seed)
        run._apply(cl.health_check, key(1), run_ident(accused), committee.TRAINER, pos, idx, t + 1, 5)

    with pytest.raises(cl.CoordinatorProgramError) as err:
        report(2)
    assert err.value.code == 6014  # client 2 was seen by both witnesses: healthy
    report(3)
    assert run.acc.epoch_state.clients[run.index_of(3)].state == ClientState.Dropped
    run.at(t + 10).tick()
    run.at(t + 12).tick()
    assert [c.signer for c in run.acc.epoch_state.exited_clients] == [key(3)]


def run_ident(i: int) -> NodeIdentity:
    from tests.support.coordinator import ident

    return ident(i)


def test_checkpoint_rewrites() -> None:
    hub = Checkpoint(CheckpointKind.Hub, HubRepo("a/new", "rev"))
    gcs = Checkpoint(CheckpointKind.Gcs, GcsRepo("bucket", "pfx"))
    p2p = Checkpoint(CheckpointKind.P2P, HubRepo("a/old"))
    p2pgcs = Checkpoint(CheckpointKind.P2PGcs, GcsRepo("old"))
    old_hub = Checkpoint(CheckpointKind.Hub, HubRepo("a/old"))
    old_gcs = Checkpoint(CheckpointKind.Gcs, GcsRepo("old"))
    assert cl.rewrite_checkpoint(p2p, hub) == Checkpoint(CheckpointKind.P2P, HubRepo("a/new", "rev"))
    assert cl.rewrite_checkpoint(p2pgcs, gcs) == Checkpoint(CheckpointKind.P2PGcs, GcsRepo("bucket", "pfx"))
    assert cl.rewrite_checkpoint(old_hub, hub) == hub
    assert cl.rewrite_checkpoint(old_gcs, gcs) == gcs
    assert cl.rewrite_checkpoint(p2pgcs, hub) == Checkpoint(CheckpointKind.P2P, HubRepo("a/new", "rev"))
    assert cl.rewrite_checkpoint(p2p, gcs) == Checkpoint(CheckpointKind.P2PGcs, GcsRepo("bucket", "pfx"))
    assert cl.rewrite_checkpoint(old_hub, gcs) == old_hub  # ignored


def test_checkpoint_instruction_by_an_epoch_client() -> None:
    run = configured()
    _start_epoch(run)
    run.at(1004)._apply(cl.checkpoint, key(1), Checkpoint.hub("a/new"), 1004, 3)
    assert run.acc.model.checkpoint == Checkpoint.hub("a/new")
    run.join(3)  # registered, but not in this epoch
    with pytest.raises(cl.CoordinatorProgramError) as err:
        cl.checkpoint(run.acc, key(3), Checkpoint.hub("a/x"), 1004, 3)
    assert err.value.code == 6007


def test_new_epoch_without_old_peers_reverts_p2p_checkpoint() -> None:
    run = configured()
    _start_epoch(run)
    run.at(1008).tick()
    run.at(1018).tick()
    run.at(1020).tick()
    run.at(1025).tick()  # epoch ended with no witnesses: nobody survived
    assert run.acc.model.checkpoint.kind == CheckpointKind.P2P
    run.at(1026).join(3)
    run.join(4)
    run.at(1029).tick()
    assert run.state() == RunState.Warmup
    assert run.acc.model.checkpoint == Checkpoint.hub("org/model")


def test_simulate_tick() -> None:
    run = configured()
    assert cl.simulate_tick(run.acc, 1001) is None  # nothing to do
    _start_epoch(run)
    assert cl.simulate_tick(run.acc, 1004) is None
    after = cl.simulate_tick(run.acc, 1008)
    assert after is not None and after.run_state == RunState.RoundTrain
    run.pause(True)
    assert cl.simulate_tick(run.acc, 2000) is None  # halted


def test_three_finishers_share_the_rate() -> None:
    run = configured()
    run.at(1001).join(5)  # registered first but never selected again
    _start_epoch(run)
    run.at(1004).warmup_witness(5)
    run.warmup_witness(1)
    run.warmup_witness(2)
    assert run.state() == RunState.RoundTrain
    replace_acc(run, config=dataclasses.replace(CONFIG, min_clients=4))  # force an early end
    t = 1004
    run.at(t + 1).witness(5)
    run.witness(1)
    run.witness(2)
    run.at(t + 3).tick()
    assert run.state() == RunState.Cooldown
    run.at(t + 8).tick()
    assert [run.ledger(i).earned for i in (5, 1, 2)] == [333, 333, 333]


def _with_epoch(run: Run, clients: Sequence[EpochClient], exited: Sequence[EpochClient]) -> None:
    es = dataclasses.replace(run.acc.epoch_state, clients=tuple(clients), exited_clients=tuple(exited))
    rates = dataclasses.replace(run.acc.clients_state.current_epoch_rates, slashing_rate_per_client=7)
    cs = dataclasses.replace(run.acc.clients_state, current_epoch_rates=rates)
    replace_acc(run, epoch_state=es, clients_state=cs)


def test_reward_cursor_walk_follows_ledger_order() -> None:
    def client(i: int, state: ClientState = ClientState.Healthy) -> EpochClient:
        return EpochClient(key(i), key(100 + i), state)

    def epoch_end(finished: list[EpochClient], exited: list[EpochClient]) -> list[tuple[int, int]]:
        run = configured()
        for i in (1, 2, 3, 4):
            run.at(1001).join(i)
        _start_epoch(run)
        _with_epoch(run, finished, exited)
        replace_acc(run, config=dataclasses.replace(CONFIG, min_clients=5))
        run.at(1004).tick()  # EpochEnd(false) from Warmup: the reward pass runs
        return [(run.ledger(i).earned, run.ledger(i).slashed) for i in (1, 2, 3, 4)]

    # Same relative order as the ledger: both finishers paid, the ejected one slashed.
    assert epoch_end([client(2), client(4)], [client(3, ClientState.Ejected)]) == [
        (0, 0),
        (500, 0),
        (0, 7),
        (500, 0),
    ]
    # Out of order: the cursor waits for client 4 and never comes back to client 2.
    assert epoch_end([client(4), client(2)], []) == [(0, 0), (0, 0), (0, 0), (500, 0)]
    # The warmup tick moves a Dropped client to exited first: the one survivor takes the whole rate.
    assert epoch_end([client(1, ClientState.Dropped), client(2)], []) == [(0, 0), (1000, 0), (0, 0), (0, 0)]
