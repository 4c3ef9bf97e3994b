"""The client's side of the P2P result exchange (DisTrO runs): publish our results, accept and verify our
peers', agree on what to apply, and serve or fetch the model at epoch boundaries.

Glue between the transport (``psyche.p2p``), the round bookkeeping (``psyche.client.exchange``) and the
payload format (``psyche.client.distro_payload``). Broadcasts arrive on the transport's threads and payloads
download on a small pool; everything they change is behind one lock, and ``on_change`` tells the runner
(which re-drives the protocol). See docs/client-protocol.md, "Results peer to peer".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import torch

from psyche.chain import round_view
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.state import Bloom
from psyche.client import exchange
from psyche.client.actions import RoundKey, Train
from psyche.client.checkpoint import Content
from psyche.client.distro import SparseParam
from psyche.client.distro_payload import (
    Payload,
    PayloadShape,
    data_hash,
    decode_payload,
    encode_payload,
)
from psyche.client.identity import P2PIdentity
from psyche.errors import (
    BroadcastRefused,
    Desync,
    FetchFailed,
    ModelUnavailable,
    PayloadRefused,
    PeerRefused,
    RunManagerError,
)
from psyche.p2p import model_share
from psyche.p2p.node import P2PNode
from psyche.p2p.settings import P2PSettings
from psyche.p2p.wire import (
    Broadcast,
    Finished,
    Proof,
    Ticket,
    TrainingResult,
    decode_broadcast,
    encode_broadcast,
)

log = logging.getLogger("psyche.client")

PENDING_MAX = 256  # broadcasts for a round we have not seen yet, kept until the account catches up
KEEP_ROUNDS = 4  # the account keeps this many rounds; older ledgers and payloads are dropped
APPLY_WAIT_S = 20.0  # how long an agreed payload may still take to arrive before we give up the epoch
RESEND_S = 1.0  # our live broadcasts are sent again (nonce + 1) for peers that came late
STATUS_FILE = "p2p-status.json"
FETCH_RETRY_S = 0.2


@dataclass(slots=True)
class _Announced:
    """One of our own broadcasts, re-sent until its round is two rounds old."""

    key: RoundKey
    broadcast: Broadcast


def rounds_epoch(acc: CoordinatorAccount) -> int:
    """The epoch the account's rounds belong to: after a Cooldown the epoch number moves on at once, while
    the rounds stay the last epoch's until the next Warmup clears them."""
    if acc.run_state in (RunState.WaitingForMembers, RunState.Paused, RunState.Finished):
        return max(acc.progress.epoch - 1, 0)
    return acc.progress.epoch


