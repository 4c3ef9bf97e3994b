"""The client's event loop: follows the coordinator account, feeds ClientProtocol, executes its actions."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain import instructions as ix
from psyche.chain import pda
from psyche.chain.accounts.coordinator import CoordinatorAccount, peek_client_version, peek_nonce
from psyche.chain.accounts.state import Bloom
from psyche.chain.programs import JOIN_RUN_AUTHORIZATION_SCOPE, ProgramIds
from psyche.chain.queries import fetch_run
from psyche.chain.rpc import RpcClient
from psyche.chain.transactions import send_and_confirm
from psyche.chain.ws import AccountUpdate, AccountWatcher, SubscriptionDown, SubscriptionUp, WatchEvent
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
    Train,
    TrainOutcome,
    send_name,
)
from psyche.client.protocol import TIMER_INTERVAL, ClientProtocol
from psyche.errors import AccountNotFound, RunManagerError, TransactionFailed

log = logging.getLogger("psyche.client")

JOIN_TIMEOUT_S = 5.0  # contract 2.4: join_run is wrapped in a 5-second timeout
SEND_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 1.0  # HTTP polling while no WebSocket subscription holds
QUIET_POLL_S = 5.0  # with a subscription up: one HTTP read after this long without any update


class TrainerPort(Protocol):
    """What the runner needs from training; blocking calls, run on one worker thread."""

    def prepare(self, acc: CoordinatorAccount, epoch: int) -> None:
        """Have a model ready for ``epoch`` (keep the one in memory, resume a checkpoint, or initialise)."""

    def train(self, acc: CoordinatorAccount, task: Train) -> TrainOutcome:
        """One optimizer step over ``task.indices``."""

    def save(self, epoch: int, step: int) -> None:
        """Save a checkpoint (a no-op without a checkpoint directory)."""

    def apply(self, acc: CoordinatorAccount, source: RoundKey) -> None:
        """DisTrO runs: apply the results of round ``source`` that its next round's witnesses agreed on."""


class Sharing(Protocol):
    """What the runner needs from the P2P result exchange (``sharing.ResultSharing``)."""

    def observe(self, acc: CoordinatorAccount) -> None:
        """A new coordinator state (see ``ResultSharing.observe``)."""

    def announce_warmup(self, acc: CoordinatorAccount, epoch: int) -> None:
        """Tell every peer our model is ready for ``epoch``."""


@dataclass(frozen=True, slots=True)
class RunAddresses:
    """The accounts every send names, found once at startup."""

    instance: Pubkey
    coordinator: Pubkey
    authorization: Pubkey


class ChainPort:
    """Reads the coordinator account and sends the client's transactions through the RPC fallback pool."""

    def __init__(
        self,
        rpc: RpcClient,
        keypair: Keypair,
        addresses: RunAddresses,
        p2p_identity: bytes,
        programs: ProgramIds,
    ) -> None:
        self.rpc = rpc
        self.keypair = keypair
        self.addresses = addresses
        self.p2p_identity = p2p_identity
        self.programs = programs

    @classmethod
    def locate(
        cls,
        rpc: RpcClient,
        keypair: Keypair,
        run_id: str,
        authorizer: Pubkey,
        p2p_identity: bytes,
        programs: ProgramIds,
    ) -> tuple[ChainPort, CoordinatorAccount]:
        """Find the run (instance PDA, coordinator account, authorization PDA of ``authorizer``)."""
        run = fetch_run(rpc, run_id, programs)
        authorization = pda.authorization(
            run.instance.join_authority,
            authorizer,
            JOIN_RUN_AUTHORIZATION_SCOPE,
            program_id=programs.authorizer,
        )
        addresses = RunAddresses(run.instance_address, run.coordinator_address, authorization)
        return cls(rpc, keypair, addresses, p2p_identity, programs), run.coordinator

    def read(self) -> bytes:
        """The coordinator account's data, fetched now.

        Raises:
            AccountNotFound: the coordinator account is gone.
            RpcError: no endpoint answered.
        """
        info = self.rpc.get_account_info(self.addresses.coordinator)
        if info is None:
            raise AccountNotFound("coordinator", str(self.addresses.coordinator))
        return info.data

    def instruction(self, sent: Send) -> Instruction:
        """The coordinator instruction that carries ``sent`` (join_run, tick, health_check, warmup_witness
        or witness)."""
        a, me, program = self.addresses, self.keypair.pubkey(), self.programs.coordinator
        if isinstance(sent, SendJoin):
            return ix.join_run(
                me, a.authorization, a.instance, a.coordinator, self.p2p_identity, program_id=program
            )
        if isinstance(sent, SendTick):
            return ix.tick(me, a.instance, a.coordinator, program_id=program)
        if isinstance(sent, SendHealthCheck):
            return ix.health_check(
                me,
                a.instance,
                a.coordinator,
                accused=sent.accused,
                committee=sent.committee,
                position=sent.position,
                index=sent.index,
                program_id=program,
            )
        if isinstance(sent, SendWarmupWitness):
            # Warmup readiness carries no training evidence: empty blooms, as the reference sends.
            return ix.warmup_witness(
                me,
                a.instance,
                a.coordinator,
                proof=sent.proof,
                participant_bloom=Bloom(),
                broadcast_bloom=Bloom(),
                broadcast_merkle=bytes(32),
                program_id=program,
            )
        return ix.witness(
            me,
            a.instance,
            a.coordinator,
            proof=sent.proof,
            participant_bloom=sent.participant_bloom,
            broadcast_bloom=sent.broadcast_bloom,
            broadcast_merkle=sent.broadcast_merkle,
            metadata=sent.metadata,
            program_id=program,
        )

    def send(self, sent: Send) -> None:
        """Send ``sent`` and wait for confirmation (longer for a join).

        Raises:
            TransactionFailed: preflight or execution failed (with the program error's name).
            RpcError: no endpoint answered.
        """
        timeout = JOIN_TIMEOUT_S if isinstance(sent, SendJoin) else SEND_TIMEOUT_S
        send_and_confirm(
            self.rpc, [self.instruction(sent)], self.keypair, programs=self.programs, timeout=timeout
        )


