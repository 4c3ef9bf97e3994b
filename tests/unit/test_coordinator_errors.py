"""Every reachable coordinator custom error code, and the panics that fail a transaction without one."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from psyche.chain import committee
from psyche.chain import logic as cl
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.model import CoordinatorProgress
from psyche.chain.accounts.state import (
    Bloom,
    ClientsState,
    EpochClient,
    LedgerClient,
    Witness,
    WitnessProof,
)
from psyche.errors import ChainError
from tests.support.coordinator import CONFIG, MODEL, Run, configured, ident, key, replace_acc


def _code(fn: Callable[..., Any], *args: Any) -> int:
    with pytest.raises(cl.CoordinatorProgramError) as err:
        fn(*args)
    assert isinstance(err.value, ChainError)
    assert isinstance(err.value.error, cl.CoordinatorErrorCode)
    assert err.value.code == 6000 + int(err.value.error)
    return err.value.code


def _in_warmup() -> Run:
    run = configured()
    run.at(1001).join(1)
    run.join(2)
    run.at(1003).tick()
    assert run.state() == RunState.Warmup
    return run


def _in_round_train() -> Run:
    run = _in_warmup()
    run.at(1008).tick()
    assert run.state() == RunState.RoundTrain
    return run


def test_error_identity() -> None:
    err = cl.CoordinatorProgramError(cl.CoordinatorErrorCode.CoordinatorErrorHalted)
    assert (err.code, err.name, str(err)) == (
        6015,
        "CoordinatorErrorHalted",
        "coordinator error 6015 (CoordinatorErrorHalted)",
    )
    assert cl.CoordinatorErrorCode.RunIdInvalidLength.code == 6023
    assert cl.CoordinatorErrorCode.MoreClientsThanBatches.code == 6022


def test_init() -> None:
    acc = cl.init("a" * 32, "v" * 200)
    assert (acc.run_id, acc.nonce, acc.run_state, acc.progress.step) == (
        "a" * 32,
        0,
        RunState.Uninitialized,
        0,
    )
    assert acc.client_version == "v" * 96
    assert _code(cl.init, "a" * 33, "v") == 6023


def test_update_rules() -> None:
    acc = cl.init("r", "v")
    assert _code(cl.update, acc, None, dataclasses.replace(CONFIG, epoch_time=0)) == 6004
    assert _code(cl.update, acc, None, None, dataclasses.replace(MODEL, max_seq_len=0)) == 6005
    assert _code(cl.update, acc, None, None, None, CoordinatorProgress(0, 0, 0)) == 6005  # sic
    cold = dataclasses.replace(MODEL, cold_start_warmup_steps=4)  # (40 - 5) // 10 = 3 rounds fit
    assert _code(cl.update, acc, None, CONFIG, cold) == 6004
    assert cl.update(acc, None, CONFIG, dataclasses.replace(cold, cold_start_warmup_steps=3)).nonce == 1
    run = configured()
    assert _code(cl.update, run.acc, None, CONFIG) == 6001
    from psyche.chain.accounts.model import RunMetadata

    assert cl.update(run.acc, RunMetadata(name="x")).metadata.name == "x"  # metadata any time
    replace_acc(run, run_state=RunState.Finished)
    assert _code(cl.update, run.acc, RunMetadata(name="x")) == 6000


def test_update_client_version_rules() -> None:
    run = configured()
    assert _code(cl.update_client_version, run.acc, "v2") == 6001
    run.pause(True)
    after = cl.update_client_version(run.acc, "v2")
    assert (after.client_version, after.nonce) == ("v2", run.acc.nonce)  # no nonce bump
    with pytest.raises(cl.CoordinatorPanic):
        cl.update_client_version(run.acc, "x" * 97)


def test_resume_rules() -> None:
    acc = cl.init("r", "v")
    assert _code(cl.set_paused, acc, False, 1, 1) == 6004  # all-zero config
    acc = cl.update(acc, None, CONFIG)
    assert _code(cl.set_paused, acc, False, 1, 1) == 6005  # zeroed model
    assert _code(cl.set_paused, acc, True, 1, 1) == 6015  # cannot pause Uninitialized
    run = configured()
    assert _code(cl.set_paused, run.acc, False, 1001, 1) == 6018  # not paused
    run.pause(True)
    replace_acc(run, progress=CoordinatorProgress(0, 0, 0))
    assert _code(cl.set_paused, run.acc, False, 1001, 1) == 6006
    assert _code(cl.set_paused, run.acc, True, 1001, 1) == 6015


def test_free_only_when_halted() -> None:
    run = configured()
    assert _code(cl.check_free, run.acc) == 6009
    run.pause(True)
    cl.check_free(run.acc)


def test_join_rules() -> None:
    run = configured(dataclasses.replace(CONFIG, global_batch_size_start=2, global_batch_size_end=2))
    assert _code(cl.join_run, run.acc, key(9), ident(1), 1001, 1) == 6008
    run.at(1001).join(1)
    run.join(2)
    assert _code(cl.join_run, run.acc, key(3), ident(3), 1001, 1) == 6022
    # A re-join is not a new client: allowed, and the p2p key is overwritten.
    from psyche.chain.accounts.state import NodeIdentity

    after = cl.join_run(run.acc, key(1), NodeIdentity(key(1), key(77)), 1001, 1)
    assert after.clients_state.clients[0].p2p_identity == key(77)

    run = configured(dataclasses.replace(CONFIG, global_batch_size_start=1000, global_batch_size_end=1000))
    full = tuple(LedgerClient(key(i), key(i)) if i else LedgerClient(key(255), key(0)) for i in range(256))
    replace_acc(run, clients_state=dataclasses.replace(run.acc.clients_state, clients=full))
    from solders.pubkey import Pubkey

    from psyche.chain.accounts.state import NodeIdentity as NI

    newcomer = Pubkey(bytes([1, 2]) * 16)
    assert _code(cl.join_run, run.acc, newcomer, NI(newcomer, newcomer), 1001, 1) == 6003


def test_join_while_paused_does_not_tick() -> None:
    run = configured()
    run.pause(True)
    run.at(5000).join(1)
    assert run.state() == RunState.Paused
    assert run.ledger(1).active == run.acc.clients_state.next_active


def test_unknown_signers() -> None:
    run = _in_round_train()
    stranger = key(42)
    args = (WitnessProof(0, 0, True), Bloom(), Bloom(), bytes(32), 1009, 1)
    assert _code(cl.witness, run.acc, stranger, *args) == 6007
    assert _code(cl.warmup_witness, run.acc, stranger, *args) == 6007
    assert _code(cl.health_check, run.acc, stranger, ident(1), 2, 0, 0, 1009, 1) == 6007


def test_warmup_witness_rules() -> None:
    run = _in_warmup()
    run.at(1004).warmup_witness(1)
    assert (
        _code(
            cl.warmup_witness, run.acc, key(1), WitnessProof(0, 0, True), Bloom(), Bloom(), bytes(32), 1004, 1
        )
        == 6013
    )
    run.warmup_witness(2)
    assert run.state() == RunState.RoundTrain
    before = run.acc.epoch_state
    run.warmup_witness(1)  # late warmup witness: ignored (but it still ticks and bumps the nonce)
    assert run.acc.epoch_state == before
    run.at(1014).tick()
    assert run.state() == RunState.RoundWitness
    args = (WitnessProof(0, 0, True), Bloom(), Bloom(), bytes(32), 1014, 1)
    assert _code(cl.warmup_witness, run.acc, key(1), *args) == 6012
    paused = cl.set_paused(_in_warmup().acc, True, 1004, 1)
    assert _code(cl.warmup_witness, paused, key(1), *args) == 6015


def test_warmup_witnesses_full() -> None:
    run = configured(dataclasses.replace(CONFIG, global_batch_size_start=64, global_batch_size_end=64))
    for i in range(1, 41):
        run.at(1001).join(i)
    run.at(1003).tick()
    assert run.state() == RunState.Warmup and len(run.acc.epoch_state.clients) == 40
    # 32 stored witnesses without the round having started: only reachable by a hand-made account.
    stored = tuple(Witness(WitnessProof(0, i, True)) for i in range(32))
    rounds = (
        dataclasses.replace(run.acc.epoch_state.rounds[0], witnesses=stored),
        *run.acc.epoch_state.rounds[1:],
    )
    replace_acc(run, epoch_state=dataclasses.replace(run.acc.epoch_state, rounds=rounds))
    args = (WitnessProof(0, 35, True), Bloom(), Bloom(), bytes(32), 1004, 1)
    assert _code(cl.warmup_witness, run.acc, key(36), *args) == 6017


def test_witness_rules() -> None:
    run = _in_warmup()
    assert (
        _code(cl.witness, run.acc, key(1), WitnessProof(0, 0, True), Bloom(), Bloom(), bytes(32), 1004, 1)
        == 6012
    )
    run = _in_round_train()
    good = run.proof(1)
    idx = good.index
    bad_position = WitnessProof((good.position + 1) % 2, idx, True)
    for proof in (
        bad_position,
        dataclasses.replace(good, witness=False),
        dataclasses.replace(good, index=1 - idx),
    ):
        assert _code(cl.witness, run.acc, key(1), proof, Bloom(), Bloom(), bytes(32), 1009, 1) == 6011
    out_of_range = dataclasses.replace(good, index=7)
    assert _code(cl.witness, run.acc, key(1), out_of_range, Bloom(), Bloom(), bytes(32), 1009, 1) == 6011
    run.at(1009).witness(1)
    assert run.state() == RunState.RoundTrain
    assert _code(cl.witness, run.acc, key(1), good, Bloom(), Bloom(), bytes(32), 1009, 1) == 6013
    run.witness(2)
    assert run.state() == RunState.RoundWitness  # both witnesses in: witness phase early
    assert run.acc.run_state_start_unix_timestamp == 1009


def test_witness_with_configured_nodes_elects_exactly_that_many() -> None:
    config = dataclasses.replace(CONFIG, witness_nodes=1, min_clients=1, init_min_clients=3)
    run = configured(config)
    for i in (1, 2, 3):
        run.at(1001).join(i)
    run.at(1003).tick()
    run.at(1008).tick()
    r = run.round
    elected = [i for i in (1, 2, 3) if committee.is_witness(run.index_of(i), r.clients_len, r.random_seed, 1)]
    assert len(elected) == 1
    loser = next(i for i in (1, 2, 3) if i not in elected)
    assert (
        _code(cl.witness, run.acc, key(loser), run.proof(loser), Bloom(), Bloom(), bytes(32), 1009, 1) == 6011
    )
    run.at(1009).witness(elected[0])
    assert run.state() == RunState.RoundWitness


def test_invalid_committee_selection() -> None:
    run = _in_round_train()
    # witness_nodes above the round's client count (only reachable with a hand-edited config).
    replace_acc(run, config=dataclasses.replace(CONFIG, witness_nodes=3))
    assert _code(cl.witness, run.acc, key(1), run.proof(1), Bloom(), Bloom(), bytes(32), 1009, 1) == 6020


def _at_height_two() -> Run:
    run = _in_round_train()
    t = 1008
    for _ in range(2):
        run.at(t + 1).witness(1, [1, 2])
        run.witness(2, [1, 2])
        run.at(t + 3).tick()
        t += 3
    assert run.round.height == 2 and run.state() == RunState.RoundTrain
    return run


def test_health_check_rules() -> None:
    run = _in_round_train()
    assert _code(cl.health_check, run.acc, key(1), ident(2), 2, 0, 1, 1009, 1) == 6014  # height < 2
    run = _at_height_two()
    prev = run.acc.epoch_state.rounds[1]
    idx = run.index_of(2)
    pos = committee.committee_position(idx, prev.clients_len, prev.random_seed)
    now = 1015
    assert _code(cl.health_check, run.acc, key(1), ident(2), committee.TRAINER, pos, 5, now, 1) == 6021
    assert _code(cl.health_check, run.acc, key(1), ident(1), committee.TRAINER, pos, idx, now, 1) == 6021
    assert _code(cl.health_check, run.acc, key(1), ident(2), committee.TRAINER, pos + 1, idx, now, 1) == 6021
    assert _code(cl.health_check, run.acc, key(1), ident(2), committee.VERIFIER, pos, idx, now, 1) == 6021
    assert _code(cl.health_check, run.acc, key(1), ident(2), committee.TRAINER, pos, idx, now, 1) == 6014
    paused = cl.set_paused(run.acc, True, now, 1)
    paused = dataclasses.replace(paused, run_state=RunState.Paused)
    assert _code(cl.health_check, paused, key(1), ident(2), committee.TRAINER, pos, idx, now, 1) == 6015


def test_tick_when_halted() -> None:
    assert _code(cl.tick, cl.init("r", "v"), 1, 1) == 6015
    run = configured()
    run.pause(True)
    assert _code(cl.tick, run.acc, 2000, 1) == 6015


def test_set_future_epoch_rates_sets_only_given_fields() -> None:
    run = configured(rate=None)
    run._apply(cl.set_future_epoch_rates, None, 9)
    rates = run.acc.clients_state.future_epoch_rates
    assert (rates.earning_rate_total_shared, rates.slashing_rate_per_client) == (0, 9)
    run._apply(cl.set_future_epoch_rates, 5, None)
    rates = run.acc.clients_state.future_epoch_rates
    assert (rates.earning_rate_total_shared, rates.slashing_rate_per_client) == (5, 9)


def test_failed_instruction_changes_nothing() -> None:
    run = _in_round_train()
    before = run.acc
    _code(cl.witness, before, key(1), WitnessProof(0, 0, False), Bloom(), Bloom(), bytes(32), 1009, 1)
    assert run.acc is before and run.acc.nonce == before.nonce


def test_ledger_types_roundtrip_through_encode() -> None:
    run = _at_height_two()
    from psyche.chain.accounts.coordinator import CoordinatorAccount

    decoded = CoordinatorAccount.decode(run.acc.encode())
    assert decoded == run.acc
    assert isinstance(decoded.clients_state, ClientsState)
    assert isinstance(decoded.epoch_state.clients[0], EpochClient)
