"""The client's protocol state machine: coordinator states and timer ticks in, chain and trainer actions out.

Pure: no I/O, no threads, no clock of its own. The runner feeds it events (``start``, ``on_account``,
``on_timer``, ``on_prepared``, ``on_trained``, ``on_sent``, ``on_version``) with the current unix time and
executes the actions it returns. See docs/client-protocol.md for the rules and our simplifications.
"""

from __future__ import annotations

import logging
import random
import struct
from dataclasses import dataclass, field
from typing import Literal

from solders.pubkey import Pubkey

from psyche.chain import bloom, round_view
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.optimizer import Distro
from psyche.chain.accounts.state import ClientState, WitnessProof
from psyche.chain.instructions.args import WitnessMetadata
from psyche.chain.logic import CoordinatorErrorCode, simulate_tick
from psyche.client import exchange
from psyche.client.actions import (
    Action,
    AnnounceWarmup,
    ApplyResults,
    Exit,
    PrepareModel,
    ReadVersion,
    RoundKey,
    SaveCheckpoint,
    Send,
    SendHealthCheck,
    SendJoin,
    SendTick,
    SendWarmupWitness,
    SendWitness,
    SharingView,
    Train,
    TrainOutcome,
    participant_hash,
    send_name,
)
from psyche.client.exchange import merkle_root

log = logging.getLogger("psyche.client")

TIMER_INTERVAL = 0.5  # the reference's tick-assistance and witness cadence (contract 5.2)
JOIN_RETRY_S = 5.0
TICK_MIN_INTERVAL_S = 1.0
VERSION_POLL_S = 2.0
EXIT_FINISHED, EXIT_FAILURE, EXIT_VERSION_MISMATCH = 0, 1, 10
TEST_VERSION = "test"  # an on-chain client_version of "test" disables the version check


def _bloom_seed(kind: bytes, signer: Pubkey, key: RoundKey) -> bytes:
    return kind + bytes(signer) + struct.pack("<QQ", *key)


@dataclass(slots=True)
class _Epoch:
    """What we did in one epoch (reset when the epoch number changes)."""

    number: int
    prepared: bool = False
    preparing: bool = False
    warmup_witness: Literal["no", "sending", "sent"] = "no"
    trained: dict[RoundKey, TrainOutcome | None] = field(default_factory=dict)  # None: failed
    training: RoundKey | None = None
    witnessed: set[RoundKey] = field(default_factory=set)
    checkpointed: bool = False
    told: set[str] = field(default_factory=set)  # one-time log lines
    # DisTrO runs (results shared peer to peer):
    warmup_announced: bool = False
    applied_through: int = -1  # the last round height whose agreed results we applied
    applying: int | None = None
    health_checked: set[int] = field(default_factory=set)  # round heights we sent health checks in
    left: str | None = None  # why we stopped taking part in this epoch (a result we could not apply)
    # Set at Cooldown: the last round whose results we apply, and the step the epoch's checkpoint is saved at.
    tail: tuple[int, int] | None = None


