"""The client's side of the P2P result exchange (DisTrO runs): publish our results, accept and verify our
peers', agree on what to apply, and serve or fetch the model at epoch boundaries.

Glue between the transport (``psyche.p2p``), the round bookkeeping (``psyche.client.exchange``) and the
payload format (``psyche.client.distro_payload``). Broadcasts arrive on the transport's threads and payloads
download on a small pool; everything they change is behind one lock, and ``on_change`` tells the runner
(which re-drives the protocol). See docs/client-protocol.md, "Results peer to peer".
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from psyche.chain import round_view
from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.state import Bloom, Round
from psyche.client import exchange
from psyche.client.actions import RoundKey, Train
from psyche.client.checkpoint import Content
from psyche.client.distro import SparseParam
from psyche.client.distro_payload import Payload, PayloadShape, data_hash, decode_payload, encode_payload
from psyche.client.identity import P2PIdentity
from psyche.errors import RunManagerError
from psyche.p2p import model_share
from psyche.p2p.node import FetchFailed, P2PNode
from psyche.p2p.wire import Broadcast, Finished, PeerRefused, Ticket, TrainingResult, decode_broadcast

log = logging.getLogger("psyche.client")

PENDING_MAX = 256  # broadcasts for a round we have not seen yet, kept until the account catches up
KEEP_ROUNDS = 4  # the account keeps this many rounds; older ledgers and payloads are dropped
APPLY_WAIT_S = 20.0  # how long an agreed payload may still take to arrive before we give up the epoch
RESEND_S = 3.0  # our live broadcasts are sent again (nonce + 1) for peers that came late
STATUS_FILE = "p2p-status.json"


class Desync(RunManagerError):
    """An agreed result cannot be had: applying anything else would leave us off our peers' model."""


@dataclass(slots=True)
class _Announced:
    """One of our own broadcasts, re-sent until its round is two rounds old."""

    key: RoundKey
    broadcast: Broadcast


def round_of_step(acc: CoordinatorAccount, step: int) -> Round | None:
    """The round of the current epoch trained at coordinator ``step``, if the account still holds it."""
    height = step - acc.epoch_state.start_step
    return next((r for r in acc.epoch_state.rounds if r.height == height and height >= 0), None)


