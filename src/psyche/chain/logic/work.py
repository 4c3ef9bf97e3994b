"""A private mutable copy of the coordinator account that the instruction logic edits, and back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.model import Checkpoint, CoordinatorConfig, CoordinatorProgress, Model
from psyche.chain.accounts.state import (
    ClientsState,
    ClientState,
    EpochClient,
    EpochRates,
    EpochState,
    LedgerClient,
    Round,
    Witness,
)

NUM_ROUNDS = 4
MAX_CLIENTS = 256
MAX_WITNESSES = 32


@dataclass
class WRound:
    """Mutable `Round`."""

    witnesses: list[Witness] = field(default_factory=list)
    data_index: int = 0
    random_seed: int = 0
    height: int = 0
    clients_len: int = 0
    tie_breaker_tasks: int = 0


@dataclass
class WClient:
    """Mutable epoch `Client`; ``signer`` is what identity equality compares."""

    signer: Pubkey
    p2p_identity: Pubkey
    state: ClientState = ClientState.Healthy
    exited_height: int = 0


@dataclass
class WLedger:
    """Mutable points-ledger entry (Solana `Client`)."""

    signer: Pubkey
    p2p_identity: Pubkey
    earned: int = 0
    slashed: int = 0
    active: int = 0


@dataclass
class Work:
    """Everything an instruction may change; ``base`` supplies the rest when storing."""

    base: CoordinatorAccount
    run_state: RunState
    model: Model
    config: CoordinatorConfig
    epoch: int
    step: int
    epoch_start_data_index: int
    rounds: list[WRound]
    clients: list[WClient]
    exited: list[WClient]
    rounds_head: int
    start_step: int
    last_step: int
    start_timestamp: int
    first_round: bool
    cold_start_epoch: bool
    run_state_start: int
    pending_pause: bool
    ledger: list[WLedger]
    next_active: int
    current_rates: tuple[int, int]
    future_rates: tuple[int, int]
    is_warmup_first_tick: bool
    is_training_first_tick: bool
    nonce: int

    @property
    def current_round(self) -> WRound:
        return self.rounds[self.rounds_head]

    def previous_round(self) -> WRound | None:
        """`Coordinator::previous_round`: none only at the very first round of the epoch."""
        if self.rounds_head == 0 and self.current_round.height == 0:
            return None
        return self.rounds[(self.rounds_head - 1) % NUM_ROUNDS]

    def zero_epoch(self) -> None:
        """`bytemuck::write_zeroes(&mut epoch_state)`."""
        self.rounds = [WRound() for _ in range(NUM_ROUNDS)]
        self.clients, self.exited = [], []
        self.rounds_head = self.start_step = self.last_step = self.start_timestamp = 0
        self.first_round = self.cold_start_epoch = False


def _client(c: EpochClient) -> WClient:
    return WClient(c.signer, c.p2p_identity, ClientState(c.state), c.exited_height)


def _round(r: Round) -> WRound:
    return WRound(
        list(r.witnesses), r.data_index, r.random_seed, r.height, r.clients_len, r.tie_breaker_tasks
    )


def load(acc: CoordinatorAccount) -> Work:
    """Working copy of ``acc``."""
    es, cs = acc.epoch_state, acc.clients_state
    return Work(
        base=acc,
        run_state=RunState(acc.run_state),
        model=acc.model,
        config=acc.config,
        epoch=acc.progress.epoch,
        step=acc.progress.step,
        epoch_start_data_index=acc.progress.epoch_start_data_index,
        rounds=[_round(r) for r in es.rounds],
        clients=[_client(c) for c in es.clients],
        exited=[_client(c) for c in es.exited_clients],
        rounds_head=es.rounds_head,
        start_step=es.start_step,
        last_step=es.last_step,
        start_timestamp=es.start_timestamp,
        first_round=bool(es.first_round),
        cold_start_epoch=bool(es.cold_start_epoch),
        run_state_start=acc.run_state_start_unix_timestamp,
        pending_pause=bool(acc.pending_pause),
        ledger=[WLedger(c.signer, c.p2p_identity, c.earned, c.slashed, c.active) for c in cs.clients],
        next_active=cs.next_active,
        current_rates=(
            cs.current_epoch_rates.earning_rate_total_shared,
            cs.current_epoch_rates.slashing_rate_per_client,
        ),
        future_rates=(
            cs.future_epoch_rates.earning_rate_total_shared,
            cs.future_epoch_rates.slashing_rate_per_client,
        ),
        is_warmup_first_tick=bool(acc.is_warmup_first_tick),
        is_training_first_tick=bool(acc.is_training_first_tick),
        nonce=acc.nonce,
    )


def _store_client(c: WClient) -> EpochClient:
    return EpochClient(
        signer=c.signer, p2p_identity=c.p2p_identity, state=c.state, exited_height=c.exited_height
    )


def _store_ledger(c: WLedger) -> LedgerClient:
    return LedgerClient(
        signer=c.signer, p2p_identity=c.p2p_identity, earned=c.earned, slashed=c.slashed, active=c.active
    )


def store(w: Work) -> CoordinatorAccount:
    """The frozen account ``w`` describes."""
    epoch_state = EpochState(
        rounds=tuple(
            Round(
                witnesses=tuple(r.witnesses),
                data_index=r.data_index,
                random_seed=r.random_seed,
                height=r.height,
                clients_len=r.clients_len,
                tie_breaker_tasks=r.tie_breaker_tasks,
            )
            for r in w.rounds
        ),
        clients=tuple(_store_client(c) for c in w.clients),
        exited_clients=tuple(_store_client(c) for c in w.exited),
        rounds_head=w.rounds_head,
        start_step=w.start_step,
        last_step=w.last_step,
        start_timestamp=w.start_timestamp,
        first_round=w.first_round,
        cold_start_epoch=w.cold_start_epoch,
    )
    clients_state = ClientsState(
        clients=tuple(_store_ledger(c) for c in w.ledger),
        next_active=w.next_active,
        current_epoch_rates=EpochRates(*w.current_rates),
        future_epoch_rates=EpochRates(*w.future_rates),
    )
    return dataclasses.replace(
        w.base,
        run_state=w.run_state,
        model=w.model,
        config=w.config,
        progress=CoordinatorProgress(w.epoch, w.step, w.epoch_start_data_index),
        epoch_state=epoch_state,
        run_state_start_unix_timestamp=w.run_state_start,
        pending_pause=w.pending_pause,
        clients_state=clients_state,
        is_warmup_first_tick=w.is_warmup_first_tick,
        is_training_first_tick=w.is_training_first_tick,
        nonce=w.nonce,
    )


def with_checkpoint(model: Model, checkpoint: Checkpoint) -> Model:
    """``model`` with its checkpoint replaced."""
    return dataclasses.replace(model, checkpoint=checkpoint)
