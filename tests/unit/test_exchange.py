"""client/exchange.py: merkle root, broadcast acceptance, the round ledger, consensus, health checks."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain import bloom, committee, round_view
from psyche.chain import logic as cl
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.state import (
    Bloom,
    ClientState,
    EpochClient,
    NodeIdentity,
    Round,
    Witness,
    WitnessProof,
)
from psyche.chain.data_selection import BatchAssignment
from psyche.chain.instructions import coordinator as ix
from psyche.client import exchange as ex
from psyche.client.actions import participant_hash
from psyche.client.exchange import (
    CommitteeProof,
    Finished,
    HealthCheck,
    Offer,
    RoundLedger,
    TrainingResult,
    check_offer,
    consensus,
    health_checks,
    merkle_root,
)
from psyche.errors import BroadcastRefused, RunManagerError
from tests.support.coordinator import CONFIG, Run, configured, key


def sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


# ------------------------------------------------------------------------------------------- merkle


def leaf(x: bytes) -> bytes:
    return sha(b"\x00", x)


def node(a: bytes, b: bytes) -> bytes:
    return sha(b"\x01", a, b)


H = [bytes([i]) * 32 for i in range(5)]


def test_merkle_root_of_no_hashes_is_zero() -> None:
    assert merkle_root([]) == bytes(32)


def test_merkle_root_of_one_is_its_leaf() -> None:
    assert merkle_root(H[:1]) == leaf(H[0])


def test_merkle_root_of_two_and_three() -> None:
    assert merkle_root(H[:2]) == node(leaf(H[0]), leaf(H[1]))
    # an odd node is paired with itself
    assert merkle_root(H[:3]) == node(node(leaf(H[0]), leaf(H[1])), node(leaf(H[2]), leaf(H[2])))


def test_merkle_root_of_five() -> None:
    l0, l1, l2, l3, l4 = (leaf(h) for h in H)
    level1 = [node(l0, l1), node(l2, l3), node(l4, l4)]
    level2 = [node(level1[0], level1[1]), node(level1[2], level1[2])]
    assert merkle_root(H) == node(level2[0], level2[1])
    # computed independently with xxd and sha256sum
    assert merkle_root(H).hex() == "2d331714d5160948ab3e13bed57544502653b85d90b7d71f98580eeb835b9c06"


def test_merkle_root_depends_on_order() -> None:
    assert merkle_root([H[1], H[0]]) != merkle_root([H[0], H[1]])


# ------------------------------------------------------------------------------------------- a run

KEYS = {i: Keypair.from_seed(bytes([i]) * 32) for i in range(1, 6)}
STRANGER = Keypair.from_seed(bytes([99]) * 32)


def state(run: Run) -> RunState:
    return run.acc.run_state  # a call, so mypy does not carry one assert's narrowing to the next


def p2p(i: int) -> Pubkey:
    return KEYS[i].pubkey()


def start(n: int = 3, **config: int) -> Run:
    """``n`` clients with real P2P keys joined; round 0 in RoundTrain."""
    run = configured(dataclasses.replace(CONFIG, **config))
    for i in range(1, n + 1):
        run._apply(cl.join_run, key(i), NodeIdentity(key(i), p2p(i)), 1001, run.slot)
    run.at(1003).tick()
    assert state(run) == RunState.Warmup
    run.at(1008).tick()
    assert state(run) == RunState.RoundTrain and run.round.height == 0
    return run


def next_round(run: Run, witnesses: list[int], participants: list[int]) -> None:
    """End the current round with ``witnesses`` attesting ``participants``; the next one starts."""
    t = run.now
    for w in witnesses:
        run.at(t + 1).witness(w, participants)
    if state(run) == RunState.RoundTrain:
        run.at(t + 11).tick()
    assert state(run) == RunState.RoundWitness
    run.at(run.now + 2).tick()
    assert state(run) == RunState.RoundTrain


def offer_from(run: Run, i: int, rnd: object = None, *, data: bytes = b"payload", **changes: object) -> Offer:
    """Client ``i``'s honest TrainingResult broadcast for ``rnd`` (default: current), then ``changes``."""
    acc = run.acc
    r = round_view.current_round(acc) if rnd is None else rnd
    assert isinstance(r, type(round_view.current_round(acc)))
    index = [c.signer for c in round_view.historical_clients(acc, r.clients_len)].index(key(i))
    code, position = round_view.committee_proof(acc, index, r)
    a = round_view.assignment_for(acc, key(i), r)
    batch = (a.start, a.end) if a is not None else (0, 0)
    data_hash = sha(data, bytes([i]))
    offer = Offer(
        sender=bytes(p2p(i)),
        step=ex.round_step(acc, r),
        proof=CommitteeProof(code, position, index),
        data_hash=data_hash,
        commitment_sig=bytes(KEYS[i].sign_message(data_hash)),
        nonce=0,
        body=TrainingResult(batch),
    )
    return dataclasses.replace(offer, **changes)  # type: ignore[arg-type]