class ResultSharing:
    """Implements ``actions.SharingView`` for the protocol; publishes, receives, verifies, agrees."""

    def __init__(
        self,
        node: P2PNode,
        identity: P2PIdentity,
        shapes: list[PayloadShape],
        max_payload: int,
        *,
        status_dir: Path | None = None,
        on_change: Callable[[], None] = lambda: None,
        apply_wait: float = APPLY_WAIT_S,
    ) -> None:
        self.node = node
        self.identity = identity
        self.shapes = shapes
        self.max_payload = max_payload
        self.status_dir = status_dir
        self.on_change = on_change
        self.apply_wait = apply_wait
        self.lock = threading.RLock()
        self.acc: CoordinatorAccount | None = None
        self.ledgers: dict[RoundKey, exchange.RoundLedger] = {}
        self.tickets: dict[bytes, list[tuple[bytes, Ticket]]] = {}  # data_hash -> (announcer, ticket)
        self.payloads: dict[bytes, Payload] = {}  # verified, by data_hash
        self.pending: list[tuple[bytes, Broadcast]] = []
        self.warmup: dict[int, set[bytes]] = {}
        self.refused: Counter[str] = Counter()
        self.received: dict[RoundKey, int] = {}
        self.applied_last = 0
        self.own: list[_Announced] = []
        self.nonce = 0
        self.last_resend = 0.0
        self.downloads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="p2p-fetch")
        node.on_message = self._on_message

    def close(self) -> None:
        self.downloads.shutdown(wait=False, cancel_futures=True)
        self.node.close()

    # ------------------------------------------------------------------------------ the account

    def observe(self, acc: CoordinatorAccount) -> None:
        """A new coordinator state: who may talk to us, which rounds are live, broadcasts now placeable."""
        with self.lock:
            self.acc = acc
            peers = {bytes(c.p2p_identity) for c in acc.epoch_state.clients}
            peers |= {bytes(c.p2p_identity) for c in acc.clients_state.clients}
            self.node.set_allowed(peers)
            epoch, height = acc.progress.epoch, round_view.current_round(acc).height
            for key in [k for k in self.ledgers if k[0] != epoch or k[1] < height - KEEP_ROUNDS]:
                del self.ledgers[key]
            pending, self.pending = self.pending, []
        for sender, broadcast in pending:
            self._offer(sender, broadcast)
        self._resend()

    # ------------------------------------------------------------------------------ SharingView

    def verified_batches(self, key: RoundKey) -> set[tuple[int, int]]:
        with self.lock:
            ledger = self.ledgers.get(key)
            return set() if ledger is None else ledger.voted_batches()

    def witness_content(self, key: RoundKey, seed: bytes) -> tuple[Bloom, Bloom, bytes]:
        with self.lock:
            ledger = self.ledgers.get(key) or exchange.RoundLedger(*key)
            return (
                ledger.participant_bloom(b"participant" + seed),
                ledger.broadcast_bloom(b"broadcast" + seed),
                ledger.merkle(),
            )

    def warmup_ready(self, epoch: int) -> set[bytes]:
        with self.lock:
            return set(self.warmup.get(epoch, set()))

    # ------------------------------------------------------------------------------ sending

    def _my_index(self, acc: CoordinatorAccount) -> int:
        for i, c in enumerate(acc.epoch_state.clients):
            if bytes(c.p2p_identity) == self.identity.public:
                return i
        raise RunManagerError("our P2P identity is not among the epoch's clients")

    def _next_nonce(self) -> int:
        self.nonce = (self.nonce + 1) % 2**32
        return self.nonce

    def announce_warmup(self, acc: CoordinatorAccount, epoch: int) -> None:
        """Our model is ready for ``epoch``: tell every peer (and count ourselves)."""
        me = self._my_index(acc)
        proof = exchange.Proof(0, me, me)
        body = Finished(merkle=bytes(32), warmup=True)
        digest = exchange.merkle_root([])
        broadcast = Broadcast(
            acc.progress.step, proof, digest, self.identity.sign(digest), self._next_nonce(), body
        )
        with self.lock:
            self.warmup.setdefault(epoch, set()).add(self.identity.public)
            self.own.append(_Announced((epoch, -1), broadcast))
        self.node.send_all(broadcast.encode())
        self.on_change()

    def publish(self, acc: CoordinatorAccount, task: Train, results: list[SparseParam]) -> bytes:
        """Publish our result of ``task`` and announce it; returns its commitment (data_hash)."""
        payload = Payload(task.step, task.step, (task.start, task.end), results)
        raw = encode_payload(payload, self.shapes)
        digest = data_hash(payload)
        ticket = self.node.publish(raw, tag=task.key)
        rnd = round_view.current_round(acc)
        index = self._my_index(acc)
        committee, position = round_view.committee_proof(acc, index, rnd)
        broadcast = Broadcast(
            task.step,
            exchange.Proof(committee, position, index),
            digest,
            self.identity.sign(digest),
            self._next_nonce(),
            TrainingResult((task.start, task.end), ticket),
        )
        with self.lock:
            ledger = self._ledger(task.key)
            ledger.offer(self.identity.public, (task.start, task.end), digest)
            ledger.verified(self.identity.public, acc.epoch_state.clients[index].signer, digest)
            self.payloads[digest] = payload
            self.own.append(_Announced(task.key, broadcast))
        self.node.send_all(broadcast.encode())
        self.on_change()
        return digest

    def _resend(self) -> None:
        now = time.monotonic()
        if now - self.last_resend < RESEND_S:
            return
        self.last_resend = now
        with self.lock:
            acc = self.acc
            if acc is None:
                return
            height = round_view.current_round(acc).height
            self.own = [a for a in self.own if a.key[0] == acc.progress.epoch and a.key[1] >= height - 2]
            again = [a.broadcast.with_nonce(self._next_nonce()) for a in self.own]
        for broadcast in again:
            self.node.send_all(broadcast.encode())

    # ------------------------------------------------------------------------------ receiving

    def _refuse(self, reason: str, sender: bytes) -> None:
        with self.lock:
            self.refused[reason] += 1
        log.warning("p2p: refused a message from %s: %s", sender.hex()[:16], reason)

    def _on_message(self, sender: bytes, data: bytes) -> None:
        """A signed envelope from an allowed peer (the transport checked the signature)."""
        try:
            broadcast = decode_broadcast(data)
        except PeerRefused as exc:
            self._refuse(str(exc), sender)
            return
        self._offer(sender, broadcast)

    def _ledger(self, key: RoundKey) -> exchange.RoundLedger:
        ledger = self.ledgers.get(key)
        if ledger is None:
            ledger = self.ledgers[key] = exchange.RoundLedger(*key)
        return ledger

    def _offer(self, sender: bytes, broadcast: Broadcast) -> None:
        with self.lock:
            acc = self.acc
            if acc is None:
                self.pending = (self.pending + [(sender, broadcast)])[-PENDING_MAX:]
                return
            if isinstance(broadcast.body, Finished):
                self._finished(acc, sender, broadcast)
                return
            rnd = round_of_step(acc, broadcast.step)
            if rnd is None and broadcast.step > acc.progress.step:
                self.pending = (self.pending + [(sender, broadcast)])[-PENDING_MAX:]
                return
            try:
                if rnd is None:
                    raise exchange.BroadcastRefused(f"step {broadcast.step} is not a live round")
                client = exchange.check_offer(acc, rnd, exchange.offer_of(sender, broadcast))
            except exchange.BroadcastRefused as exc:
                self.refused[exc.reason] += 1
                log.warning("p2p: refused a broadcast from %s: %s", sender.hex()[:16], exc.reason)
                return
            key = (acc.progress.epoch, rnd.height)
            ledger = self._ledger(key)
            body = broadcast.body
            assert isinstance(body, TrainingResult)
            first = ledger.offer(sender, body.batch, broadcast.data_hash)
            known = self.tickets.setdefault(broadcast.data_hash, [])
            if all(s != sender for s, _ in known):
                known.append((sender, body.ticket))
            if not first or broadcast.data_hash in self.payloads:
                if broadcast.data_hash in self.payloads:
                    ledger.verified(sender, client.signer, broadcast.data_hash)
                return
        self.downloads.submit(self._download, key, sender, client.signer, broadcast)

    def _finished(self, acc: CoordinatorAccount, sender: bytes, broadcast: Broadcast) -> None:
        body = broadcast.body
        assert isinstance(body, Finished)
        if not any(bytes(c.p2p_identity) == sender for c in acc.epoch_state.clients):
            self.refused["finished from a peer that is not an epoch client"] += 1
            return
        if body.warmup:
            self.warmup.setdefault(acc.progress.epoch, set()).add(sender)
            self.on_change()

    def _download(self, key: RoundKey, sender: bytes, signer: Any, broadcast: Broadcast) -> None:
        body = broadcast.body
        assert isinstance(body, TrainingResult)
        with self.lock:
            others = [s for s, _ in self.tickets.get(broadcast.data_hash, []) if s != sender]
        try:
            payload = self._fetch(body.ticket, sender, others, broadcast)
        except (FetchFailed, PeerRefused) as exc:
            self._refuse(f"payload: {exc}", sender)
            return
        with self.lock:
            self.payloads[broadcast.data_hash] = payload
            self._ledger(key).verified(sender, signer, broadcast.data_hash)
            self.received[key] = self.received.get(key, 0) + 1
        self.on_change()

    def _fetch(self, ticket: Ticket, sender: bytes, others: list[bytes], broadcast: Broadcast) -> Payload:
        raw = self.node.fetch(ticket, sender, others, self.max_payload, timeout=10.0)
        payload = decode_payload(raw, self.shapes, self.max_payload)
        if data_hash(payload) != broadcast.data_hash:
            raise PeerRefused("payload does not match its commitment")
        if payload.step != broadcast.step or (isinstance(broadcast.body, TrainingResult) and payload.batch != broadcast.body.batch):
            raise PeerRefused("payload is for another step or batch than its broadcast")
        return payload

    # ------------------------------------------------------------------------------ applying

    def agreed_results(self, acc: CoordinatorAccount, source: RoundKey) -> tuple[list[list[SparseParam]], int]:
        """The payloads of round ``source`` its next round's witnesses agreed on, in batch-id order, and
        their step; waits up to ``apply_wait`` for one still downloading; ``Desync`` when one cannot be had."""
        rounds = {r.height: r for r in acc.epoch_state.rounds}
        trained, judged = rounds.get(source[1]), rounds.get(source[1] + 1)
        if trained is None or judged is None:
            raise Desync(f"round {source[1]} is no longer in the coordinator account")
        batches = sorted((a.start, a.end) for a in round_view.round_assignments(acc, trained))
        with self.lock:
            ledger = self.ledgers.get(source) or exchange.RoundLedger(*source)
            chosen = exchange.consensus(ledger, batches, list(judged.witnesses), acc)
        deadline = time.monotonic() + self.apply_wait
        results: list[list[SparseParam]] = []
        step = acc.epoch_state.start_step + source[1]
        for batch, digest in chosen:
            payload = self._wait_for(digest, deadline)
            if payload is None:
                raise Desync(
                    f"round {source[1]} batch {batch[0]}-{batch[1]}: the agreed result {digest.hex()[:16]} "
                    "could not be downloaded from any peer"
                )
            results.append(payload.results)
            step = payload.step
        with self.lock:
            self.applied_last = len(results)
        self.write_status(source)
        return results, step

    def _wait_for(self, digest: bytes, deadline: float) -> Payload | None:
        while True:
            with self.lock:
                payload = self.payloads.get(digest)
                holders = list(self.tickets.get(digest, []))
            if payload is not None:
                return payload
            if time.monotonic() > deadline:
                return None
            for sender, ticket in holders:  # not downloaded (yet): ask each announcer ourselves
                try:
                    raw = self.node.fetch(ticket, sender, [], self.max_payload, timeout=5.0)
                    fetched = decode_payload(raw, self.shapes, self.max_payload)
                except (FetchFailed, PeerRefused):
                    continue
                if data_hash(fetched) == digest:
                    with self.lock:
                        self.payloads[digest] = fetched
                    return fetched
            time.sleep(0.2)

    # ------------------------------------------------------------------------------ status

    def write_status(self, key: RoundKey) -> None:
        """``p2p-status.json`` in the scratch directory, for ``run-manager status`` (atomic replace)."""
        if self.status_dir is None:
            return
        with self.lock:
            host, port = self.node.address
            status = {
                "updated_at": time.time(),
                "epoch": key[0],
                "round": key[1],
                "address": f"{host}:{port}",
                "peers_seen": len(self.node.peers()),
                "results_received": self.received.get(key, 0) + 1,
                "results_applied": self.applied_last,
                "refused": dict(self.refused),
            }
        try:
            self.status_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.status_dir / f".{STATUS_FILE}.{os.getpid()}"
            tmp.write_text(json.dumps(status))
            os.replace(tmp, self.status_dir / STATUS_FILE)
        except OSError as exc:
            log.warning("p2p: cannot write %s: %s", STATUS_FILE, exc)

    # ------------------------------------------------------------------------------ the model

    def serve_model(self, epoch: int, step: int, content: Content) -> None:
        """Offer the epoch's final model (bf16-rounded by the caller) to the next epoch's joiners."""
        config = {"meta": content.meta, "extra_json": content.extra_json}
        model_share.serve(self.node, self.identity, epoch, step, config, _to_bytes(content.tensors))

    def fetch_model(self, acc: CoordinatorAccount) -> tuple[int, int, Content]:
        """The previous epoch's model from the epoch's other clients that hold it (signed manifest,
        cross-checked with a second peer, every tensor's hash verified)."""
        peers = [
            bytes(c.p2p_identity)
            for c in acc.epoch_state.clients
            if bytes(c.p2p_identity) != self.identity.public
        ]
        if not peers:
            raise ModelUnavailable("no other client in this epoch to fetch the model from")
        manifest, blobs = model_share.fetch_model(self.node, peers)
        config = manifest.config
        content = Content(_from_bytes(manifest.params, blobs), config["meta"], config["extra_json"])
        return manifest.epoch, manifest.step, content


class ModelUnavailable(RunManagerError):
    """No peer serves the model a joiner needs."""


def _to_bytes(tensors: dict[str, dict[str, torch.Tensor]]) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """Flat ``stem/name`` -> (dtype name, shape, raw bytes), the form the transport serves."""
    out = {}
    for stem, named in tensors.items():
        for name, t in named.items():
            t = t.detach().contiguous().cpu()
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
            out[f"{stem}/{name}"] = (str(t.dtype).removeprefix("torch."), tuple(t.shape), raw)
    return out


def _from_bytes(params: Any, blobs: dict[str, bytes]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for entry in params:
        dtype = getattr(torch, entry.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ModelUnavailable(f"the served model names an unknown dtype {entry.dtype!r}")
        stem, _, name = entry.name.partition("/")
        flat = torch.frombuffer(bytearray(blobs[entry.name]), dtype=torch.uint8)
        out.setdefault(stem, {})[name] = flat.view(dtype).reshape(entry.shape).clone()
    return out
