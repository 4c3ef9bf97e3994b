"""Round bookkeeping of the peer-to-peer result exchange (spec distro.md sections 3 and 4).

Pure: no I/O, no threads, no clock, no torch. The transport decodes a peer's signed broadcast and the
caller maps it to an ``Offer``; this module decides whether to keep it (``check_offer``), remembers what
arrived and what was verified for one round (``RoundLedger``), builds a witness's content from that
(blooms and the broadcast merkle root), picks the commitment to apply for each batch (``consensus``)
and lists the trainers to report as unhealthy (``health_checks``). Every chain rule it needs (committee
shuffle, assignments, quorum, health score, blooms) comes from ``psyche.chain``, so a client judges a
peer exactly as the coordinator program would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from solders.pubkey import Pubkey
from solders.signature import Signature

from psyche.chain import bloom, committee, round_view
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.state import Bloom, ClientState, EpochClient, NodeIdentity, Round, Witness
from psyche.chain.data_selection import BatchAssignment
from psyche.chain.logic.witnessing import trainer_health_score
from psyche.client.actions import participant_hash
from psyche.errors import BroadcastRefused

__all__ = [
    "BAD_PROOF",
    "BAD_SIGNATURE",
    "EMPTY_MERKLE_ROOT",
    "NOT_ASSIGNED",
    "NOT_A_CLIENT",
    "NOT_A_TRAINER",
    "UNKNOWN_ROUND",
    "Announced",
    "Batch",
    "BroadcastFields",
    "BroadcastRefused",
    "CommitteeProof",
    "Finished",
    "HealthCheck",
    "Offer",
    "RoundLedger",
    "TrainingResult",
    "check_offer",
    "consensus",
    "consensus_gaps",
    "health_checks",
    "merkle_root",
    "offer_of",
    "round_batches",
    "round_for_step",
    "round_step",
]

Batch = tuple[int, int]  # (start, end) sample indices, inclusive: the batch id

# The reasons a broadcast is refused (BroadcastRefused.reason); fixed phrases, counted in p2p-status.json.
NOT_A_CLIENT = "not an epoch client"
BAD_SIGNATURE = "bad commitment signature"
UNKNOWN_ROUND = "unknown round"
BAD_PROOF = "bad committee proof"
NOT_A_TRAINER = "not a trainer"
NOT_ASSIGNED = "batch not assigned to sender"

EMPTY_MERKLE_ROOT = bytes(32)
_LEAF = b"\x00"
_NODE = b"\x01"


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def merkle_root(hashes: Sequence[bytes]) -> bytes:
    """Upstream's broadcast merkle root (shared/core merkle_tree.rs) over ``hashes`` in the given order.

    leaf = sha256(0x00 ‖ x), node = sha256(0x01 ‖ left ‖ right), the last node of an odd level paired
    with itself; one hash gives its leaf. No hashes give 32 zero bytes: upstream's tree then has no root
    and the witness sends ``MerkleRoot::default()``.
    """
    if not hashes:
        return EMPTY_MERKLE_ROOT
    level = [_sha256(_LEAF, h) for h in hashes]
    while len(level) > 1:
        level = [_sha256(_NODE, level[i], level[min(i + 1, len(level) - 1)]) for i in range(0, len(level), 2)]
    return level[0]


# ------------------------------------------------------------------------------------------- offers


@dataclass(frozen=True, slots=True)
class CommitteeProof:
    """The sender's committee membership in the broadcast's round (as health_check takes it)."""

    committee: int  # committee.TIE_BREAKER / VERIFIER / TRAINER
    position: int
    index: int  # into the round's epoch clients


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """Body of a broadcast announcing a trained batch (where to fetch it stays with the transport)."""

    batch: Batch


@dataclass(frozen=True, slots=True)
class Finished:
    """Body of a broadcast saying the sender is done with the round (or, ``warmup``, ready to start)."""

    merkle: bytes
    warmup: bool


@dataclass(frozen=True, slots=True)
class Offer:
    """A decoded broadcast as the transport received it; the envelope's signature is already checked."""

    sender: bytes  # the sender's P2P identity (ed25519 public key, 32 bytes)
    step: int
    proof: CommitteeProof
    data_hash: bytes  # the commitment: sha256 of the payload fields (32 bytes)
    commitment_sig: bytes  # ed25519 by ``sender`` over ``data_hash`` (64 bytes)
    nonce: int  # bumped on each re-send of the same broadcast
    body: TrainingResult | Finished