def refused(run: Run, offer: Offer, rnd: Round | None = None) -> str:
    with pytest.raises(BroadcastRefused) as err:
        check_offer(run.acc, rnd, offer)
    assert isinstance(err.value, RunManagerError)
    return err.value.reason


# ------------------------------------------------------------------------------------------- check_offer


def test_an_honest_offer_is_kept_at_the_coordinator_step() -> None:
    run = start()
    rnd = round_view.current_round(run.acc)
    assert ex.round_step(run.acc, rnd) == run.acc.progress.step  # the step the trainer is told
    for i in (1, 2, 3):
        client = check_offer(run.acc, None, offer_from(run, i))
        assert client.signer == key(i) and client.p2p_identity == p2p(i)
        assert check_offer(run.acc, rnd, offer_from(run, i)) == client


def test_an_offer_of_an_earlier_round_is_judged_by_that_round() -> None:
    run = start()
    old_round = round_view.current_round(run.acc)
    old = [offer_from(run, i) for i in (1, 2, 3)]
    next_round(run, [1, 2, 3], [1, 2, 3])
    next_round(run, [1, 2, 3], [1, 2, 3])
    assert run.round.height == 2
    for i, offer in zip((1, 2, 3), old, strict=True):
        assert check_offer(run.acc, None, offer).signer == key(i)
    found = ex.round_for_step(run.acc, old[0].step)
    assert (found.height, found.random_seed, found.data_index) == (0, old_round.random_seed, 0)
    # the current round's assignment differs: the old batch is not assigned there
    moved = [o for o in old if o.body != offer_from(run, key_index(o)).body]
    assert moved
    for o in moved:
        o_now = dataclasses.replace(o, step=run.acc.progress.step, proof=offer_from(run, key_index(o)).proof)
        assert refused(run, o_now) == ex.NOT_ASSIGNED


def key_index(offer: Offer) -> int:
    return next(i for i, kp in KEYS.items() if bytes(kp.pubkey()) == offer.sender)


def test_refused_from_a_key_that_is_no_epoch_client() -> None:
    run = start()
    honest = offer_from(run, 1)
    stranger = dataclasses.replace(
        honest,
        sender=bytes(STRANGER.pubkey()),
        commitment_sig=bytes(STRANGER.sign_message(honest.data_hash)),
    )
    assert refused(run, stranger) == ex.NOT_A_CLIENT
    warmup = dataclasses.replace(stranger, body=Finished(bytes(32), True))
    assert refused(run, warmup) == ex.NOT_A_CLIENT


def test_refused_with_a_bad_commitment_signature() -> None:
    run = start()
    honest = offer_from(run, 1)
    by_other_key = dataclasses.replace(honest, commitment_sig=bytes(KEYS[2].sign_message(honest.data_hash)))
    assert refused(run, by_other_key) == ex.BAD_SIGNATURE
    other_hash = dataclasses.replace(honest, data_hash=sha(b"something else"))
    assert refused(run, other_hash) == ex.BAD_SIGNATURE
    truncated = dataclasses.replace(honest, commitment_sig=honest.commitment_sig[:63])
    assert refused(run, truncated) == ex.BAD_SIGNATURE
    unsigned_ready = dataclasses.replace(honest, body=Finished(bytes(32), True), commitment_sig=bytes(64))
    assert refused(run, unsigned_ready) == ex.BAD_SIGNATURE


