"""ClientProtocol against the pure coordinator logic: a simulated chain applies the actions it returns."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable

import pytest
from solders.pubkey import Pubkey

from psyche.chain import bloom
from psyche.chain import logic as cl
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.model import CoordinatorConfig
from psyche.chain.accounts.state import Bloom, ClientState, NodeIdentity, Round
from psyche.chain.logic.errors import CoordinatorErrorCode
from psyche.chain.round_view import current_round, round_assignments, round_batch_size
from psyche.client.actions import (
    Action,
    ApplyResults,
    Exit,
    PrepareModel,
    ReadVersion,
    SaveCheckpoint,
    Send,
    SendJoin,
    SendTick,
    SendWarmupWitness,
    SendWitness,
    Train,
    TrainOutcome,
    participant_hash,
)
from psyche.client.exchange import merkle_root
from psyche.client.protocol import ClientProtocol
from psyche.errors import ChainError
from psyche.localnet.demo_run import DEMO_DISTRO
from tests.support.coordinator import CONFIG, configured, key

START = 1000


class FixedRng(random.Random):
    """random() always answers ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class SimChain:
    """Applies the protocols' sends with the real coordinator logic and broadcasts every new state."""

    def __init__(self, n_clients: int, config: CoordinatorConfig = CONFIG, version: str = "test") -> None:
        self.run = configured(config)
        if version != "test":
            self.run.acc = dataclasses.replace(self.run.acc, client_version=version)
        self.clients = {i: ClientProtocol(key(i), bytes(key(100 + i)), "v1") for i in range(1, n_clients + 1)}
        self.actions: dict[int, list[Action]] = {i: [] for i in self.clients}
        self.trained: list[tuple[int, Train]] = []
        self.exits: dict[int, Exit] = {}
        self.errors: list[tuple[int, str]] = []
        self.started: set[int] = set()
        self.seen: dict[tuple[int, RunState], CoordinatorAccount] = {}  # first state of each (epoch, state)

    @property
    def acc(self) -> CoordinatorAccount:
        return self.run.acc

    def start(self, i: int, now: float) -> None:
        self.started.add(i)
        self._do(i, self.clients[i].start(self.acc, now), now)

    def _apply(self, i: int, sent: Send, now: float) -> None:
        me, slot, t = key(i), self.run.slot + 1, int(now)
        self.run.slot = slot
        if isinstance(sent, SendJoin):
            new = cl.join_run(self.acc, me, self._identity(i), t, slot)
        elif isinstance(sent, SendTick):
            new = cl.tick(self.acc, t, slot)
        elif isinstance(sent, SendWarmupWitness):
            new = cl.warmup_witness(self.acc, me, sent.proof, Bloom(), Bloom(), bytes(32), t, slot)
        elif isinstance(sent, SendWitness):
            new = cl.witness(
                self.acc,
                me,
                sent.proof,
                sent.participant_bloom,
                sent.broadcast_bloom,
                sent.broadcast_merkle,
                t,
                slot,
            )
        else:
            raise AssertionError(f"the simulated chain has no rule for {sent!r}")
        self.run.acc = new

    def _identity(self, i: int) -> NodeIdentity:
        return NodeIdentity(key(i), key(100 + i))

    def _do(self, i: int, actions: list[Action], now: float) -> None:
        self.actions[i] += actions
        for action in actions:
            if isinstance(action, Exit):
                self.exits[i] = action
            elif isinstance(action, SendJoin | SendTick | SendWarmupWitness | SendWitness):
                before = self.acc
                try:
                    self._apply(i, action, now)
                    error, code = None, None
                except ChainError as exc:
                    error, code = str(exc), getattr(exc, "code", None)
                    self.errors.append((i, error))
                self._do(i, self.clients[i].on_sent(action, error, code, now), now)
                if self.acc is not before:
                    self.broadcast(now)
            elif isinstance(action, PrepareModel):
                self._do(i, self.clients[i].on_prepared(action.epoch, None, now), now)
            elif isinstance(action, Train):
                self.trained.append((i, action))
                outcome = TrainOutcome(1.0 / (1 + len(self.trained)), 64, 100.0, bytes([i]) * 32)
                self._do(i, self.clients[i].on_trained(action.key, outcome, None, now), now)

    def start_all(self, now: float = START) -> None:
        for i in self.clients:
            self.start(i, now)

    def reached(self, epoch: int, state: RunState) -> CoordinatorAccount | None:
        return self.seen.get((epoch, state))

    def until(self, epoch: int, state: RunState) -> CoordinatorAccount:
        """Step from START until the run first shows ``state`` in ``epoch``; that account."""
        self.run_until(lambda: self.reached(epoch, state))
        acc = self.reached(epoch, state)
        assert acc is not None
        return acc

    def broadcast(self, now: float) -> None:
        self.seen.setdefault((self.acc.progress.epoch, self.acc.run_state), self.acc)
        for i, client in self.clients.items():
            if i in self.started and i not in self.exits:
                self._do(i, client.on_account(self.acc, now), now)

    def step(self, now: float) -> None:
        for i, client in self.clients.items():
            if i in self.started and i not in self.exits:
                self._do(i, client.on_timer(now), now)

    def run_until(self, done: Callable[[], object], start: float = START, limit: float = 600) -> float:
        now = start
        while not done() and now < start + limit:
            self.step(now)
            now += 0.5
        assert done(), f"stuck in {self.acc.run_state.display} at step {self.acc.progress.step}"
        return now


