"""Client-side views: witness proofs the program accepts, and sample assignments for a round."""

from __future__ import annotations

from psyche.chain import logic as cl
from psyche.chain import round_view
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.state import Bloom
from tests.support.coordinator import Run, configured, key


def _round_train() -> Run:
    run = configured()
    for i in (1, 2, 3):
        run.at(1001).join(i)
    run.at(1003).tick()
    run.at(1008).tick()
    assert run.state() == RunState.RoundTrain
    return run


def test_witness_proof_is_accepted_by_the_program() -> None:
    run = _round_train()
    proof = round_view.witness_proof(run.acc, key(2))
    assert proof is not None and proof.witness  # 3 clients, auto witness nodes: all elected
    after = cl.witness(run.acc, key(2), proof, Bloom(), Bloom(), bytes(32), 1009, 7)
    assert len(round_view.current_round(after).witnesses) == 1
    assert round_view.witness_proof(run.acc, key(9)) is None


def test_assignments_cover_the_round_batch() -> None:
    run = _round_train()
    assignments = round_view.round_assignments(run.acc)
    assert sorted(bytes(a.trainer) for a in assignments) == sorted(bytes(key(i)) for i in (1, 2, 3))
    assert [(a.start, a.end) for a in assignments] == [(0, 2), (3, 5), (6, 7)]  # batch 8 over 3
    mine = round_view.assignment_for(run.acc, key(1))
    assert mine is not None and mine.trainer == key(1)


def test_previous_round_and_historical_clients() -> None:
    run = _round_train()
    assert round_view.previous_round(run.acc) is None
    run.at(1009).witness(1)
    run.witness(2)
    run.witness(3)
    run.at(1011).tick()
    prev = round_view.previous_round(run.acc)
    assert prev is not None and prev.height == 0 and round_view.current_round(run.acc).height == 1
    assert [c.signer for c in round_view.historical_clients(run.acc, 3)] == [key(1), key(2), key(3)]
    code, position = round_view.committee_proof(run.acc, 0, prev)
    assert code == 2 and 0 <= position < 3