def test_refused_with_a_wrong_committee_proof() -> None:
    run = start()
    honest = offer_from(run, 1)
    p = honest.proof
    for proof in (
        CommitteeProof(p.committee, p.position + 1, p.index),
        CommitteeProof(p.committee, p.position, (p.index + 1) % 3),
        CommitteeProof(committee.VERIFIER, p.position, p.index),
        CommitteeProof(p.committee, p.position, 7),
    ):
        assert refused(run, dataclasses.replace(honest, proof=proof)) == ex.BAD_PROOF
    finished = dataclasses.replace(honest, body=Finished(bytes(32), False), proof=proof)
    assert refused(run, finished) == ex.BAD_PROOF


def test_refused_from_a_verifier() -> None:
    run = start(verification_percent=50)  # 3 clients: one verifier
    acc, rnd = run.acc, round_view.current_round(run.acc)
    codes = {i: round_view.committee_proof(acc, i - 1, rnd)[0] for i in (1, 2, 3)}
    assert sorted(codes.values()) == [committee.VERIFIER, committee.TRAINER, committee.TRAINER]
    verifier = next(i for i, c in codes.items() if c == committee.VERIFIER)
    trainer = next(i for i, c in codes.items() if c == committee.TRAINER)
    claimed = offer_from(run, trainer).body
    offer = dataclasses.replace(offer_from(run, verifier), body=claimed)
    assert refused(run, offer) == ex.NOT_A_TRAINER
    # a verifier's round Finished is kept (its proof is valid)
    done = dataclasses.replace(offer_from(run, verifier), body=Finished(bytes(32), False))
    assert check_offer(acc, None, done).signer == key(verifier)


def test_refused_for_a_batch_not_assigned_to_the_sender() -> None:
    run = start()
    mine, theirs = offer_from(run, 1), offer_from(run, 2)
    assert refused(run, dataclasses.replace(mine, body=theirs.body)) == ex.NOT_ASSIGNED
    assert isinstance(mine.body, TrainingResult)
    start_, end = mine.body.batch
    for batch in ((start_, end + 1), (start_ + 1, end), (end + 100, end + 101)):
        assert refused(run, dataclasses.replace(mine, body=TrainingResult(batch))) == ex.NOT_ASSIGNED


def test_refused_for_an_unknown_round() -> None:
    run = start()
    honest = offer_from(run, 1)
    assert refused(run, dataclasses.replace(honest, step=honest.step + 1)) == ex.UNKNOWN_ROUND
    assert refused(run, dataclasses.replace(honest, step=honest.step - 1)) == ex.UNKNOWN_ROUND
    first = round_view.current_round(run.acc)
    for _ in range(4):
        next_round(run, [1, 2, 3], [1, 2, 3])
    # round 0 is no longer kept (the account holds 4 rounds)
    assert refused(run, honest) == ex.UNKNOWN_ROUND
    # a round given with an offer of another step
    current = offer_from(run, 1)
    assert refused(run, current, first) == ex.UNKNOWN_ROUND


def test_warmup_finished_needs_only_a_client_and_its_signature() -> None:
    run = configured()
    for i in (1, 2):
        run._apply(cl.join_run, key(i), NodeIdentity(key(i), p2p(i)), 1001, run.slot)
    run.at(1003).tick()
    assert state(run) == RunState.Warmup
    merkle = merkle_root([])
    data_hash = sha(merkle)
    ready = Offer(
        bytes(p2p(2)),
        0,
        CommitteeProof(0, 0, 0),
        data_hash,
        bytes(KEYS[2].sign_message(data_hash)),
        0,
        Finished(merkle, True),
    )
    assert check_offer(run.acc, None, ready).signer == key(2)
    # no round has started: a round's broadcast is refused
    assert refused(run, dataclasses.replace(ready, body=Finished(merkle, False))) == ex.UNKNOWN_ROUND
    result = dataclasses.replace(ready, body=TrainingResult((0, 3)), step=run.acc.progress.step)
    assert refused(run, result) == ex.UNKNOWN_ROUND