def short_config(total_steps: int = 3) -> CoordinatorConfig:
    return dataclasses.replace(CONFIG, total_steps=total_steps)


def test_two_clients_train_a_whole_run_and_both_earn_points() -> None:
    sim = SimChain(2, short_config(total_steps=3))
    sim.start_all()
    sim.run_until(lambda: len(sim.exits) == 2)

    assert {i: e.code for i, e in sim.exits.items()} == {1: 0, 2: 0}
    assert sim.acc.run_state == RunState.Finished
    assert sim.errors == []
    # Both were in the epoch and both got half of the epoch's 1000 points.
    assert [c.earned for c in sim.acc.clients_state.clients] == [500, 500]
    # Every client witnessed every round it was elected for (witness_nodes 0, 2 clients: both, every round).
    witnesses = {i: [a for a in acts if isinstance(a, SendWitness)] for i, acts in sim.actions.items()}
    assert len(witnesses[1]) == len(witnesses[2]) >= 2
    assert all(isinstance(a, SendWarmupWitness) for a in sim.actions[1] if isinstance(a, SendWarmupWitness))


def test_each_round_trains_every_sample_once_on_the_assigned_trainer() -> None:
    sim = SimChain(2, short_config(total_steps=3))
    seen_rounds: dict[tuple[int, int], list[tuple[int, Train]]] = {}
    expected: dict[tuple[int, int], dict[Pubkey, tuple[int, int]]] = {}
    original = sim.broadcast

    def watch(now: float) -> None:
        acc = sim.acc
        if acc.run_state == RunState.RoundTrain:
            rnd = current_round(acc)
            k = (acc.progress.epoch, rnd.height)
            expected[k] = {a.trainer: (a.start, a.end) for a in round_assignments(acc)}
            expected[k][Pubkey.default()] = (rnd.data_index, round_batch_size(acc, rnd))
        original(now)

    sim.broadcast = watch  # type: ignore[method-assign]  # the test watches every broadcast state
    sim.start_all()
    sim.run_until(lambda: len(sim.exits) == 2)
    for i, task in sim.trained:
        seen_rounds.setdefault(task.key, []).append((i, task))
    assert seen_rounds, "nothing trained"
    for k, tasks in seen_rounds.items():
        data_index, size = expected[k][Pubkey.default()]
        covered = sorted(idx for _, t in tasks for idx in t.indices)
        assert covered == list(range(data_index, data_index + size))
        for i, t in tasks:
            assert expected[k][key(i)] == (t.start, t.end)