@dataclass(frozen=True, slots=True)
class _Stop:
    """stop() was called."""


@dataclass(frozen=True, slots=True)
class _Fail:
    """fail() was called: another part of the client (a training rank) died."""

    reason: str


@dataclass(frozen=True, slots=True)
class _Version:
    """ReadVersion's answer."""

    version: str


@dataclass(frozen=True, slots=True)
class _Result:
    """A worker finished: call ``fn(now)`` on the loop thread to get the protocol's next actions."""

    fn: Callable[[float], list[Action]]


Event = AccountUpdate | _Stop | _Fail | _Version | _Result


class Runner:
    """Single-threaded dispatch of events to the protocol; sends and training run on worker threads."""

    def __init__(
        self,
        protocol: ClientProtocol,
        chain: ChainPort,
        trainer: TrainerPort,
        *,
        ws_urls: Sequence[str],
        sharing: Sharing | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.trainer = trainer
        self.sharing = sharing
        self.ws_urls = list(ws_urls)
        self.clock = clock  # the chain's unix time as we believe it (tests share a fast clock with the chain)
        self.monotonic = monotonic  # real time, for the timer and the polling cadence
        self.events: queue.Queue[Event] = queue.Queue()
        self.senders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="send")
        self.training = ThreadPoolExecutor(max_workers=1, thread_name_prefix="train")
        self.polling = False
        self.last_poll = float("-inf")
        self.last_update = float("-inf")
        self.watcher: AccountWatcher | None = None
        self.failed = False

    def stop(self) -> None:
        """Ask the loop to end (thread- and signal-safe)."""
        self.events.put(_Stop())

    def fail(self, reason: str) -> None:
        """End the loop with exit code 1 because of ``reason`` (thread-safe), not waiting for training."""
        self.events.put(_Fail(reason))

    def _on_watch(self, event: WatchEvent) -> None:
        if isinstance(event, SubscriptionUp):
            log.info("Correctly subscribe to Solana url %s", event.url)
        elif isinstance(event, SubscriptionDown):
            log.warning(
                "websocket closed or could not connect: %s (%s); retry in %gs",
                event.url,
                event.reason,
                event.retry_in,
            )

    def run(self, first: CoordinatorAccount) -> int:
        """Follow the run until the protocol exits or ``stop()``; returns the exit code."""
        handle = None
        if self.ws_urls:
            self.watcher = AccountWatcher(
                self.ws_urls,
                self.chain.addresses.coordinator,
                nonce_of=peek_nonce,
                on_event=self._on_watch,
                after_nonce=first.nonce,
            )
            handle = self.watcher.start_in_thread(self.events.put)
        try:
            code = self._execute(self.protocol.start(first, self.clock()))
            next_timer = self.monotonic()
            while code is None:
                try:
                    event = self.events.get(timeout=max(0.0, next_timer - self.monotonic()))
                except queue.Empty:
                    next_timer = self.monotonic() + TIMER_INTERVAL
                    self._maybe_poll()
                    code = self._execute(self.protocol.on_timer(self.clock()))
                    continue
                code = self._dispatch(event)
            return code
        finally:
            if handle is not None:
                try:
                    handle.stop()
                except Exception as exc:  # the watcher's own failure must not mask our exit code
                    log.warning("account watcher ended with %s", exc)
            self.senders.shutdown(wait=False, cancel_futures=True)
            # Work already handed to the trainer finishes: the final checkpoint save comes with the exit.
            # After a failure it may be blocked on a dead training rank, so it is left behind.
            self.training.shutdown(wait=not self.failed, cancel_futures=self.failed)

    def _dispatch(self, event: Event) -> int | None:
        now = self.clock()
        if isinstance(event, _Stop):
            log.info("stopping on request")
            return 0
        if isinstance(event, _Fail):
            log.error("exiting with code 1: %s", event.reason)
            self.failed = True
            return 1
        if isinstance(event, AccountUpdate):
            self.last_update = self.monotonic()
            try:
                acc = CoordinatorAccount.decode(event.data)
            except RunManagerError as exc:
                log.warning("ignoring an undecodable coordinator update: %s", exc)
                return None
            if self.sharing is not None:
                self.sharing.observe(acc)
            return self._execute(self.protocol.on_account(acc, now))
        if isinstance(event, _Version):
            return self._execute(self.protocol.on_version(event.version))
        return self._execute(event.fn(now))

    def _maybe_poll(self) -> None:
        # Contract 2.4 keeps only WS; we also poll over HTTP while no subscription holds (tests, flaky WS).
        watcher = self.watcher
        now = self.monotonic()
        if self.polling:
            return
        if watcher is not None and watcher.any_connected:
            # A notification can be lost (one sent before the subscription took hold, e.g. our join's), and
            # nothing else may change the account until someone ticks: a quiet spell gets one HTTP read.
            if now - max(self.last_update, self.last_poll) < QUIET_POLL_S:
                return
        elif now - self.last_poll < POLL_INTERVAL_S:
            return
        self.polling, self.last_poll = True, self.monotonic()

        def poll() -> None:
            try:
                data = self.chain.read()
                self.events.put(AccountUpdate(peek_nonce(data), data, 0, "poll"))
            except RunManagerError as exc:
                log.warning("polling the coordinator failed: %s", exc)
            finally:
                self.polling = False

        self.senders.submit(poll)

    def _post(self, fn: Callable[[float], list[Action]]) -> None:
        self.events.put(_Result(fn))

    def sharing_changed(self) -> None:
        """The result exchange changed (thread-safe): the protocol looks again."""
        self._post(self.protocol.on_sharing)

    def _execute(self, actions: list[Action]) -> int | None:
        for action in actions:
            if isinstance(action, Exit):
                log.info("exiting with code %d: %s", action.code, action.reason)
                return action.code
            if isinstance(action, SendJoin | SendTick | SendWarmupWitness | SendWitness | SendHealthCheck):
                self.senders.submit(self._send, action)
            elif isinstance(action, AnnounceWarmup):
                acc = self.protocol.acc
                assert acc is not None and self.sharing is not None
                self.senders.submit(self.sharing.announce_warmup, acc, action.epoch)
            elif isinstance(action, ReadVersion):
                self.senders.submit(self._read_version)
            elif isinstance(action, PrepareModel | Train | ApplyResults | SaveCheckpoint):
                acc = self.protocol.acc
                assert acc is not None
                self.training.submit(self._train, action, acc)
        return None

    def _send(self, sent: Send) -> None:
        error, code = None, None
        try:
            self.chain.send(sent)
            log.debug("%s sent", send_name(sent))
        except TransactionFailed as exc:
            error, code = exc.message, exc.program_error
        except RunManagerError as exc:
            error = exc.message
        self._post(lambda now: self.protocol.on_sent(sent, error, code, now))

    def _read_version(self) -> None:
        try:
            version = peek_client_version(self.chain.read())
        except RunManagerError as exc:
            log.warning("reading the run's client_version failed: %s", exc)
            return
        self.events.put(_Version(version))

    def _train(
        self, action: PrepareModel | Train | ApplyResults | SaveCheckpoint, acc: CoordinatorAccount
    ) -> None:
        try:
            if isinstance(action, ApplyResults):
                self.trainer.apply(acc, action.source)
                self._post(lambda now: self.protocol.on_applied(action.source, None, now))
            elif isinstance(action, PrepareModel):
                self.trainer.prepare(acc, action.epoch)
                self._post(lambda now: self.protocol.on_prepared(action.epoch, None, now))
            elif isinstance(action, Train):
                outcome = self.trainer.train(acc, action)
                self._post(lambda now: self.protocol.on_trained(action.key, outcome, None, now))
            else:
                self.trainer.save(action.epoch, action.step)
        except Exception as exc:  # training errors of any kind end this client run (the entrypoint restarts)
            message = f"{type(exc).__name__}: {exc}"
            if isinstance(action, ApplyResults):
                self._post(lambda now: self.protocol.on_applied(action.source, message, now))
            elif isinstance(action, PrepareModel):
                self._post(lambda now: self.protocol.on_prepared(action.epoch, message, now))
            elif isinstance(action, Train):
                self._post(lambda now: self.protocol.on_trained(action.key, None, message, now))
            else:
                log.warning("saving the checkpoint failed: %s", message)