@dataclasses.dataclass(frozen=True)
class WireProof:  # the transport's decoded types have these field names (psyche.p2p.wire)
    committee: int
    position: int
    index: int


@dataclasses.dataclass(frozen=True)
class WireResult:
    batch: tuple[int, int]
    ticket: object


@dataclasses.dataclass(frozen=True)
class WireFinished:
    merkle: bytes
    warmup: bool


@dataclasses.dataclass(frozen=True)
class WireBroadcast:
    step: int
    proof: WireProof
    data_hash: bytes
    commitment_sig: bytes
    nonce: int
    body: WireResult | WireFinished


def test_offer_of_maps_a_decoded_broadcast() -> None:
    run = start()
    honest = offer_from(run, 1)
    assert isinstance(honest.body, TrainingResult)
    p = honest.proof
    wire = WireBroadcast(
        honest.step,
        WireProof(p.committee, p.position, p.index),
        honest.data_hash,
        honest.commitment_sig,
        honest.nonce,
        WireResult(honest.body.batch, object()),
    )
    assert ex.offer_of(honest.sender, wire) == honest
    assert check_offer(run.acc, None, ex.offer_of(honest.sender, wire)).signer == key(1)
    ready = dataclasses.replace(wire, body=WireFinished(bytes(32), True))
    assert ex.offer_of(honest.sender, ready).body == Finished(bytes(32), True)


# ------------------------------------------------------------------------------------------- ledger


def client(i: int) -> EpochClient:
    return EpochClient(key(i), p2p(i))


def fake_offer(i: int, batch: tuple[int, int], data_hash: bytes, nonce: int = 0) -> Offer:
    return Offer(
        bytes(p2p(i)), 5, CommitteeProof(2, 0, i), data_hash, bytes(64), nonce, TrainingResult(batch)
    )


def fake_finished(i: int, data_hash: bytes, nonce: int = 0) -> Offer:
    return Offer(
        bytes(p2p(i)), 5, CommitteeProof(2, 0, i), data_hash, bytes(64), nonce, Finished(bytes(32), False)
    )


A, B, C = (0, 3), (4, 7), (8, 11)
HA, HB, HB2, HC, HF = (sha(bytes([n])) for n in (10, 20, 21, 30, 40))


def filled_ledger() -> RoundLedger:
    ledger = RoundLedger(1, 5)
    assert ledger.offer(client(2), fake_offer(2, B, HB))
    assert ledger.offer(client(1), fake_offer(1, A, HA))
    assert not ledger.offer(client(1), fake_offer(1, A, HA, nonce=1))  # a re-send
    assert ledger.offer(client(2), fake_offer(2, B, HB2))  # a second commitment for the same batch
    assert ledger.offer(client(3), fake_finished(3, HF))
    assert not ledger.offer(client(3), fake_finished(3, HF, nonce=1))
    assert ledger.offer(client(4), fake_offer(4, C, HC))
    return ledger


def test_ledger_keeps_arrival_order_and_drops_resends() -> None:
    ledger = filled_ledger()
    assert ledger.broadcasts == [HB, HA, HB2, HF, HC]
    assert ledger.merkle() == merkle_root([HB, HA, HB2, HF, HC])
    assert [a.data_hash for a in ledger.commitments(B)] == [HB, HB2]
    assert [a.sender for a in ledger.commitments(A)] == [bytes(p2p(1))]
    assert ledger.commitments((100, 101)) == []
    assert set(ledger.finished) == {bytes(p2p(3))}
    assert [a.data_hash for a in ledger.missing()] == [HB, HA, HB2, HC]