class ResultSharing:
    """Implements ``actions.SharingView`` for the protocol; publishes, receives, verifies, agrees."""

    def __init__(
        self,
        node: P2PNode,
        identity: P2PIdentity,
        *,
        status_dir: Path | None = None,
        on_change: Callable[[], None] = lambda: None,
        apply_wait: float = APPLY_WAIT_S,
    ) -> None:
        self.node = node
        self.identity = identity
        self.shapes: list[PayloadShape] | None = None  # known once our model is built (``set_model``)
        self.max_payload = 0
        self.quantize_1bit = True
        self.status_dir = status_dir
        self.on_change = on_change
        self.apply_wait = apply_wait
        self.lock = threading.RLock()
        self.acc: CoordinatorAccount | None = None
        self.ledgers: dict[RoundKey, exchange.RoundLedger] = {}
        self.tickets: dict[bytes, list[tuple[bytes, Ticket]]] = {}  # data_hash -> (announcer, ticket)
        self.payloads: dict[bytes, Payload] = {}  # verified, by data_hash
        self.pending: list[tuple[bytes, Broadcast]] = []
        self.downloading: set[tuple[bytes, bytes]] = set()
        self.round_accounts: dict[RoundKey, CoordinatorAccount] = {}  # the last one seen while current
        # The last account of each epoch's Cooldown: its rounds and witnesses are final, and it outlives the
        # account's own rounds, which the next epoch's warmup clears while we may still apply the last ones.
        self.epoch_ends: dict[int, CoordinatorAccount] = {}
        self.warmup: dict[int, set[bytes]] = {}
        self.received: dict[RoundKey, int] = {}
        self.applied_last = 0
        self.own: list[_Announced] = []
        self.nonce = 0
        self.last_resend = 0.0
        self.downloads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="p2p-fetch")
        node.on_message = self._on_message

    def close(self) -> None:
        """Close the P2P node, then drop the downloads still queued."""
        self.node.close()  # first: no message arrives to start a download after the pool is gone
        self.downloads.shutdown(wait=False, cancel_futures=True)

    def set_model(self, shapes: list[PayloadShape], max_payload: int, quantize_1bit: bool) -> None:
        """Our model's payload shapes: what a peer's payload must match (and at most how big it is)."""
        with self.lock:
            self.shapes, self.max_payload, self.quantize_1bit = shapes, max_payload, quantize_1bit
            pending, self.pending = self.pending, []
        for sender, broadcast in pending:
            self._offer(sender, broadcast)

    # ------------------------------------------------------------------------------ the account

    def observe(self, acc: CoordinatorAccount) -> None:
        """A new coordinator state: who may talk to us, which rounds are live, broadcasts now placeable."""
        with self.lock:
            self.acc = acc
            peers = {bytes(c.p2p_identity) for c in acc.epoch_state.clients}
            peers |= {bytes(c.p2p_identity) for c in acc.clients_state.clients}
            self.node.set_allowed(peers)
            epoch, current = acc.progress.epoch, round_view.current_round(acc)
            height = current.height
            # Only in these states are the account's rounds this epoch's (from the end of Cooldown to the
            # next Warmup the epoch number has moved on while the rounds are still the last epoch's).
            live = acc.run_state in (RunState.RoundTrain, RunState.RoundWitness, RunState.Cooldown)
            if live and current.clients_len:
                # A round's client list is exact only while the round is current: once a client in the
                # middle of the list has exited, the account's reconstruction of an older round's clients
                # (round_view.historical_clients, as upstream's) can be out of order. Broadcasts and applies
                # of a round are judged against the account as it was then.
                self.round_accounts[(epoch, height)] = acc
            if acc.run_state == RunState.Cooldown:
                self.epoch_ends[epoch] = acc

            def stale(key: RoundKey) -> bool:
                # The last epoch's rounds stay until this one's first KEEP_ROUNDS rounds have gone by: its
                # final applies may still run (ClientProtocol.finishing).
                if key[0] == epoch:
                    return live and key[1] < height - KEEP_ROUNDS
                return key[0] < epoch - 1 or (live and height >= KEEP_ROUNDS)

            for key in [k for k in self.ledgers if stale(k)]:
                del self.ledgers[key]
            for key in [k for k in self.round_accounts if stale(k)]:
                del self.round_accounts[key]
            for number in [n for n in self.epoch_ends if stale((n, height))]:
                del self.epoch_ends[number]
            oldest = acc.progress.step - KEEP_ROUNDS
            for digest in [d for d, p in self.payloads.items() if p.step < oldest]:
                del self.payloads[digest]
                self.tickets.pop(digest, None)
            self.node.blobs.drop_before(oldest)
            pending, self.pending = self.pending, []
        for sender, broadcast in pending:
            self._offer(sender, broadcast)
        self._resend()

    # ------------------------------------------------------------------------------ SharingView

    def verified_batches(self, key: RoundKey) -> set[tuple[int, int]]:
        """The batches of round ``key`` whose payload we downloaded and verified (our own included)."""
        with self.lock:
            ledger = self.ledgers.get(key)
            return set() if ledger is None else ledger.voted_batches()

    def witness_content(self, key: RoundKey, seed: bytes) -> tuple[Bloom, Bloom, bytes]:
        """(participant bloom, broadcast bloom, broadcast merkle root) over round ``key``'s results."""
        with self.lock:
            ledger = self.ledgers.get(key) or exchange.RoundLedger(*key)
            return (
                ledger.participant_bloom(b"participant" + seed),
                ledger.broadcast_bloom(b"broadcast" + seed),
                ledger.merkle(),
            )

    def warmup_ready(self, epoch: int) -> set[bytes]:
        """The P2P identities that announced their model ready for ``epoch`` (ours included)."""
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
        """Our model is ready for ``epoch``: tell every peer (and count ourselves).

        Raises:
            RunManagerError: our P2P identity is not among the epoch's clients.
        """
        me = self._my_index(acc)
        digest = exchange.merkle_root([])
        broadcast = Broadcast(
            acc.progress.step,
            Proof(0, me, me),
            digest,
            self.identity.sign(digest),
            self._next_nonce(),
            Finished(merkle=digest, warmup=True),
        )
        with self.lock:
            self.warmup.setdefault(epoch, set()).add(self.identity.public)
            self.own.append(_Announced((epoch, -1), broadcast))
        self.node.send_all(encode_broadcast(broadcast))
        self.on_change()

    def publish(self, acc: CoordinatorAccount, task: Train, results: list[SparseParam]) -> bytes:
        """Publish our result of ``task`` and announce it; returns its commitment (data_hash).

        Raises:
            RunManagerError: our P2P identity is not among the epoch's clients.
        """
        one_bit = self.quantize_1bit
        payload = Payload(task.step, task.step, (task.start, task.end), results, one_bit)
        raw = encode_payload(task.step, task.step, (task.start, task.end), results, one_bit)
        digest = data_hash(payload)
        ticket = self.node.publish(raw, tag=task.step)
        rnd = round_view.current_round(acc)
        index = self._my_index(acc)
        committee, position = round_view.committee_proof(acc, index, rnd)
        broadcast = Broadcast(
            task.step,
            Proof(committee, position, index),
            digest,
            self.identity.sign(digest),
            self._next_nonce(),
            TrainingResult((task.start, task.end), ticket),
        )
        with self.lock:
            ledger = self._ledger(task.key)
            ledger.offer(acc.epoch_state.clients[index], exchange.offer_of(self.identity.public, broadcast))
            ledger.verified(self.identity.public, digest)
            self.payloads[digest] = payload
            self.own.append(_Announced(task.key, broadcast))
        self.node.send_all(encode_broadcast(broadcast))
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
            self.own = [a for a in self.own if a.key[0] == rounds_epoch(acc) and a.key[1] >= height - 2]
            again = [dataclasses.replace(a.broadcast, nonce=self._next_nonce()) for a in self.own]
        for broadcast in again:
            self.node.send_all(encode_broadcast(broadcast))

    # ------------------------------------------------------------------------------ receiving

    def _refuse(self, reason: str, sender: bytes, what: object) -> None:
        """Count a refusal (in the transport's counters, which ``status`` shows) and say why."""
        self.node.count_refusal(reason)
        log.warning("p2p: refused %s from %s: %s", what, sender.hex()[:16], reason)

    def _on_message(self, sender: bytes, data: bytes) -> None:
        """A signed envelope from an allowed peer (the transport checked the signature)."""
        try:
            broadcast = decode_broadcast(data)
        except PeerRefused as exc:
            self._refuse(exc.reason, sender, "a message")
            return
        self._offer(sender, broadcast)

    def _ledger(self, key: RoundKey) -> exchange.RoundLedger:
        ledger = self.ledgers.get(key)
        if ledger is None:
            ledger = self.ledgers[key] = exchange.RoundLedger(*key)
        return ledger

    def _offer(self, sender: bytes, broadcast: Broadcast) -> None:
        with self.lock:
            outcome = self._accept(sender, broadcast)
        if outcome == "changed":
            self.on_change()
        elif isinstance(outcome, tuple):
            # Closing: the pool is gone, and so is our interest in the payload.
            with contextlib.suppress(RuntimeError):
                self.downloads.submit(self._download, *outcome)

    def _accept(
        self, sender: bytes, broadcast: Broadcast
    ) -> Literal["changed"] | tuple[RoundKey, bytes, Broadcast] | None:
        """Place a broadcast (under the lock): what changed, or the download to start."""
        acc = self.acc
        # Not placeable yet: no account, our model not built, or a round the account has not reached.
        if (
            acc is None
            or broadcast.step > acc.progress.step
            or (self.shapes is None and isinstance(broadcast.body, TrainingResult))
        ):
            self.pending = [*self.pending, (sender, broadcast)][-PENDING_MAX:]
            return None
        offer = exchange.offer_of(sender, broadcast)
        key = (rounds_epoch(acc), broadcast.step - acc.epoch_state.start_step)
        then = self.round_accounts.get(key, acc)
        try:
            client = exchange.check_offer(then, None, offer)
        except BroadcastRefused as exc:
            self._refuse(exc.reason, sender, f"a broadcast for step {broadcast.step}")
            return None
        body = broadcast.body
        if isinstance(body, Finished):
            ready = self.warmup.setdefault(acc.progress.epoch, set())
            if not body.warmup or sender in ready:
                return None
            ready.add(sender)
            return "changed"
        ledger = self._ledger(key)
        ledger.offer(client, offer)
        known = self.tickets.setdefault(broadcast.data_hash, [])
        if all(s != sender for s, _ in known):
            known.append((sender, body.ticket))
        if broadcast.data_hash in self.payloads:
            return "changed" if ledger.verified(sender, broadcast.data_hash) else None
        if (sender, broadcast.data_hash) in self.downloading:
            return None
        self.downloading.add((sender, broadcast.data_hash))
        return key, sender, broadcast

    def _download(self, key: RoundKey, sender: bytes, broadcast: Broadcast) -> None:
        body = broadcast.body
        assert isinstance(body, TrainingResult)
        with self.lock:
            others = [s for s, _ in self.tickets.get(broadcast.data_hash, []) if s != sender]
        try:
            try:
                payload = self._fetch(body.ticket, sender, others, broadcast)
            except FetchFailed:  # a dropped connection is common enough to be worth one more try
                time.sleep(FETCH_RETRY_S)
                payload = self._fetch(body.ticket, sender, others, broadcast)
        except (FetchFailed, PeerRefused, PayloadRefused) as exc:
            if isinstance(exc, PayloadRefused):
                self._refuse(exc.reason, sender, "a payload")
            else:  # the transport counted what it refused; an unreachable announcer is not a refusal
                log.warning("p2p: no payload from %s: %s", sender.hex()[:16], exc)
            return
        finally:
            with self.lock:
                self.downloading.discard((sender, broadcast.data_hash))
        with self.lock:
            self.payloads[broadcast.data_hash] = payload
            self._ledger(key).verified(sender, broadcast.data_hash)
            self.received[key] = self.received.get(key, 0) + 1
        self.on_change()

    def _fetch(self, ticket: Ticket, sender: bytes, others: list[bytes], broadcast: Broadcast) -> Payload:
        # keep: a payload we verified is served to peers that cannot reach its announcer.
        raw = self.node.fetch(ticket, sender, others, self.max_payload, timeout=10.0, keep=broadcast.step)
        return self._verify(raw, broadcast.data_hash, broadcast.step)

    def _verify(self, raw: bytes, digest: bytes, step: int | None) -> Payload:
        """The payload in ``raw`` if it fits our model and its hash is the commitment ``digest``."""
        assert self.shapes is not None
        payload = decode_payload(raw, self.shapes, self.max_payload)
        if data_hash(payload) != digest:
            raise PayloadRefused("commitment-mismatch", "its data_hash is not the broadcast's commitment")
        if step is not None and payload.step != step:
            raise PayloadRefused("wrong-step", f"payload for step {payload.step}, broadcast for {step}")
        return payload

    # ------------------------------------------------------------------------------ applying

    def agreed_results(
        self, acc: CoordinatorAccount, source: RoundKey
    ) -> tuple[list[list[SparseParam]], int]:
        """The payloads of round ``source`` its next round's witnesses agreed on, in batch-id order, and
        their step; waits up to ``apply_wait`` for one still downloading; Desync when one cannot be had."""
        with self.lock:
            then = self.round_accounts.get(source)
            acc = self.epoch_ends.get(source[0], acc)  # an epoch that is over: its final account
        rounds = {r.height: r for r in acc.epoch_state.rounds if r.clients_len}
        trained, judged = rounds.get(source[1]), rounds.get(source[1] + 1)
        if trained is None or judged is None:
            raise Desync(f"round {source[1]} is no longer in the coordinator account")
        if then is not None:
            assignments = round_view.round_assignments(then, round_view.current_round(then))
        else:
            assignments = round_view.round_assignments(acc, trained)
        batches = [(a.start, a.end) for a in assignments]
        nodes = acc.config.witness_nodes
        deadline = time.monotonic() + self.apply_wait
        waited = False
        while True:  # a late re-send may still bring an announcement the witnesses saw
            with self.lock:
                ledger = self.ledgers.get(source) or exchange.RoundLedger(*source)
                chosen = exchange.consensus(ledger, batches, judged.witnesses, witness_nodes=nodes)
                gaps = exchange.consensus_gaps(ledger, assignments, judged.witnesses, witness_nodes=nodes)
            if not gaps or time.monotonic() > deadline:
                break
            if not waited:
                waited = True
                log.info(
                    "round %d: waiting for the announcement of batch %s the witnesses saw", source[1], gaps[0]
                )
            time.sleep(0.2)
        if gaps:
            raise Desync(
                f"round {source[1]}: the witnesses agreed on batch {gaps[0][0]}-{gaps[0][1]}, "
                "whose announcement never reached us"
            )
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
            log.info("waiting for the agreed payload %s (%d announcer(s))", digest.hex()[:16], len(holders))
            for sender, ticket in holders:  # not downloaded (yet): ask each announcer ourselves
                try:
                    raw = self.node.fetch(ticket, sender, [], self.max_payload, timeout=5.0)
                    fetched = self._verify(raw, digest, None)
                except (FetchFailed, PeerRefused, PayloadRefused):
                    continue
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
                "refused": self.node.stats()["refused"],
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
        """Offer the epoch's final model to the next epoch's joiners. The caller rounded it to bf16, so its
        float32 tensors travel as bf16 (half the bytes, exactly) and are widened again by the joiner."""
        dtypes = {
            f"{stem}/{n}": _dtype_name(t) for stem, named in content.tensors.items() for n, t in named.items()
        }
        config = {"meta": content.meta, "extra_json": content.extra_json, "dtypes": dtypes}
        model_share.serve_model(self.node, epoch, step, config, _to_wire(content.tensors))

    def fetch_model(self, acc: CoordinatorAccount) -> tuple[int, int, Content]:
        """The previous epoch's model from the epoch's other clients that hold it (signed manifest,
        cross-checked with a second peer, every tensor's hash verified).

        Raises:
            ModelUnavailable: no other client of the epoch, or none served a model that checks out.
        """
        peers = [
            bytes(c.p2p_identity)
            for c in acc.epoch_state.clients
            if bytes(c.p2p_identity) != self.identity.public
        ]
        if not peers:
            raise ModelUnavailable("no other client in this epoch to fetch the model from")
        try:
            manifest, blobs = model_share.fetch_model(self.node, peers)
        except FetchFailed as exc:
            raise ModelUnavailable(f"the model served by peers: {exc}") from None
        return manifest.epoch, manifest.step, content_from_wire(manifest, blobs)


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _to_wire(tensors: dict[str, dict[str, torch.Tensor]]) -> list[tuple[str, str, tuple[int, ...], bytes]]:
    """(``stem/name``, dtype name, shape, raw bytes) per tensor, float32 narrowed to bf16: the form served."""
    out = []
    for stem, named in tensors.items():
        for name, t in named.items():
            t = t.detach().cpu()
            if t.dtype == torch.float32:
                t = t.to(torch.bfloat16)
            raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            out.append((f"{stem}/{name}", _dtype_name(t), tuple(t.shape), raw))
    return out