def test_witness_blooms_attest_every_trainer_and_carry_the_own_commitment() -> None:
    sim = SimChain(2, short_config(total_steps=3))
    sim.start_all()
    sim.run_until(lambda: len(sim.exits) == 2)
    sent = [a for a in sim.actions[1] if isinstance(a, SendWitness)]
    first = sent[0]
    for i in (1, 2):
        assert bloom.bloom_contains(first.participant_bloom, participant_hash(key(i)))
    assert bloom.bloom_contains(first.broadcast_bloom, bytes([1]) * 32)
    assert first.broadcast_merkle == bytes(32)  # nothing from a previous round in the epoch's first round
    later = next(a for a in sent if a.key[1] == first.key[1] + 1)
    assert later.broadcast_merkle == merkle_root([bytes([1]) * 32])
    assert later.metadata.loss > 0


def test_joins_again_in_every_waiting_for_members_phase() -> None:
    sim = SimChain(2, short_config(total_steps=100))
    sim.start_all()
    sim.run_until(lambda: sim.reached(2, RunState.RoundTrain))
    joins = [a for a in sim.actions[1] if isinstance(a, SendJoin)]
    assert len(joins) == 3  # epochs 0, 1 and 2
    assert sim.errors == []


def test_version_mismatch_at_start_exits_10_and_test_disables_the_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    acc = configured().acc
    mismatched = dataclasses.replace(acc, client_version="v2")
    assert ClientProtocol(key(1), bytes(32), "v1").start(mismatched, START) == [Exit(10, "version mismatch")]
    assert "Version mismatch detected" in caplog.text
    # "test" on chain: no check; CLIENT_VERSION unset: a warning and no check.
    assert ClientProtocol(key(1), bytes(32), "v1").start(acc, START) == [SendJoin()]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert ClientProtocol(key(1), bytes(32), None).start(mismatched, START) == [SendJoin()]
    assert "Client version env variable was not set - continuing without validating..." in caplog.text


def test_paused_run_waits_and_polls_the_version() -> None:
    run = configured()
    run.pause(True)
    paused = dataclasses.replace(run.acc, client_version="v1")
    p = ClientProtocol(key(1), bytes(32), "v1")
    assert p.start(paused, START) == []
    assert p.on_timer(START) == [ReadVersion()]
    assert p.on_timer(START + 0.5) == []  # at most every VERSION_POLL_S
    assert p.on_version("v1") == []
    assert p.on_timer(START + 2.5) == [ReadVersion()]
    assert p.on_version("v2") == [Exit(10, "the run's client_version changed")]


def test_a_version_change_seen_in_an_update_exits_10() -> None:
    acc = dataclasses.replace(configured().acc, client_version="v1")
    p = ClientProtocol(key(1), bytes(32), "v1")
    p.start(acc, START)
    bumped = dataclasses.replace(acc, client_version="v2", nonce=acc.nonce + 1)
    assert p.on_account(bumped, START) == [Exit(10, "the run's client_version changed")]


def test_finished_run_exits_0() -> None:
    acc = dataclasses.replace(configured().acc, run_state=RunState.Finished)
    assert ClientProtocol(key(1), bytes(32), None).start(acc, START) == [Exit(0, "run finished")]


def test_updates_are_deduplicated_by_nonce() -> None:
    acc = configured().acc
    p = ClientProtocol(key(1), bytes(32), None)
    assert p.start(acc, START) == [SendJoin()]
    older = dataclasses.replace(acc, run_state=RunState.Finished)
    assert p.on_account(older, START) == []  # same nonce: ignored, so no exit
    assert p.acc is acc


def test_join_is_retried_after_a_transport_failure_but_not_after_a_program_refusal() -> None:
    acc = configured().acc
    p = ClientProtocol(key(1), bytes(32), None)
    assert p.start(acc, START) == [SendJoin()]
    assert p.on_sent(SendJoin(), "all RPC endpoints failed", None, START) == []
    assert p.on_timer(START + 1) == []
    assert p.on_timer(START + 5) == [SendJoin()]
    refused = p.on_sent(SendJoin(), "join_run failed [NotAuthorized]", 2003, START + 6)
    assert refused == []
    assert p.on_timer(START + 60) == []


