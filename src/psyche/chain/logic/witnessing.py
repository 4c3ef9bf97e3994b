"""The client-sent instructions that carry proofs: warmup_witness, witness, health_check, checkpoint."""

from __future__ import annotations

import hashlib

from solders.pubkey import Pubkey

from psyche.chain import bloom, committee
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.model import Checkpoint, CheckpointKind
from psyche.chain.accounts.state import Bloom, ClientState, NodeIdentity, Witness, WitnessProof
from psyche.chain.logic.errors import CoordinatorErrorCode as E
from psyche.chain.logic.errors import CoordinatorPanic, fail
from psyche.chain.logic.machine import change_state, halted, quorum, start_round_train
from psyche.chain.logic.program import begin, find_signer, program_tick
from psyche.chain.logic.work import MAX_WITNESSES, WClient, Work, WRound, store
from psyche.chain.logic.work import with_checkpoint as _with_checkpoint


def _effective_witness_nodes(w: Work) -> int:
    return committee.effective_witness_nodes(w.config.witness_nodes, len(w.clients))


def _epoch_client(w: Work, index: int) -> WClient:
    if index >= len(w.clients):
        raise CoordinatorPanic(f"coordinator panicked: epoch client index {index} out of range")
    return w.clients[index]


def _check_duplicate_and_push(w: Work, sender: Pubkey, witness: Witness) -> WRound:
    """Reject a second witness from the same signer (6013), then push (max 32, else 6017)."""
    r = w.current_round
    for stored in r.witnesses:
        if _epoch_client(w, stored.proof.index).signer == sender:
            raise fail(E.CoordinatorErrorDuplicateWitness)
    if len(r.witnesses) >= MAX_WITNESSES:
        raise fail(E.CoordinatorErrorWitnessesFull)
    r.witnesses.append(witness)
    return r


def _selection_valid(w: Work, r: WRound) -> None:
    """`CommitteeSelection::new` preconditions over round ``r`` (else 6020)."""
    if not committee.selection_is_valid(
        r.clients_len, r.tie_breaker_tasks, w.config.witness_nodes, w.config.verification_percent
    ):
        raise fail(E.CoordinatorErrorInvalidCommitteeSelection)


def _shuffled(index: int, r: WRound, salt: bytes) -> int:
    seed = committee.purpose_seed(committee.round_seed(r.random_seed), salt)
    try:
        return committee.swap_or_not_shuffle(index, r.clients_len, seed)
    except ValueError as exc:
        raise CoordinatorPanic("coordinator panicked: shuffled index out of range") from exc


def warmup_witness(
    acc: CoordinatorAccount,
    user: Pubkey,
    proof: WitnessProof,
    participant_bloom: Bloom,
    broadcast_bloom: Bloom,
    broadcast_merkle: bytes,
    now: int,
    slot: int,
) -> CoordinatorAccount:
    """`warmup_witness`: any registered client; the effective witness count starts round 0 early.

    Raises:
        CoordinatorProgramError: CoordinatorErrorHalted, CoordinatorErrorInvalidRunState, SignerNotAClient, or
            a duplicate or full witness list.
        CoordinatorPanic: from the tick that follows.
    """
    w = begin(acc)
    sender = find_signer(w, user).signer
    if halted(w):
        raise fail(E.CoordinatorErrorHalted)
    if w.run_state == RunState.RoundTrain:
        pass  # already started: ignored, but the tick still runs
    elif w.run_state != RunState.Warmup:
        raise fail(E.CoordinatorErrorInvalidRunState)
    else:
        needed = _effective_witness_nodes(w)
        witness = Witness(proof, participant_bloom, broadcast_bloom, bytes(broadcast_merkle))
        r = _check_duplicate_and_push(w, sender, witness)
        if len(r.witnesses) == needed:
            start_round_train(w, now, committee.tick_random_seed(now, slot))
    program_tick(w, now, slot)
    return store(w)


def witness(
    acc: CoordinatorAccount,
    user: Pubkey,
    proof: WitnessProof,
    participant_bloom: Bloom,
    broadcast_bloom: Bloom,
    broadcast_merkle: bytes,
    now: int,
    slot: int,
) -> CoordinatorAccount:
    """`witness`: an elected witness of the current round reports its blooms (metadata is not stored).

    Raises:
        CoordinatorProgramError: CoordinatorErrorHalted, CoordinatorErrorInvalidRunState,
            CoordinatorErrorInvalidWitness, CoordinatorErrorInvalidCommitteeSelection, SignerNotAClient, or a
            duplicate or full witness list.
        CoordinatorPanic: a shuffled index out of range, or from the tick that follows.
    """
    w = begin(acc)
    sender = find_signer(w, user).signer
    if halted(w):
        raise fail(E.CoordinatorErrorHalted)
    needed = _effective_witness_nodes(w)
    if w.run_state not in (RunState.RoundTrain, RunState.RoundWitness):
        raise fail(E.CoordinatorErrorInvalidRunState)
    r = w.current_round
    _selection_valid(w, r)
    ok = proof.index < len(w.clients) and w.clients[proof.index].signer == sender
    if ok:
        position = _shuffled(proof.index, r, committee.WITNESS_SALT)
        elected = committee.is_witness_position(position, w.config.witness_nodes)
        ok = proof.position == position and bool(proof.witness) == elected
    if not ok or not proof.witness:
        raise fail(E.CoordinatorErrorInvalidWitness)
    r = _check_duplicate_and_push(
        w, sender, Witness(proof, participant_bloom, broadcast_bloom, bytes(broadcast_merkle))
    )
    if len(r.witnesses) == needed and w.run_state != RunState.RoundWitness:
        change_state(w, now, RunState.RoundWitness)
    program_tick(w, now, slot)
    return store(w)


