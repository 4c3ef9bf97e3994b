"""Test helpers for driving the pure coordinator logic with a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from solders.pubkey import Pubkey

from psyche.chain import committee
from psyche.chain import logic as cl
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.model import LLM, CoordinatorConfig
from psyche.chain.accounts.state import Bloom, NodeIdentity, WitnessProof
from psyche.localnet.presets import small_config, small_model

CONFIG: CoordinatorConfig = small_config()
MODEL: LLM = small_model()


def key(i: int) -> Pubkey:
    return Pubkey(bytes([i]) * 32)


def ident(i: int) -> NodeIdentity:
    return NodeIdentity(key(i), key(100 + i))


class Run:
    """Drives the logic; every call checks the nonce rule (exactly +1) unless told otherwise."""

    def __init__(self, acc: CoordinatorAccount, now: int = 1000) -> None:
        self.acc = acc
        self.now = now
        self.slot = 1

    def _apply(self, fn: Callable[..., CoordinatorAccount], *args: Any, bump: int = 1) -> CoordinatorAccount:
        before = self.acc.nonce
        self.slot += 1
        self.acc = fn(self.acc, *args)
        assert self.acc.nonce == before + bump
        return self.acc

    def at(self, now: int) -> Run:
        self.now = now
        return self

    def tick(self) -> CoordinatorAccount:
        return self._apply(cl.tick, self.now, self.slot)

    def join(self, i: int) -> CoordinatorAccount:
        return self._apply(cl.join_run, key(i), ident(i), self.now, self.slot)

    def pause(self, paused: bool) -> CoordinatorAccount:
        return self._apply(cl.set_paused, paused, self.now, self.slot)

    def warmup_witness(self, i: int) -> CoordinatorAccount:
        idx = self.index_of(i)
        return self._apply(
            cl.warmup_witness,
            key(i),
            WitnessProof(0, idx, True),
            Bloom(),
            Bloom(),
            bytes(32),
            self.now,
            self.slot,
        )

    def witness(self, i: int, participants: list[int] | None = None) -> CoordinatorAccount:
        return self._apply(
            cl.witness, key(i), self.proof(i), *self.blooms(participants), bytes(32), self.now, self.slot
        )

    def proof(self, i: int) -> WitnessProof:
        idx = self.index_of(i)
        r = self.round
        pos = committee.witness_position(idx, r.clients_len, r.random_seed)
        return WitnessProof(
            pos, idx, committee.is_witness(idx, r.clients_len, r.random_seed, self.acc.config.witness_nodes)
        )

    @staticmethod
    def blooms(participants: list[int] | None) -> tuple[Bloom, Bloom]:
        if participants is None:
            return Bloom(), Bloom()
        import hashlib

        from psyche.chain import bloom

        keys = bloom.new_keys(b"test")
        items = [hashlib.sha256(bytes(key(p))).digest() for p in participants]
        return Bloom(keys, bloom.add_all(keys, bloom.EMPTY_BITS, items)), Bloom()

    @property
    def round(self) -> Any:
        es = self.acc.epoch_state
        return es.rounds[es.rounds_head]

    def state(self) -> RunState:
        """The run's state now (a method: a property read would stay narrowed across calls that move it)."""
        return self.acc.run_state

    def index_of(self, i: int) -> int:
        return [c.signer for c in self.acc.epoch_state.clients].index(key(i))

    def ledger(self, i: int) -> Any:
        return next(c for c in self.acc.clients_state.clients if c.signer == key(i))


def configured(config: CoordinatorConfig = CONFIG, rate: int | None = 1000) -> Run:
    """A run created, configured, given a future earning rate, and resumed at t=1000 (WaitingForMembers)."""
    run = Run(cl.init("test", "test"))
    run._apply(cl.update, None, config, MODEL, None)
    run._apply(cl.set_future_epoch_rates, rate, None)
    run.pause(False)
    return run


def replace_acc(run: Run, **changes: Any) -> None:
    run.acc = dataclasses.replace(run.acc, **changes)