def test_already_pending_client_does_not_join_again() -> None:
    run = configured()
    run.join(1)
    p = ClientProtocol(key(1), bytes(key(101)), None)
    assert p.start(run.acc, START) == []


def test_client_not_selected_waits_and_joins_next_epoch(caplog: pytest.LogCaptureFixture) -> None:
    config = dataclasses.replace(
        short_config(total_steps=100), init_min_clients=1, min_clients=1, witness_nodes=1
    )
    sim = SimChain(2, config)
    sim.start(1, START)
    now = sim.run_until(lambda: sim.reached(0, RunState.RoundTrain))
    training = sim.reached(0, RunState.RoundTrain)
    assert training is not None
    late = ClientProtocol(key(2), bytes(key(102)), None)
    with caplog.at_level(logging.INFO):
        assert late.start(training, now) == []
        assert late.on_timer(now) == []  # it may still help tick, but here nothing is due
    assert "Waiting for the current epoch to end before joining" in caplog.text
    assert (
        "not a client of epoch 0: never registered (join_run did not land); waiting for the next epoch"
        in (caplog.text)
    )
    # In the simulated run the late client joins at the next WaitingForMembers and is selected.
    sim.start(2, now)
    sim.run_until(lambda: sim.reached(1, RunState.RoundTrain), now)
    training = sim.reached(1, RunState.RoundTrain)
    assert training is not None
    assert [c.signer for c in training.epoch_state.clients] == [key(1), key(2)]


def test_unhealthy_client_stops_acting_for_the_epoch(caplog: pytest.LogCaptureFixture) -> None:
    sim = SimChain(2, short_config(total_steps=100))
    sim.start_all()
    training = sim.until(0, RunState.RoundTrain)
    es = training.epoch_state
    dropped = dataclasses.replace(es.clients[0], state=ClientState.Dropped)
    acc = dataclasses.replace(
        training, epoch_state=dataclasses.replace(es, clients=(dropped, *es.clients[1:]))
    )
    who = next(i for i in sim.clients if key(i) == dropped.signer)
    p = ClientProtocol(key(who), bytes(key(100 + who)), None)
    with caplog.at_level(logging.INFO):
        assert p.start(acc, START + 200) == []
    assert "Coordinator says we're Dropped; waiting for the next epoch" in caplog.text


def test_tick_is_sent_with_probability_two_over_n_above_two_clients() -> None:
    config = dataclasses.replace(short_config(total_steps=100), init_min_clients=3, min_clients=3)
    sim = SimChain(3, config)
    sim.start_all()
    acc = sim.until(0, RunState.Warmup)
    late = START + 1000  # the warmup has long timed out: a tick would move the run
    for value, expect_tick in ((0.9, False), (0.5, True)):
        p = ClientProtocol(key(1), bytes(key(101)), None, rng=FixedRng(value))
        p.start(acc, late)
        p.on_prepared(acc.progress.epoch, None, late)
        assert (SendTick() in p.on_timer(late)) is expect_tick


def test_tick_waits_for_the_previous_one_and_the_minimum_interval() -> None:
    sim = SimChain(2, short_config(total_steps=100))
    sim.start_all()
    warmup = sim.until(0, RunState.Warmup)
    p = ClientProtocol(key(1), bytes(key(101)), None)
    p.start(warmup, START + 500)
    assert SendTick() in p.on_timer(START + 500)
    assert SendTick() not in p.on_timer(START + 502)  # still in flight
    p.on_sent(SendTick(), None, None, START + 502)
    assert SendTick() in p.on_timer(START + 502)


def test_witness_is_resent_after_a_transport_failure_only() -> None:
    sim = SimChain(2, short_config(total_steps=100))
    sim.start_all()
    training = sim.until(0, RunState.RoundTrain)
    p = ClientProtocol(key(1), bytes(key(101)), None)
    first = p.start(training, START + 100)
    assert PrepareModel(0) in first
    after_prepare = p.on_prepared(0, None, START + 100)
    train = next(a for a in after_prepare if isinstance(a, Train))
    actions = p.on_trained(train.key, TrainOutcome(2.0, 10, 1.0, bytes(32)), None, START + 101)
    witness = next(a for a in actions if isinstance(a, SendWitness))
    assert p.on_sent(witness, "timed out", None, START + 102) == [witness]
    refused = CoordinatorErrorCode.CoordinatorErrorDuplicateWitness.code
    assert p.on_sent(witness, "duplicate", refused, START + 103) == []