def content_from_wire(manifest: model_share.ModelManifest, blobs: dict[str, bytes]) -> Content:
    """What a joiner writes as its checkpoint from a fetched model; ModelUnavailable if it does not fit."""
    try:
        config = manifest.config
        tensors = _from_wire(manifest.params, blobs, config["dtypes"])
        return Content(tensors, config["meta"], config["extra_json"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelUnavailable(f"the model served by peers: {exc}") from None


def _from_wire(
    params: Sequence[model_share.ParamEntry], blobs: dict[str, bytes], dtypes: dict[str, str]
) -> dict[str, dict[str, torch.Tensor]]:
    """The served tensors back in the dtypes the serving client's checkpoint holds them in."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for entry in params:
        wire, held = getattr(torch, entry.dtype, None), getattr(torch, dtypes[entry.name], None)
        if not isinstance(wire, torch.dtype) or not isinstance(held, torch.dtype):
            raise ValueError(f"{entry.name}: unknown dtype {entry.dtype!r} or {dtypes[entry.name]!r}")
        stem, _, name = entry.name.partition("/")
        flat = torch.frombuffer(bytearray(blobs[entry.name]), dtype=torch.uint8)
        out.setdefault(stem, {})[name] = flat.view(wire).reshape(entry.shape).to(held)
    return out


def start_sharing(
    identity: P2PIdentity,
    settings: P2PSettings,
    *,
    rpc_urls: list[str],
    status_dir: Path | None,
    kind: type[ResultSharing] = ResultSharing,
) -> ResultSharing:
    """The client's P2P node (bound and discovering) and the exchange over it (``kind``: tests make
    misbehaving clients with a subclass)."""
    rpc_host = urlsplit(rpc_urls[0]).hostname if rpc_urls else None
    node = P2PNode(
        identity,
        settings.bind,
        settings.port,
        settings.advertise,
        settings.bootstrap,
        lambda sender, data: None,
        rpc_host=rpc_host,
    )
    sharing = kind(node, identity, status_dir=status_dir)
    node.start()
    host, port = node.address
    log.info("p2p: listening on %s:%d, advertised as %s:%d", settings.bind, node.bound[1], host, port)
    return sharing