def test_ledger_blooms_hold_exactly_the_verified() -> None:
    ledger = filled_ledger()
    empty = bloom.make_bloom(b"p")
    assert ledger.participant_bloom(b"p") == empty and ledger.broadcast_bloom(b"b") == bloom.make_bloom(b"b")
    assert ledger.verified(bytes(p2p(2)), HB2)  # the later commitment of B verifies first: it is the vote
    assert ledger.verified(bytes(p2p(1)), HA)
    assert ledger.verified(bytes(p2p(2)), HB)
    assert not ledger.verified(bytes(p2p(2)), HB)  # twice
    assert not ledger.verified(bytes(p2p(1)), HB)  # no such offer
    assert not ledger.verified(bytes(p2p(3)), HF)  # a Finished has no payload
    assert ledger.participants == [key(2), key(1)]
    assert ledger.votes == {B: HB2, A: HA}
    assert ledger.voted_batches() == {A, B}
    assert [a.data_hash for a in ledger.missing()] == [HC]

    participants = ledger.participant_bloom(b"p")
    assert participants == bloom.make_bloom(b"p", [participant_hash(key(2)), participant_hash(key(1))])
    assert bloom.bloom_contains(participants, sha(bytes(key(1))))
    assert bloom.bloom_contains(participants, sha(bytes(key(2))))
    assert not bloom.bloom_contains(participants, sha(bytes(key(4))))  # announced but not verified
    assert not bloom.bloom_contains(participants, sha(bytes(key(3))))

    broadcasts = ledger.broadcast_bloom(b"b")
    assert broadcasts == bloom.make_bloom(b"b", [HB2, HA])
    for h, inside in ((HB2, True), (HA, True), (HB, False), (HC, False), (HF, False)):
        assert bloom.bloom_contains(broadcasts, h) is inside
    # the merkle root covers every broadcast, verified or not
    assert ledger.merkle() == merkle_root([HB, HA, HB2, HF, HC])


# ------------------------------------------------------------------------------------------- consensus


def witness(*voted: bytes) -> Witness:
    seed = b"".join(voted) or b"none"
    return Witness(WitnessProof(), Bloom(), bloom.make_bloom(seed, list(voted)))


def test_consensus_with_three_witnesses() -> None:
    ledger = filled_ledger()
    d = (12, 15)  # assigned, never announced
    e = (16, 19)
    assert ledger.offer(client(5), fake_offer(5, e, sha(b"e1")))
    assert ledger.offer(client(5), fake_offer(5, e, sha(b"e2")))
    witnesses = [
        witness(HA, HB, HB2, sha(b"e1")),  # B: HB arrived first, so this witness's vote goes to HB
        witness(HA, HB2, HC),
        witness(HB2, sha(b"e2")),
    ]
    assert committee.witness_quorum(3) == 2
    chosen = consensus(ledger, [e, d, C, B, A], witnesses, witness_nodes=0)
    # A: 2 votes; B: HB 1, HB2 2; C: 1 vote (no quorum); D: nothing; E: 1-1 tie below quorum
    assert chosen == [(A, HA), (B, HB2)]


def test_consensus_tie_goes_to_the_larger_hash() -> None:
    ledger = RoundLedger(0, 3)
    low, high = sorted((sha(b"x"), sha(b"y")))
    assert ledger.offer(client(1), fake_offer(1, A, high))
    assert ledger.offer(client(1), fake_offer(1, A, low))
    witnesses = [witness(high), witness(high), witness(low), witness(low)]
    assert committee.witness_quorum(4) == 2
    assert consensus(ledger, [A], witnesses, witness_nodes=0) == [(A, high)]


def test_consensus_without_witnesses_or_quorum() -> None:
    ledger = filled_ledger()
    assert consensus(ledger, [A, B], [], witness_nodes=0) == []
    # witness_nodes = 3 sets the quorum at 2 even with one witness stored
    assert consensus(ledger, [A, B], [witness(HA)], witness_nodes=3) == []
    assert consensus(ledger, [A, B], [witness(HA)], witness_nodes=1) == [(A, HA)]