def test_training_failure_exits_1_and_cooldown_saves_a_checkpoint() -> None:
    sim = SimChain(2, short_config(total_steps=100))
    sim.start_all()
    sim.run_until(lambda: sim.reached(0, RunState.Cooldown))
    assert any(isinstance(a, SaveCheckpoint) for a in sim.actions[1])
    p = ClientProtocol(key(1), bytes(key(101)), None)
    assert p.on_trained((0, 0), None, "DataError: boom", START) == [
        Exit(1, "training failed: DataError: boom")
    ]


def test_finished_seen_without_its_cooldown_still_saves_the_checkpoint() -> None:
    sim = SimChain(2, short_config(total_steps=100))
    sim.start_all()
    sim.run_until(lambda: sim.reached(0, RunState.RoundWitness))
    p = sim.clients[1]
    assert p.acc is not None
    finished = dataclasses.replace(p.acc, run_state=RunState.Finished, nonce=p.acc.nonce + 1)
    actions = p.on_account(finished, START + 300)
    assert actions == [SaveCheckpoint(0, finished.progress.step), Exit(0, "run finished")]


class AllVerified:
    """A SharingView that verified every batch of every round and saw every peer's model (DisTrO runs)."""

    def __init__(self, sim: SimChain) -> None:
        self.sim = sim

    def _round(self, key: tuple[int, int]) -> Round | None:
        return next(
            (r for r in self.sim.acc.epoch_state.rounds if r.height == key[1] and r.clients_len), None
        )

    def verified_batches(self, key: tuple[int, int]) -> set[tuple[int, int]]:
        rnd = self._round(key)
        return set() if rnd is None else {(a.start, a.end) for a in round_assignments(self.sim.acc, rnd)}

    def witness_content(self, key: tuple[int, int], seed: bytes) -> tuple[Bloom, Bloom, bytes]:
        rnd = self._round(key)
        trainers = [] if rnd is None else [a.trainer for a in round_assignments(self.sim.acc, rnd)]
        participants = bloom.make_bloom(b"participant" + seed, [participant_hash(t) for t in trainers])
        return participants, bloom.make_bloom(b"broadcast" + seed, []), merkle_root([])

    def warmup_ready(self, epoch: int) -> set[bytes]:
        return {bytes(c.p2p_identity) for c in self.sim.acc.epoch_state.clients}


class DistroSim(SimChain):
    """SimChain on a DisTrO run: applies finish at once, except while ``holding`` says to keep them back."""

    def __init__(self, n_clients: int, config: CoordinatorConfig) -> None:
        super().__init__(n_clients, config)
        self.run.acc = dataclasses.replace(
            self.acc, model=dataclasses.replace(self.acc.model, optimizer=DEMO_DISTRO)
        )
        for client in self.clients.values():
            client.sharing = AllVerified(self)
        self.holding: Callable[[], bool] = lambda: False
        self.witnesses_lost: Callable[[], bool] = lambda: False
        self.held: list[tuple[int, ApplyResults]] = []
        self.timeline: list[tuple[int, Action, RunState]] = []  # (client, action, the chain's state then)

    def _do(self, i: int, actions: list[Action], now: float) -> None:
        for action in actions:
            self.timeline.append((i, action, self.acc.run_state))
        super()._do(i, actions, now)
        for action in actions:
            if isinstance(action, ApplyResults):
                if self.holding():
                    self.held.append((i, action))
                else:
                    self._do(i, self.clients[i].on_applied(action.source, None, now), now)

    def _apply(self, i: int, sent: Send, now: float) -> None:
        if isinstance(sent, SendWitness) and self.witnesses_lost():
            return  # sent, never landed
        super()._apply(i, sent, now)

    def release(self, now: float) -> None:
        held, self.held = self.held, []
        for i, action in held:
            self._do(i, self.clients[i].on_applied(action.source, None, now), now)