class ClientProtocol:
    """Follow one run as the wallet ``signer`` with P2P key ``p2p_identity``; see the module docstring."""

    def __init__(
        self,
        signer: Pubkey,
        p2p_identity: bytes,
        client_version: str | None,
        *,
        rng: random.Random | None = None,
        tick_min_interval: float = TICK_MIN_INTERVAL_S,
        sharing: SharingView | None = None,
    ) -> None:
        self.signer = signer
        self.p2p_identity = p2p_identity
        self.client_version = client_version
        self.rng = rng or random.Random()
        self.tick_min_interval = tick_min_interval
        self.sharing = sharing
        self.acc: CoordinatorAccount | None = None
        self.startup_version: str | None = None
        self.joined_phase = False  # join_run sent (or not needed) in the current WaitingForMembers phase
        self.join_inflight = False
        self.join_retry_at = 0.0
        self.tick_inflight = False
        self.last_tick_at = float("-inf")
        self.last_version_read = float("-inf")
        self.epoch: _Epoch | None = None
        # The last epoch while its final applies and checkpoint still run after the chain moved past its
        # Cooldown (a short cooldown_time on a loaded machine): nothing of the next epoch runs before.
        self.finishing: _Epoch | None = None
        self.halted_told: RunState | None = None

    # --------------------------------------------------------------------------------- events

    def start(self, acc: CoordinatorAccount, now: float) -> list[Action]:
        """The first state read over RPC: the version check, then whatever the state asks for."""
        self.startup_version = acc.client_version
        if self.client_version is None:
            log.warning("Client version env variable was not set - continuing without validating...")
        elif self.client_version != acc.client_version and acc.client_version != TEST_VERSION:
            log.error(
                "Version mismatch detected... client %r, run %r", self.client_version, acc.client_version
            )
            return [Exit(EXIT_VERSION_MISMATCH, "version mismatch")]
        if acc.run_state != RunState.WaitingForMembers and not acc.run_state.halted:
            log.info("Waiting for the current epoch to end before joining")
        self.acc = acc
        return self._drive(now)

    def on_account(self, acc: CoordinatorAccount, now: float) -> list[Action]:
        """A new account state (from WebSocket or polling); older or repeated nonces are ignored."""
        if self.acc is None:
            return self.start(acc, now)
        if self.acc is not None and acc.nonce <= self.acc.nonce:
            return []
        previous, self.acc = self.acc, acc
        if previous is not None and previous.run_state != acc.run_state:
            log.info(
                "run state: %s -> %s (step %d)",
                previous.run_state.display,
                acc.run_state.display,
                acc.progress.step,
            )
        if acc.client_version != self.startup_version:
            return self._version_changed(acc.client_version)
        return self._drive(now)

    def on_timer(self, now: float) -> list[Action]:
        """Every TIMER_INTERVAL: tick assistance, join retries, the halted-run version poll."""
        acc = self.acc
        if acc is None:
            return []
        actions = self._drive(now)
        if acc.run_state in (RunState.Paused, RunState.Uninitialized):
            if now - self.last_version_read >= VERSION_POLL_S:
                self.last_version_read = now
                actions.append(ReadVersion())
            return actions
        if self.tick_inflight or now - self.last_tick_at < self.tick_min_interval:
            return actions
        if simulate_tick(acc, int(now)) is None:
            return actions
        n = len(acc.epoch_state.clients)
        # Contract 5.2: with more than two epoch clients each sends with p = 2/n, so about two do.
        if n <= 2 or self.rng.random() < 2 / n:
            self.tick_inflight = True
            self.last_tick_at = now
            actions.append(SendTick())
        return actions

    def on_version(self, version: str) -> list[Action]:
        """The client_version read by ReadVersion."""
        return [] if version == self.startup_version else self._version_changed(version)

    def on_prepared(self, epoch: int, error: str | None, now: float) -> list[Action]:
        """PrepareModel finished; an error is unrecoverable (no model, no training)."""
        ep = self.epoch
        if ep is not None and ep.number == epoch:
            ep.preparing = False
            ep.prepared = error is None
        if error is not None:
            log.error("model preparation failed: %s", error)
            return [Exit(EXIT_FAILURE, f"model preparation failed: {error}")]
        return self._drive(now)

    def on_trained(
        self, key: RoundKey, outcome: TrainOutcome | None, error: str | None, now: float
    ) -> list[Action]:
        """Train finished (``outcome``) or failed (``error``: unrecoverable, the entrypoint restarts us)."""
        ep = self.epoch
        if ep is not None and ep.number == key[0]:
            ep.training = None
            ep.trained[key] = outcome
        if error is not None:
            log.error("training failed at round %s: %s", key, error)
            return [Exit(EXIT_FAILURE, f"training failed: {error}")]
        return self._drive(now)

    def on_applied(self, source: RoundKey, error: str | None, now: float) -> list[Action]:
        """ApplyResults finished; an error (a result we cannot have) takes us out of this epoch only."""
        ep = next((e for e in (self.finishing, self.epoch) if e is not None and e.number == source[0]), None)
        if ep is None:
            return self._drive(now)
        ep.applying = None
        if error is None:
            ep.applied_through = source[1]
            return self._drive(now)
        ep.left = error
        log.error(
            "leaving epoch %d: %s; our model is no longer our peers', so we rejoin at the next epoch",
            ep.number,
            error,
        )
        if ep is self.finishing:  # the epoch we leave is already over: go on with the next one
            self.finishing = None
            return self._drive(now)
        return []

    def on_sharing(self, now: float) -> list[Action]:
        """The result exchange changed (a payload verified, a peer's model ready)."""
        return [] if self.acc is None else self._drive(now)

    def on_sent(self, sent: Send, error: str | None, program_error: int | None, now: float) -> list[Action]:
        """A send finished; ``error`` is its one-line failure (program error named) or None."""
        if isinstance(sent, SendTick):
            self.tick_inflight = False
        elif isinstance(sent, SendJoin):
            self.join_inflight = False
            if error is None:
                self.joined_phase = True
                log.info("joined the run for the next epoch")
            elif program_error is not None:
                # A program refusal (not authorized, full, ...) will not change by retrying in this phase.
                self.joined_phase = True
                log.error("join_run refused: %s; waiting for the next epoch", error)
            else:
                self.join_retry_at = now + JOIN_RETRY_S
                log.warning("join_run failed: %s; retrying in %gs", error, JOIN_RETRY_S)
            return self._drive(now)
        elif isinstance(sent, SendWarmupWitness):
            if self.epoch is not None and self.epoch.number == sent.epoch:
                # Once per epoch, success or not: the warmup timeout starts the round anyway.
                self.epoch.warmup_witness = "sent"
        elif error is not None and program_error is None and self.epoch is not None:
            # Not an answer from the program (RPC down, timeout): the next timer may send it again.
            self.epoch.witnessed.discard(sent.key)
        if error is not None:
            halted = program_error == CoordinatorErrorCode.CoordinatorErrorHalted.code
            # Every witness reports the same unhealthy trainer; after the first lands the others may fail.
            quiet = halted or (isinstance(sent, SendHealthCheck) and program_error is not None)
            log.log(logging.DEBUG if quiet else logging.WARNING, "%s failed: %s", send_name(sent), error)
        return self._drive(now)

    # --------------------------------------------------------------------------------- the rules

    def _version_changed(self, version: str) -> list[Action]:
        log.error(
            "Version mismatch detected... the run's client_version changed from %r to %r",
            self.startup_version,
            version,
        )
        return [Exit(EXIT_VERSION_MISMATCH, "the run's client_version changed")]

    def _tell(self, ep: _Epoch, what: str, message: str, *args: object) -> None:
        if what not in ep.told:
            ep.told.add(what)
            log.info(message, *args)

    def _shares(self, acc: CoordinatorAccount) -> bool:
        """Whether results travel peer to peer in this run (DisTrO); AdamW clients train on their own."""
        return self.sharing is not None and isinstance(acc.model.optimizer, Distro)

    def _drive(self, now: float) -> list[Action]:
        acc = self.acc
        assert acc is not None
        state = acc.run_state
        if state != RunState.WaitingForMembers:
            self.joined_phase = False
            self.join_retry_at = 0.0
        if state == RunState.Finished:
            log.info("the run is finished")
            ep = self.epoch
            if ep is not None and any(ep.trained.values()) and not ep.checkpointed:
                # The Cooldown that would have saved it went by between two updates we saw.
                ep.checkpointed = True
                return [SaveCheckpoint(ep.number, acc.progress.step), Exit(EXIT_FINISHED, "run finished")]
            return [Exit(EXIT_FINISHED, "run finished")]
        if state.halted:
            if self.halted_told != state:
                self.halted_told = state
                log.info("the run is %s: waiting", state.display)
            return []
        self.halted_told = None
        ep = self.epoch
        if ep is not None and ep.number < acc.progress.epoch and self._unfinished(ep):
            self.finishing = ep  # the chain left it before its last applies and checkpoint ran
        if state == RunState.WaitingForMembers:
            return self._finish_last_epoch(acc) + self._join(acc, now)
        if ep is None or ep.number != acc.progress.epoch:
            ep = self.epoch = _Epoch(acc.progress.epoch)
        if self.finishing is not None:
            return self._finish_last_epoch(acc)
        me = round_view.client_index(acc, self.signer)
        if me is None:
            self._tell(
                ep,
                "absent",
                "not a client of epoch %d: %s; waiting for the next epoch",
                ep.number,
                self._absence_reason(acc),
            )
            return []
        mine = acc.epoch_state.clients[me]
        if ep.left is not None:
            return []
        # Withdrawn is the whole epoch's fate, not ours (a round nobody witnessed, or a pause): its Cooldown
        # still applies what was witnessed and saves the model, which the next epoch's joiners fetch from us.
        withdrawn_at_cooldown = mine.state == ClientState.Withdrawn and state == RunState.Cooldown
        if mine.state != ClientState.Healthy:
            self._tell(
                ep, "unhealthy", "Coordinator says we're %s; waiting for the next epoch", mine.state.name
            )
            if not withdrawn_at_cooldown:
                return []
        actions: list[Action] = []
        if not ep.prepared and not ep.preparing and state != RunState.Cooldown:
            ep.preparing = True
            actions.append(PrepareModel(ep.number))
        if state == RunState.Warmup:
            if ep.prepared and self._shares(acc):
                actions += self._announce_warmup(acc, ep)
            if ep.prepared and ep.warmup_witness == "no" and self._peers_ready(acc, ep):
                ep.warmup_witness = "sending"
                # Only proof.index matters to warmup_witness (duplicate detection); there is no committee yet.
                actions.append(
                    SendWarmupWitness(ep.number, WitnessProof(position=me, index=me, witness=True))
                )
        elif state == RunState.Cooldown:
            if self._shares(acc) and ep.tail is None and ep.prepared:
                # Every round whose next round was witnessed is applied before the epoch's model is saved.
                ep.tail = (round_view.current_round(acc).height - 1, acc.progress.step)
            if ep.tail is not None:
                actions += self._finish_epoch(acc, ep)
            elif any(ep.trained.values()) and not ep.checkpointed:
                ep.checkpointed = True
                actions.append(SaveCheckpoint(ep.number, acc.progress.step))
        else:
            actions += self._round(acc, ep)
        return actions

    @staticmethod
    def _unfinished(ep: _Epoch) -> bool:
        """Whether ``ep`` reached its Cooldown with its model, its last applies or checkpoint still to come.

        A client that first saw the epoch at its Cooldown (restarted, no model loaded) has nothing to finish.
        """
        return ep.tail is not None and ep.prepared and not ep.checkpointed and ep.left is None

    def _finish_epoch(self, acc: CoordinatorAccount, ep: _Epoch) -> list[Action]:
        """The next apply of ``ep``'s last rounds ([] while one runs), then its checkpoint (once)."""
        assert ep.tail is not None
        through, step = ep.tail
        pending = self._apply_up_to(acc, ep, through)
        if pending is not None:
            return pending
        if ep.checkpointed:
            return []
        ep.checkpointed = True
        return [SaveCheckpoint(ep.number, step)] if any(ep.trained.values()) else []

    def _finish_last_epoch(self, acc: CoordinatorAccount) -> list[Action]:
        """Go on with the epoch the chain has left (``finishing``) until its last rounds are applied and its
        model saved; upstream's clients likewise finish their cooldown work before they train on the next
        epoch's model."""
        ep = self.finishing
        if ep is None:
            return []
        actions = self._finish_epoch(acc, ep)
        if not self._unfinished(ep):
            self.finishing = None
        return actions

    def _absence_reason(self, acc: CoordinatorAccount) -> str:
        for c in acc.epoch_state.exited_clients:
            if c.signer == self.signer:
                return f"removed as {c.state.name}"
        if not any(c.signer == self.signer for c in acc.clients_state.clients):
            return "never registered (join_run did not land)"
        return "not selected (joined after the epoch started, or no room)"

    def _join(self, acc: CoordinatorAccount, now: float) -> list[Action]:
        if self.joined_phase or self.join_inflight or now < self.join_retry_at:
            return []
        cs = acc.clients_state
        entry = next((c for c in cs.clients if c.signer == self.signer), None)
        if (
            entry is not None
            and entry.active == cs.next_active
            and bytes(entry.p2p_identity) == self.p2p_identity
        ):
            self.joined_phase = True  # already pending for this selection (e.g. we restarted)
            return []
        self.join_inflight = True
        return [SendJoin()]

    def _announce_warmup(self, acc: CoordinatorAccount, ep: _Epoch) -> list[Action]:
        if ep.warmup_announced:
            return []
        ep.warmup_announced = True
        return [AnnounceWarmup(ep.number)]

    def _peers_ready(self, acc: CoordinatorAccount, ep: _Epoch) -> bool:
        """DisTrO runs: the warmup witness waits for every epoch client's model (a joiner fetching it from
        peers would otherwise miss round 0 and be dropped); the chain's warmup timeout bounds the wait."""
        if not self._shares(acc):
            return True
        assert self.sharing is not None
        expected = {bytes(c.p2p_identity) for c in acc.epoch_state.clients}
        missing = expected - self.sharing.warmup_ready(ep.number)
        if missing:
            self._tell(ep, "warmup-wait", "waiting for %d peer(s) to load the model", len(missing))
        return not missing

    def _apply_up_to(self, acc: CoordinatorAccount, ep: _Epoch, last: int) -> list[Action] | None:
        """ApplyResults for the next round <= ``last`` not yet applied ([] while one is running), or None
        when everything up to ``last`` is applied."""
        if ep.applied_through >= last:
            return None
        if not ep.prepared or ep.applying is not None:
            return []
        ep.applying = ep.applied_through + 1
        return [ApplyResults((ep.number, ep.applying))]

    def _health_checks(self, acc: CoordinatorAccount, ep: _Epoch, key: RoundKey) -> list[Action]:
        """From round 2, report the previous round's trainers that too few of its witnesses saw (once per
        round; only while rounds train, since the apply-only rounds at an epoch's end attest nothing).
        ``exchange.health_checks`` leaves it to the previous round's witnesses, as upstream."""
        if key[1] < 2 or key[1] in ep.health_checked or acc.epoch_state.last_step != 0:
            return []
        ep.health_checked.add(key[1])
        checks = exchange.health_checks(acc, self.signer)
        for check in checks:
            log.info(
                "round %d: reporting %s as unhealthy (too few witnesses saw it)", key[1], check.accused.signer
            )
        return [SendHealthCheck(key, c.accused, c.committee, c.position, c.index) for c in checks]

    def _round(self, acc: CoordinatorAccount, ep: _Epoch) -> list[Action]:
        rnd = round_view.current_round(acc)
        key: RoundKey = (ep.number, rnd.height)
        actions: list[Action] = []
        shares = self._shares(acc)
        applied = True
        if shares:
            actions += self._health_checks(acc, ep, key)
            # Results of round h are downloaded during h+1 and applied at the start of h+2 (spec 3).
            pending = self._apply_up_to(acc, ep, rnd.height - 2)
            if pending is not None:
                actions += pending
                applied = False
        # Contract 5.3: once last_step is set the remaining rounds only apply results; nothing trains.
        assignment = (
            round_view.assignment_for(acc, self.signer, rnd) if acc.epoch_state.last_step == 0 else None
        )
        training = assignment is not None and acc.run_state == RunState.RoundTrain
        if (
            assignment is not None
            and training
            and applied
            and ep.prepared
            and key not in ep.trained
            and ep.training is None
        ):
            ep.training = key
            actions.append(Train(key, acc.progress.step, assignment.start, assignment.end))
        if key in ep.witnessed:
            return actions
        # Opportunistic witness once our own result is in (or at once when we train nothing this round);
        # at RoundWitness whatever we have (contract 5.3).
        if training and key not in ep.trained:
            return actions
        if shares and not ep.prepared:
            # Without our model we verified nothing: empty blooms from us would count every trainer as
            # unseen, and with witness_nodes = 0 the quorum is every witness: healthy peers would be dropped.
            return actions
        if shares and acc.run_state == RunState.RoundTrain and not self._previous_round_verified(acc, ep):
            return actions
        ep.witnessed.add(key)
        proof = round_view.witness_proof(acc, self.signer, rnd)
        if proof is None or not proof.witness:
            self._tell(ep, f"not-witness-{key}", "not a witness of round %d", rnd.height)
            return actions
        actions.append(self._witness(acc, ep, key, proof))
        return actions

    def _previous_round_verified(self, acc: CoordinatorAccount, ep: _Epoch) -> bool:
        """Whether we verified a payload for every batch of the previous round (what a DisTrO witness
        attests); until then it waits, at most until RoundWitness starts."""
        assert self.sharing is not None
        previous = round_view.previous_round(acc)
        if previous is None:
            return True
        es = acc.epoch_state
        # last_step is set at the end of the last training round k, to (start_step + k + 1) + 2: the rounds
        # after k only apply, and a witness has nothing of theirs to wait for.
        if es.last_step != 0 and es.start_step + previous.height > es.last_step - 3:
            return True
        expected = {(a.start, a.end) for a in round_view.round_assignments(acc, previous)}
        return expected <= self.sharing.verified_batches((ep.number, previous.height))

    def _witness(
        self, acc: CoordinatorAccount, ep: _Epoch, key: RoundKey, proof: WitnessProof
    ) -> SendWitness:
        outcome = ep.trained.get(key)
        metadata = WitnessMetadata(
            step=acc.progress.step,
            tokens_per_sec=outcome.tokens_per_second if outcome else 0.0,
            loss=outcome.loss if outcome else 0.0,
            efficiency=outcome.efficiency if outcome else 0.0,
        )
        if self._shares(acc):
            assert self.sharing is not None
            # What we verified of the previous round (spec 4): its results are downloaded during this one.
            seed = _bloom_seed(b"witness", self.signer, key)
            participants, broadcasts, merkle = self.sharing.witness_content((key[0], key[1] - 1), seed)
            return SendWitness(key, proof, participants, broadcasts, merkle, metadata)
        # AdamW runs exchange no results: a witness attests to every trainer the round assigned
        # (docs/client-protocol.md), and to its own result's commitment.
        trainers = [a.trainer for a in round_view.round_assignments(acc)]
        participants = bloom.make_bloom(
            _bloom_seed(b"participant", self.signer, key), [participant_hash(t) for t in trainers]
        )
        mine = [outcome.commitment] if outcome is not None else []
        broadcasts = bloom.make_bloom(_bloom_seed(b"broadcast", self.signer, key), mine)
        previous = ep.trained.get((key[0], key[1] - 1))
        merkle = merkle_root([previous.commitment] if previous is not None else [])
        return SendWitness(key, proof, participants, broadcasts, merkle, metadata)