def test_consensus_gaps_are_attested_batches_without_a_winner_here() -> None:
    ledger = RoundLedger(0, 3)
    assert ledger.offer(client(1), fake_offer(1, A, HA))
    assert ledger.offer(client(3), fake_offer(3, C, HC))
    hb_we_never_got = HB
    seen = [participant_hash(key(1)), participant_hash(key(2))]  # 3 trained nothing the witnesses saw
    witnesses = [
        Witness(
            WitnessProof(),
            bloom.make_bloom(bytes([n]), seen),
            bloom.make_bloom(bytes([n]), [HA, hb_we_never_got]),
        )
        for n in range(3)
    ]
    assignments = [BatchAssignment(key(3), *C), BatchAssignment(key(2), *B), BatchAssignment(key(1), *A)]
    assert consensus(ledger, [A, B, C], witnesses, witness_nodes=0) == [(A, HA)]
    assert ex.consensus_gaps(ledger, assignments, witnesses, witness_nodes=0) == [B]
    assert ledger.offer(client(2), fake_offer(2, B, hb_we_never_got))
    assert ex.consensus_gaps(ledger, assignments, witnesses, witness_nodes=0) == []
    assert ex.consensus_gaps(ledger, assignments, [], witness_nodes=0) == []


# ------------------------------------------------------------------------------------------- health


def health_check(run: Run, reporter: int, hc: HealthCheck) -> None:
    run._apply(
        cl.health_check, key(reporter), hc.accused, hc.committee, hc.position, hc.index, run.now, run.slot
    )


def test_health_checks_are_accepted_by_the_chain_and_spare_the_healthy() -> None:
    run = start(4)
    assert health_checks(run.acc, key(1)) == []  # height 0
    next_round(run, [1, 2], [1, 2])  # witnesses 1 and 2 only ever see 1 and 2
    assert health_checks(run.acc, key(1)) == []  # height 1
    next_round(run, [1, 2], [1, 2])
    assert run.round.height == 2
    checks = health_checks(run.acc, key(1))
    assert {hc.accused.signer for hc in checks} == {key(3), key(4)} and len(checks) == 2
    assert health_checks(run.acc, key(2)) == checks
    for hc in checks:
        assert hc.accused == NodeIdentity(key(key_of(hc)), p2p(key_of(hc)))
        ix.health_check(
            key(1),
            key(50),
            key(51),
            accused=hc.accused,
            committee=hc.committee,
            position=hc.position,
            index=hc.index,
        )  # the instruction takes exactly these
    # the healthy: the chain refuses a report built the same way (6014)
    prev = round_view.previous_round(run.acc)
    assert prev is not None
    idx = round_view.client_index(run.acc, key(2))
    assert idx is not None
    code, position = round_view.committee_proof(run.acc, idx, prev)
    with pytest.raises(cl.CoordinatorProgramError) as err:
        health_check(run, 1, HealthCheck(NodeIdentity(key(2), p2p(2)), code, position, idx))
    assert err.value.code == 6014
    for hc in checks:
        health_check(run, 1, hc)
    states = {c.signer: c.state for c in run.acc.epoch_state.clients}
    assert states == {
        key(1): ClientState.Healthy,
        key(2): ClientState.Healthy,
        key(3): ClientState.Dropped,
        key(4): ClientState.Dropped,
    }
    assert health_checks(run.acc, key(1)) == []  # already dropped: nothing more to report


def key_of(hc: HealthCheck) -> int:
    return next(i for i in KEYS if key(i) == hc.accused.signer)


def test_only_a_previous_round_witness_reports() -> None:
    run = start(3, witness_nodes=1)
    for _ in range(2):
        elected = [i for i in (1, 2, 3) if run.proof(i).witness]
        assert len(elected) == 1
        next_round(run, elected, elected)
    prev = round_view.previous_round(run.acc)
    assert prev is not None
    for i in (1, 2, 3):
        proof = round_view.witness_proof(run.acc, key(i), prev)
        assert proof is not None
        checks = health_checks(run.acc, key(i))
        if proof.witness:
            assert len(checks) == 2  # the single witness saw only itself
            for hc in checks:
                health_check(run, i, hc)
        else:
            assert checks == []