def test_a_distro_epoch_the_chain_leaves_before_its_last_applies_is_still_applied_and_saved() -> None:
    # A loaded machine: the last rounds' applies outlast cooldown_time, and the chain is already waiting for
    # the next epoch's members when they finish. The client must still apply every witnessed round, save
    # the epoch's checkpoint, and only then prepare the next epoch (on that model).
    sim = DistroSim(2, dataclasses.replace(CONFIG, total_steps=100, epoch_time=30))
    sim.holding = lambda: sim.acc.run_state == RunState.Cooldown
    sim.start_all()
    sim.run_until(lambda: sim.held)
    cooldown = sim.acc
    assert cooldown.run_state == RunState.Cooldown
    last = current_round(cooldown).height - 1
    sim.run_until(lambda: sim.acc.run_state != RunState.Cooldown, start=START + 100)
    assert sim.acc.progress.epoch == 1
    sim.release(START + 200)
    sim.run_until(lambda: sim.reached(1, RunState.RoundTrain), start=START + 200)
    for i in sim.clients:
        mine = [(a, state) for c, a, state in sim.timeline if c == i]
        applied = [a.source for a, _ in mine if isinstance(a, ApplyResults) and a.source[0] == 0]
        assert applied == [(0, h) for h in range(last + 1)], f"client {i} applied {applied}"
        order = [a for a, _ in mine if isinstance(a, SaveCheckpoint | PrepareModel)]
        saved = order.index(SaveCheckpoint(0, cooldown.progress.step))
        assert saved < order.index(PrepareModel(1)), f"client {i} prepared epoch 1 before saving epoch 0"
        late = [a for a, state in mine if isinstance(a, ApplyResults) and state != RunState.Cooldown]
        assert late, f"client {i}: every apply ran within Cooldown; the test did not hold any back"


def test_a_distro_epoch_nobody_witnessed_to_its_end_still_applies_and_saves_its_model() -> None:
    # A round without a single witness ends the epoch with every client Withdrawn. Their Cooldown still
    # applies what was witnessed and saves the model: the next epoch's joiners fetch it from them.
    sim = DistroSim(2, dataclasses.replace(CONFIG, total_steps=100, epoch_time=600))
    sim.start_all()
    sim.run_until(lambda: current_round(sim.acc).height >= 3)
    sim.witnesses_lost = lambda: True
    cooldown = sim.until(0, RunState.Cooldown)
    assert all(c.state == ClientState.Withdrawn for c in cooldown.epoch_state.clients)
    last = current_round(cooldown).height - 1
    sim.run_until(lambda: sim.acc.progress.epoch == 1, start=START + 400)
    for i in sim.clients:
        mine = [a for c, a, _ in sim.timeline if c == i]
        applied = [a.source for a in mine if isinstance(a, ApplyResults)]
        assert applied == [(0, h) for h in range(last + 1)], f"client {i} applied {applied}"
        assert SaveCheckpoint(0, cooldown.progress.step) in mine, f"client {i} saved nothing"


def test_a_distro_client_restarted_during_a_cooldown_takes_part_in_the_next_epoch() -> None:
    # Its first account is a Cooldown of an epoch it is still a client of, with no model loaded: there is
    # nothing of that epoch for it to finish, and the next epoch must not wait for it.
    sim = DistroSim(2, dataclasses.replace(CONFIG, total_steps=100, epoch_time=30))
    sim.start_all()
    cooldown = sim.until(0, RunState.Cooldown)
    restarted = ClientProtocol(key(1), bytes(key(101)), "v1", sharing=AllVerified(sim))
    sim.clients[1] = restarted
    sim.actions[1] = []
    sim.timeline = []
    sim.start(1, START + 200)
    assert restarted.acc is cooldown
    sim.run_until(lambda: sim.reached(1, RunState.Cooldown), start=START + 200)
    mine = [a for c, a, _ in sim.timeline if c == 1]
    assert PrepareModel(1) in mine, mine
    assert any(isinstance(a, Train) and a.key[0] == 1 for a in mine), "the restarted client trained nothing"