class ProofFields(Protocol):
    """What ``offer_of`` reads of a decoded broadcast's proof."""

    @property
    def committee(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def index(self) -> int: ...


@runtime_checkable
class FinishedFields(Protocol):
    """What ``offer_of`` reads of a decoded Finished body."""

    @property
    def merkle(self) -> bytes: ...
    @property
    def warmup(self) -> bool: ...


@runtime_checkable
class ResultFields(Protocol):
    """What ``offer_of`` reads of a decoded TrainingResult body (its ticket stays with the transport)."""

    @property
    def batch(self) -> tuple[int, int]: ...


class BroadcastFields(Protocol):
    """What ``offer_of`` reads of a decoded broadcast (``psyche.p2p.wire.Broadcast`` has these fields)."""

    @property
    def step(self) -> int: ...
    @property
    def proof(self) -> ProofFields: ...
    @property
    def data_hash(self) -> bytes: ...
    @property
    def commitment_sig(self) -> bytes: ...
    @property
    def nonce(self) -> int: ...
    @property
    def body(self) -> ResultFields | FinishedFields: ...


def offer_of(sender: bytes, broadcast: BroadcastFields) -> Offer:
    """The ``Offer`` of a broadcast the transport decoded from ``sender`` (matched by field names, so this
    module does not import the transport)."""
    b = broadcast.body
    body: TrainingResult | Finished
    if isinstance(b, FinishedFields):
        body = Finished(bytes(b.merkle), bool(b.warmup))
    else:
        body = TrainingResult((int(b.batch[0]), int(b.batch[1])))
    p = broadcast.proof
    return Offer(
        sender=bytes(sender),
        step=broadcast.step,
        proof=CommitteeProof(p.committee, p.position, p.index),
        data_hash=bytes(broadcast.data_hash),
        commitment_sig=bytes(broadcast.commitment_sig),
        nonce=broadcast.nonce,
        body=body,
    )


def round_step(acc: CoordinatorAccount, rnd: Round) -> int:
    """The coordinator step during ``rnd`` (step counts rounds from the epoch's ``start_step``)."""
    return acc.epoch_state.start_step + rnd.height


def round_for_step(acc: CoordinatorAccount, step: int) -> Round:
    """The round of this epoch that ran at ``step``, among the few the account keeps.

    Raises BroadcastRefused(UNKNOWN_ROUND) for a step before the kept rounds, after the current one,
    or of a round never started (warmup: no round yet).
    """
    es = acc.epoch_state
    head = es.rounds[es.rounds_head]
    height = step - es.start_step
    back = head.height - height
    if height < 0 or not 0 <= back < len(es.rounds):
        raise BroadcastRefused(UNKNOWN_ROUND, f"step {step}")
    rnd = es.rounds[(es.rounds_head - back) % len(es.rounds)]
    if rnd.height != height or rnd.clients_len == 0:
        raise BroadcastRefused(UNKNOWN_ROUND, f"step {step}")
    return rnd


def round_batches(acc: CoordinatorAccount, rnd: Round) -> list[Batch]:
    """Every batch of ``rnd`` in batch-id order (the order results are applied in)."""
    return sorted((a.start, a.end) for a in round_view.round_assignments(acc, rnd))


def _signature_ok(offer: Offer) -> bool:
    try:
        return Signature(offer.commitment_sig).verify(Pubkey(offer.sender), offer.data_hash)
    except ValueError:  # a key or signature of the wrong length
        return False


def check_offer(acc: CoordinatorAccount, rnd: Round | None, offer: Offer) -> EpochClient:
    """The epoch client that sent ``offer`` if the broadcast may be kept, else BroadcastRefused(reason).

    ``rnd`` is the broadcast's round, or None to find it from ``offer.step`` (``round_for_step``). Kept
    only when (spec 3):

    - the round is known and ``offer.step`` is its step (else UNKNOWN_ROUND);
    - the sender's P2P identity is one of the round's epoch clients (else NOT_A_CLIENT);
    - the commitment signature by that identity over ``data_hash`` verifies (else BAD_SIGNATURE);
    - ``proof`` is that client's committee proof in the round, by the chain's shuffle (else BAD_PROOF);
    - a TrainingResult comes from the Trainer committee (else NOT_A_TRAINER) and names exactly the batch
      the round assigned to that client (else NOT_ASSIGNED).

    A warmup Finished belongs to no round: the sender must be an epoch client and sign; nothing else is
    checked (upstream sends it with an empty proof). A round's Finished needs a valid proof from any
    committee: upstream also demands Trainer there, which would only make witnesses wait for a
    verifier's Finished until the round times out.
    """
    body = offer.body
    if isinstance(body, Finished) and body.warmup:
        client = next((c for c in acc.epoch_state.clients if bytes(c.p2p_identity) == offer.sender), None)
        if client is None:
            raise BroadcastRefused(NOT_A_CLIENT)
        if not _signature_ok(offer):
            raise BroadcastRefused(BAD_SIGNATURE)
        return client
    if rnd is None:
        rnd = round_for_step(acc, offer.step)
    elif offer.step != round_step(acc, rnd):
        raise BroadcastRefused(UNKNOWN_ROUND, f"step {offer.step} is not round {rnd.height}'s")
    # The round's own client list: the proof's index and the assignment are defined over it.
    clients = round_view.historical_clients(acc, rnd.clients_len)
    index = next((i for i, c in enumerate(clients) if bytes(c.p2p_identity) == offer.sender), None)
    if index is None:
        raise BroadcastRefused(NOT_A_CLIENT)
    client = clients[index]
    if not _signature_ok(offer):
        raise BroadcastRefused(BAD_SIGNATURE)
    proof = offer.proof
    valid_selection = committee.selection_is_valid(
        rnd.clients_len, rnd.tie_breaker_tasks, acc.config.witness_nodes, acc.config.verification_percent
    )
    if not valid_selection or proof.index != index:
        raise BroadcastRefused(BAD_PROOF)
    if (proof.committee, proof.position) != round_view.committee_proof(acc, index, rnd):
        raise BroadcastRefused(BAD_PROOF)
    if isinstance(body, TrainingResult):
        if proof.committee != committee.TRAINER:
            raise BroadcastRefused(NOT_A_TRAINER)
        assigned = round_view.assignment_for(acc, client.signer, rnd)
        if assigned is None or (assigned.start, assigned.end) != tuple(body.batch):
            raise BroadcastRefused(NOT_ASSIGNED, f"batch {body.batch}")
    return client


# ------------------------------------------------------------------------------------------- ledger


@dataclass(frozen=True, slots=True)
class Announced:
    """An accepted TrainingResult broadcast: who sent it, for which batch, with which commitment."""

    client: EpochClient
    offer: Offer
    batch: Batch

    @property
    def sender(self) -> bytes:
        return self.offer.sender

    @property
    def data_hash(self) -> bytes:
        return self.offer.data_hash


class RoundLedger:
    """What one client received and verified for one round (epoch, height), in arrival order.

    Feed it offers that passed ``check_offer`` (``offer``) and payloads whose hash matched their
    commitment (``verified``). It answers a witness's content for the round (``participant_bloom``,
    ``broadcast_bloom``, ``merkle``), what is still to download (``missing``), who has finished, and
    the commitments per batch that ``consensus`` chooses from.
    """

    def __init__(self, epoch: int, height: int) -> None:
        self.epoch = epoch
        self.height = height
        self._by_batch: dict[Batch, list[Announced]] = {}
        self._announced: dict[tuple[bytes, bytes], Announced] = {}  # by (sender, data_hash), arrival order
        self._broadcasts: list[bytes] = []
        self._finished: dict[bytes, Finished] = {}
        self._verified: set[tuple[bytes, bytes]] = set()
        self._participants: dict[Pubkey, None] = {}  # signers, in verification order
        self._votes: dict[Batch, bytes] = {}

    def offer(self, client: EpochClient, offer: Offer) -> bool:
        """Record an accepted broadcast; False for a re-send (same sender and content, any nonce).

        Every new broadcast's hash joins the merkle list. A TrainingResult joins its batch's
        commitments; a Finished marks its sender finished (the first one counts).
        """
        body = offer.body
        if isinstance(body, Finished):
            if offer.sender in self._finished:
                return False
            self._finished[offer.sender] = body
        else:
            key = (offer.sender, offer.data_hash)  # the hash covers the batch, so this names one result
            if key in self._announced:
                return False
            announced = Announced(client, offer, (body.batch[0], body.batch[1]))
            self._announced[key] = announced
            self._by_batch.setdefault(announced.batch, []).append(announced)
        self._broadcasts.append(bytes(offer.data_hash))
        return True

    def verified(self, sender: bytes, data_hash: bytes) -> bool:
        """Mark the payload ``sender`` committed to as downloaded with a matching hash.

        Its trainer joins the participants; the first verified commitment of a batch is this
        witness's vote for it. False (nothing changes) when no accepted offer matches or it was
        already verified.
        """
        key = (sender, data_hash)
        match = self._announced.get(key)
        if match is None or key in self._verified:
            return False
        self._verified.add(key)
        self._participants.setdefault(match.client.signer, None)
        self._votes.setdefault(match.batch, bytes(data_hash))
        return True

    def commitments(self, batch: Batch) -> list[Announced]:
        """The accepted offers for ``batch`` in arrival order."""
        return list(self._by_batch.get((batch[0], batch[1]), ()))

    def missing(self) -> list[Announced]:
        """Accepted offers whose payload is not verified yet, in arrival order."""
        return [a for key, a in self._announced.items() if key not in self._verified]

    @property
    def broadcasts(self) -> list[bytes]:
        """Every accepted broadcast's hash, in arrival order (the merkle leaves)."""
        return list(self._broadcasts)

    @property
    def finished(self) -> Mapping[bytes, Finished]:
        """Finished messages by sender P2P identity."""
        return dict(self._finished)

    @property
    def participants(self) -> list[Pubkey]:
        """Signers of the trainers whose payload was verified, in verification order."""
        return list(self._participants)

    @property
    def votes(self) -> Mapping[Batch, bytes]:
        """This witness's vote per batch: the first verified commitment."""
        return dict(self._votes)

    def voted_batches(self) -> set[Batch]:
        """The batches with a verified payload (what a witness waits for before attesting)."""
        return set(self._votes)

    def participant_bloom(self, seed: bytes) -> Bloom:
        """Bloom of sha256(signer) of every verified trainer (what the chain's health score reads)."""
        return bloom.make_bloom(seed, [participant_hash(s) for s in self._participants])

    def broadcast_bloom(self, seed: bytes) -> Bloom:
        """Bloom of the voted commitments (one per batch with a verified payload)."""
        return bloom.make_bloom(seed, list(self._votes.values()))

    def merkle(self) -> bytes:
        """``merkle_root`` over every broadcast hash in arrival order."""
        return merkle_root(self._broadcasts)


# ------------------------------------------------------------------------------------------- consensus


def consensus(
    ledger: RoundLedger, batches: Sequence[Batch], witnesses: Sequence[Witness], *, witness_nodes: int
) -> list[tuple[Batch, bytes]]:
    """The commitment to apply for each batch of the ledger's round, in batch-id order (spec 3).

    ``witnesses`` are the ones the chain stored for the round that attested the ledger's round (the
    round after it); ``witness_nodes`` is the run config's. Each witness gives +1 to the first
    commitment of the batch, in this ledger's arrival order, found in its broadcast bloom. The best
    score wins if it reaches the quorum (``committee.witness_quorum``); among equal best scores the
    larger data hash wins, as upstream, so the choice does not hang on arrival order. A batch without
    a winner (nobody announced it, or too few witnesses voted for any commitment) is left out: nobody
    applies it. No witnesses with ``witness_nodes`` = 0 leave every batch out.
    """
    try:
        quorum = committee.witness_quorum(len(witnesses), witness_nodes)
    except ValueError:
        return []
    chosen: list[tuple[Batch, bytes]] = []
    for batch in sorted((b[0], b[1]) for b in batches):
        hashes = [a.data_hash for a in ledger.commitments(batch)]
        scores = [0] * len(hashes)
        for wt in witnesses:
            voted = (i for i, h in enumerate(hashes) if bloom.bloom_contains(wt.broadcast_bloom, h))
            first = next(voted, None)
            if first is not None:
                scores[first] += 1
        candidates = [i for i, s in enumerate(scores) if s >= quorum]
        if candidates:
            best = max(candidates, key=lambda i: (scores[i], hashes[i]))
            chosen.append((batch, hashes[best]))
    return chosen


def consensus_gaps(
    ledger: RoundLedger,
    assignments: Sequence[BatchAssignment[Pubkey]],
    witnesses: Sequence[Witness],
    *,
    witness_nodes: int,
) -> list[Batch]:
    """Batches the witnesses attest but ``consensus`` over this ledger has no winner for, in batch-id order.

    ``assignments`` are the ledger's round's (``round_view.round_assignments``). A batch whose trainer at
    least quorum witnesses list as a participant was verified, and so voted for, by them; if this ledger
    finds no winner for it, this client lacks the commitment its peers apply (a broadcast it never got),
    and applying without it would desynchronise it: the caller treats such a batch like a consensus
    payload it cannot fetch.
    """
    try:
        quorum = committee.witness_quorum(len(witnesses), witness_nodes)
    except ValueError:
        return []
    batches = [(a.start, a.end) for a in assignments]
    won = {batch for batch, _ in consensus(ledger, batches, witnesses, witness_nodes=witness_nodes)}
    return sorted(
        (a.start, a.end)
        for a in assignments
        if (a.start, a.end) not in won and trainer_health_score(a.trainer, list(witnesses)) >= quorum
    )


# ------------------------------------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """The arguments of the health_check instruction (instructions.coordinator.health_check)."""

    accused: NodeIdentity
    committee: int
    position: int
    index: int


def health_checks(acc: CoordinatorAccount, reporter: Pubkey) -> list[HealthCheck]:
    """The unhealthy trainers of the previous round that ``reporter`` should report (spec 4).

    As upstream: from height 2, only by a client that was an elected witness of the previous round,
    during RoundTrain or RoundWitness. A trainer is unhealthy when fewer than quorum of the previous
    round's witnesses have it in their participant bloom; the score and quorum are the chain's
    (``trainer_health_score``, ``committee.witness_quorum``), and the proof is the previous round's,
    so the chain accepts every check listed. Clients already not Healthy and non-trainers (the chain
    cannot judge them) are left out.
    """
    if acc.run_state not in (RunState.RoundTrain, RunState.RoundWitness):
        return []
    if round_view.current_round(acc).height < 2:
        return []
    prev = round_view.previous_round(acc)
    if prev is None:
        return []
    mine = round_view.witness_proof(acc, reporter, prev)
    if mine is None or not mine.witness:
        return []
    config = acc.config
    if not committee.selection_is_valid(
        prev.clients_len, prev.tie_breaker_tasks, config.witness_nodes, config.verification_percent
    ):
        return []
    try:
        quorum = committee.witness_quorum(len(prev.witnesses), config.witness_nodes)
    except ValueError:  # no witnesses and witness_nodes = 0: the chain panics on any health check
        return []
    checks: list[HealthCheck] = []
    for index, client in enumerate(acc.epoch_state.clients[: prev.clients_len]):
        if client.state != ClientState.Healthy:
            continue
        code, position = round_view.committee_proof(acc, index, prev)
        if code != committee.TRAINER:
            continue
        if trainer_health_score(client.signer, prev.witnesses) < quorum:
            accused = NodeIdentity(client.signer, client.p2p_identity)
            checks.append(HealthCheck(accused, code, position, index))
    return checks