def _historical_client(w: Work, n: int, prev_clients_len: int) -> WClient | None:
    """`get_client_at_historical_index`: current clients first, then exited ones counted from the end."""
    if n < len(w.clients):
        return w.clients[n]
    if n < prev_clients_len:
        offset = prev_clients_len - n - 1
        return w.exited[-1 - offset] if offset < len(w.exited) else None
    return None


def trainer_health_score(signer: Pubkey, witnesses: list[Witness] | tuple[Witness, ...]) -> int:
    """How many witnesses' participant blooms contain sha256(signer)."""
    h = hashlib.sha256(bytes(signer)).digest()
    return sum(bloom.contains(wt.participant_bloom.keys, wt.participant_bloom.bits, h) for wt in witnesses)


def _accused_is_healthy(
    w: Work, accused: NodeIdentity, committee_code: int, position: int, index: int
) -> bool:
    """`Coordinator::healthy` over the previous round; proof errors raise 6010/6020/6021."""
    prev = w.previous_round()
    if prev is None:
        raise fail(E.CoordinatorErrorNoActiveRound)
    if index >= prev.clients_len:
        raise fail(E.CoordinatorErrorInvalidCommitteeProof)
    client = _historical_client(w, index, prev.clients_len)
    if client is None:
        raise fail(E.CoordinatorErrorInvalidCommitteeProof)
    _selection_valid(w, prev)
    ok = client.signer == accused.signer
    ok = ok and index < len(w.clients) and w.clients[index].signer == client.signer
    if ok:
        expected = _shuffled(index, prev, committee.COMMITTEE_SALT)
        in_committee = committee.committee_from_position(
            expected, prev.clients_len, prev.tie_breaker_tasks, w.config.verification_percent
        )
        ok = position == expected and committee_code == in_committee
    if not ok:
        raise fail(E.CoordinatorErrorInvalidCommitteeProof)
    if committee_code != committee.TRAINER:
        raise CoordinatorPanic("coordinator panicked: health check of a non-trainer committee (todo!)")
    score = trainer_health_score(client.signer, prev.witnesses)
    return score >= quorum(w, len(prev.witnesses))


def health_check(
    acc: CoordinatorAccount,
    reporter: Pubkey,
    accused: NodeIdentity,
    committee_code: int,
    position: int,
    index: int,
    now: int,
    slot: int,
) -> CoordinatorAccount:
    """`health_check`: drop a trainer that fewer than quorum previous-round witnesses saw.

    Raises:
        CoordinatorProgramError: CoordinatorErrorHalted, CoordinatorErrorInvalidHealthCheck, SignerNotAClient,
            CoordinatorErrorNoActiveRound, or a bad committee selection or proof.
        CoordinatorPanic: an accused that is not a trainer (the program's todo!()), or from the tick that
            follows.
    """
    w = begin(acc)
    find_signer(w, reporter)
    if halted(w):
        raise fail(E.CoordinatorErrorHalted)
    if w.current_round.height < 2:
        raise fail(E.CoordinatorErrorInvalidHealthCheck)
    if _accused_is_healthy(w, accused, committee_code, position, index):
        raise fail(E.CoordinatorErrorInvalidHealthCheck)
    target = _epoch_client(w, index)
    if target.state == ClientState.Healthy:
        target.state = ClientState.Dropped
    program_tick(w, now, slot)
    return store(w)


_REWRITES = {
    (CheckpointKind.P2P, CheckpointKind.Hub): CheckpointKind.P2P,
    (CheckpointKind.P2PGcs, CheckpointKind.Gcs): CheckpointKind.P2PGcs,
    (CheckpointKind.Hub, CheckpointKind.Hub): CheckpointKind.Hub,
    (CheckpointKind.Gcs, CheckpointKind.Gcs): CheckpointKind.Gcs,
    (CheckpointKind.P2PGcs, CheckpointKind.Hub): CheckpointKind.P2P,
    (CheckpointKind.P2P, CheckpointKind.Gcs): CheckpointKind.P2PGcs,
}


def rewrite_checkpoint(current: Checkpoint, reported: Checkpoint) -> Checkpoint:
    """The model checkpoint after an epoch client reports ``reported`` (spec 5.5); others are ignored."""
    kind = _REWRITES.get((current.kind, reported.kind))
    return current if kind is None else Checkpoint(kind, reported.repo)


def checkpoint(
    acc: CoordinatorAccount, user: Pubkey, repo: Checkpoint, now: int, slot: int
) -> CoordinatorAccount:
    """`checkpoint`: an epoch client publishes where the latest weights are; ticks unless halted.

    Raises:
        CoordinatorProgramError: SignerNotAClient (not an epoch client).
        CoordinatorPanic: from the tick that follows.
    """
    w = begin(acc)
    sender = find_signer(w, user).signer
    if not any(c.signer == sender for c in w.clients):
        raise fail(E.SignerNotAClient)
    w.model = _with_checkpoint(w.model, rewrite_checkpoint(w.model.checkpoint, repo))
    if not halted(w):
        program_tick(w, now, slot)
    return store(w)
