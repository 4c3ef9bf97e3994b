"""Collaborative DisTrO training in one process, without the chain: shared by bench/bench_collab.py and
tests/integration/test_collab_loss.py.

1. ``collaborate``: three clients train ONE model (each its own samples per round; every client applies
   every client's result of round h at the start of round h + 2, in batch order, as protocol/sharing do)
   beside one client alone (the same per-client batch, the same schedule, applying only its own results);
   the held-out loss of both models every few rounds.
2. ``loopback_rounds``: the per-round sharing cost of three clients with real P2PNodes on 127.0.0.1,
   each phase timed: compress (generate), encode + commit (data_hash, signature), publish (blob + signed
   broadcast to the peers), fetch (the other clients' payloads over HTTP), verify + decode (signature,
   decode_payload with every check, data_hash against the commitment) and apply.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from psyche.chain.accounts.model import ConstantLR
from psyche.chain.accounts.optimizer import Distro
from psyche.client.config import OptimizerSettings, TrainerConfig
from psyche.client.data import DummySource
from psyche.client.distro import SparseParam
from psyche.client.distro_payload import (
    Payload,
    PayloadShape,
    data_hash,
    decode_payload,
    encode_payload,
    max_payload_bytes,
)
from psyche.client.identity import P2PIdentity
from psyche.client.model import preset
from psyche.client.train import Trainer
from psyche.p2p.node import P2PNode
from psyche.p2p.wire import Broadcast, Proof, TrainingResult, decode_broadcast, encode_broadcast, verify
from tests.support.wait import wait_until

# clip 1.0, no weight decay, decay 0.999, top-k 8, chunk 64, 1-bit: upstream's settings
UPSTREAM = Distro(1.0, None, 0.999, 8, 64, True)
HELD_OUT_START = 10**6  # sample indices from here on are never trained on
SEED = 7


def distro_trainer(name: str, seq: int, lr: float, micro_batch: int, seed: int = SEED) -> Trainer:
    """A CPU Trainer of preset ``name`` with upstream's DisTrO settings, a constant LR and Dummy data: every
    trainer built with the same arguments starts from the same parameters."""
    spec = preset(name, seq)
    config = TrainerConfig(
        micro_batch_size=micro_batch,
        device="cpu",
        lr_schedule=ConstantLR(lr, lr, 0),
        optimizer=OptimizerSettings(clip_grad_norm=1.0, distro=UPSTREAM),
    )
    return Trainer(config, spec, seed, DummySource(seq, spec.vocab_size, seed))


@torch.no_grad()
def held_out_loss(trainer: Trainer, indices: Sequence[int], micro_batch: int = 64) -> float:
    """Mean loss per token over ``indices``, the model in eval mode (no gradients, no parameter change)."""
    model = trainer.model
    model.eval()
    total = 0.0
    for i in range(0, len(indices), micro_batch):
        batch = trainer.data.fetch(indices[i : i + micro_batch]).to(trainer.device)
        total += float(model.loss_sum(batch))
    model.train()
    return total / (len(indices) * trainer.spec.max_seq_len)


def parameters_equal(a: Trainer, b: Trainer) -> bool:
    """Whether every parameter of ``a`` is bitwise equal to ``b``'s."""
    return all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True))


def _wire(trainer: Trainer, step: int, batch: tuple[int, int], results: list[SparseParam]) -> Payload:
    """``results`` as a peer receives them: encoded to the payload bytes and decoded with every check."""
    shapes = trainer.payload_shapes()
    raw = encode_payload(step, step, batch, results, UPSTREAM.quantize_1bit)
    return decode_payload(raw, shapes, max_payload_bytes(shapes))


@dataclass(slots=True)
class Curves:
    """Held-out loss after ``applied[i]`` rounds' results were applied: one client alone vs three."""

    applied: list[int] = field(default_factory=list)
    solo: list[float] = field(default_factory=list)
    shared: list[float] = field(default_factory=list)
    equal_checks: int = 0  # applies after which all clients' parameters were compared (and were equal)
    seconds: float = 0.0


def collaborate(
    *,
    clients: int = 3,
    batch: int,
    rounds: int,
    lr: float,
    eval_every: int,
    held_out: int = 64,
    seq: int = 32,
    name: str = "tiny",
) -> Curves:
    """Train ``rounds`` rounds: client i's samples of round h are [i*B, (i+1)*B) + h*clients*B; all clients
    apply the results of round h (in batch order) at the start of round h + 2; two apply-only rounds end
    the run, as at an epoch's end. The solo client trains client 0's samples and applies its own results on
    the same schedule. Raises AssertionError when the clients' parameters differ after an apply."""
    start = time.perf_counter()
    group = [distro_trainer(name, seq, lr, batch) for _ in range(clients)]
    solo = distro_trainer(name, seq, lr, batch)
    evaluation = list(range(HELD_OUT_START, HELD_OUT_START + held_out))
    pending: dict[int, list[Payload]] = {}
    pending_solo: dict[int, Payload] = {}
    curves = Curves()
    for h in range(rounds + 2):
        if h - 2 in pending:
            payloads = sorted(pending.pop(h - 2), key=lambda p: p.batch)  # batch-id order
            for t in group:
                t.apply_results([p.results for p in payloads], payloads[0].step)
            for t in group[1:]:
                if not parameters_equal(group[0], t):
                    raise AssertionError(f"round {h}: the clients' parameters differ after the apply")
            curves.equal_checks += 1
            own = pending_solo.pop(h - 2)
            solo.apply_results([own.results], own.step)
        applied = h - 1 if h >= 2 else 0  # rounds whose results are in the model now
        if h != 1 and (applied % eval_every == 0 or applied == rounds):  # h = 1 applies nothing new
            curves.applied.append(applied)
            curves.solo.append(held_out_loss(solo, evaluation))
            curves.shared.append(held_out_loss(group[0], evaluation))
        if h >= rounds:
            continue
        offset = h * clients * batch
        arrived = []
        for i, t in enumerate(group):
            span = (offset + i * batch, offset + (i + 1) * batch - 1)
            r = t.train_step(list(range(span[0], span[1] + 1)), step=h)
            assert r.payload_results is not None
            arrived.append(_wire(t, h, span, r.payload_results))
            if i == 0:
                r0 = solo.train_step(list(range(span[0], span[1] + 1)), step=h)
                assert r0.payload_results is not None
                pending_solo[h] = _wire(solo, h, span, r0.payload_results)
        pending[h] = arrived[::-1]  # arrival order is not batch order
    curves.seconds = time.perf_counter() - start
    return curves


# ---------------------------------------------------------------- per-round sharing cost on loopback

PHASES = ("train", "compress", "encode", "publish", "fetch", "verify", "apply")
Times = dict[str, list[float]]  # phase -> seconds per client in one round


@contextlib.contextmanager
def _phase(times: Times, key: str, client: int) -> Iterator[None]:
    """Add the wall time of the block to ``times[key][client]``."""
    start = time.perf_counter()
    yield
    times[key][client] += time.perf_counter() - start


class _Peer:
    """One client of the loopback round: a P2PNode on 127.0.0.1 and the broadcasts it received."""

    def __init__(self, index: int, identity: P2PIdentity, bootstrap: list[tuple[str, int]], cap: int) -> None:
        self.index = index
        self.identity = identity
        self.inbox: list[tuple[bytes, Broadcast]] = []
        self.arrived = threading.Condition()
        self.node = P2PNode(
            identity, "127.0.0.1", 0, None, bootstrap, self._on_message, max_blob=cap, discovery_interval=0.2
        ).start()

    def _on_message(self, sender: bytes, data: bytes) -> None:
        with self.arrived:
            self.inbox.append((sender, decode_broadcast(data)))
            self.arrived.notify_all()

    def take(self, count: int, timeout: float = 30.0) -> list[tuple[bytes, Broadcast]]:
        """The first ``count`` broadcasts not taken yet (AssertionError when they do not come in time)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.inbox) >= count, timeout):
                raise AssertionError(f"client {self.index}: {len(self.inbox)} of {count} broadcasts arrived")
            got, self.inbox = self.inbox[:count], self.inbox[count:]
        return got


def _train(trainer: Trainer, span: tuple[int, int], step: int, times: Times, i: int) -> list[SparseParam]:
    """Client i's training step; DisTrO's generate (the compression) timed apart from forward/backward."""
    distro = trainer.distro
    assert distro is not None
    generate = distro.generate

    def timed_generate(lr: float) -> list[SparseParam]:
        with _phase(times, "compress", i):
            return generate(lr)

    distro.generate = timed_generate  # type: ignore[method-assign]
    try:
        with _phase(times, "train", i):
            r = trainer.train_step(list(range(span[0], span[1] + 1)), step=step)
    finally:
        del distro.generate  # the class's method again
    times["train"][i] -= times["compress"][i]
    assert r.payload_results is not None
    return r.payload_results


def _publish(
    peer: _Peer, span: tuple[int, int], step: int, results: list[SparseParam], times: Times
) -> Payload:
    """Encode, commit to and sign our result, store it as a blob and broadcast its ticket to every peer, as
    ResultSharing.publish does; returns the payload (kept in memory: our own result is never decoded)."""
    i = peer.index
    with _phase(times, "encode", i):
        raw = encode_payload(step, step, span, results, UPSTREAM.quantize_1bit)
        payload = Payload(step, step, span, results, UPSTREAM.quantize_1bit)
        digest = data_hash(payload)
        signature = peer.identity.sign(digest)
    with _phase(times, "publish", i):
        ticket = peer.node.publish(raw, step)
        b = Broadcast(step, Proof(0, i, i), digest, signature, step, TrainingResult(span, ticket))
        sent = peer.node.send_all(encode_broadcast(b))
    assert sent == len(peer.node.peers()), f"client {i} reached {sent} peers"
    return payload


def _receive(peer: _Peer, count: int, shapes: list[PayloadShape], cap: int, times: Times) -> list[Payload]:
    """Fetch and check the payloads of ``count`` broadcasts, as ResultSharing does on its download pool."""
    i = peer.index
    payloads = []
    for sender, b in peer.take(count):
        assert isinstance(b.body, TrainingResult)
        with _phase(times, "fetch", i):
            raw = peer.node.fetch(b.body.ticket, sender, [], cap, 10.0, keep=b.step)
        with _phase(times, "verify", i):
            if not verify(sender, b.commitment_sig, b.data_hash):
                raise AssertionError(f"client {i}: a bad commitment signature")
            payload = decode_payload(raw, shapes, cap)
            if data_hash(payload) != b.data_hash or payload.step != b.step:
                raise AssertionError(f"client {i}: a payload that does not match its commitment")
        payloads.append(payload)
    return payloads


@dataclass(slots=True)
class RoundCost:
    """Per client and round, median seconds of each phase (``PHASES``) over the timed rounds."""

    name: str
    params: int
    seq: int
    shares: list[int]
    payload_bytes: int
    rounds: int
    phases: dict[str, float]

    @property
    def sharing(self) -> float:
        """compress + encode + publish + fetch + verify + apply: what DisTrO sharing adds to a round."""
        return sum(v for k, v in self.phases.items() if k != "train")


def loopback_rounds(
    name: str, seq: int, total_batch: int, rounds: int, *, clients: int = 3, one_model: bool = False
) -> RoundCost:
    """``rounds`` timed rounds (after one warm-up round) of ``clients`` clients splitting ``total_batch``
    samples: each trains its share, publishes its payload and a signed broadcast on its own P2PNode, fetches
    and verifies every other client's payload, and applies all results in batch order. ``one_model``: one
    Trainer does every client's compute (the 125m preset: three would not fit beside the other sessions);
    its apply then stands for each client's. Client i's phases are timed while client i runs them."""
    shares = [total_batch * (i + 1) // clients - total_batch * i // clients for i in range(clients)]
    first = distro_trainer(name, seq, 1e-3, max(shares))
    trainers = [
        first if one_model or i == 0 else distro_trainer(name, seq, 1e-3, max(shares)) for i in range(clients)
    ]
    shapes = first.payload_shapes()
    cap = max_payload_bytes(shapes)
    ids = [P2PIdentity(bytes([0xC0 + i]) * 32) for i in range(clients)]
    peers = [_Peer(0, ids[0], [], cap)]
    peers += [_Peer(i, ids[i], [peers[0].node.address], cap) for i in range(1, clients)]
    samples: Times = {k: [] for k in PHASES}
    try:
        for p in peers:
            p.node.set_allowed({i.public for i in ids})
        wait_until(
            lambda: all(len(p.node.peers()) >= clients - 1 for p in peers),
            timeout=30,
            what="the loopback peers finding each other",
        )
        for h in range(rounds + 1):
            times: Times = {k: [0.0] * clients for k in PHASES}
            published = []
            for i, (t, p) in enumerate(zip(trainers, peers, strict=True)):
                start = h * total_batch + sum(shares[:i])
                span = (start, start + shares[i] - 1)
                published.append(_publish(p, span, h, _train(t, span, h, times, i), times))
            for i, p in enumerate(peers):
                payloads = sorted(
                    [published[i], *_receive(p, clients - 1, shapes, cap, times)], key=lambda q: q.batch
                )
                if one_model and i > 0:
                    times["apply"][i] = times["apply"][0]
                    continue
                with _phase(times, "apply", i):
                    trainers[i].apply_results([q.results for q in payloads], h)
            if not one_model and not all(parameters_equal(first, t) for t in trainers[1:]):
                raise AssertionError(f"round {h}: the clients' parameters differ after the apply")
            if h > 0:  # the first round warms up the allocator, the DCT bases and the connections
                for k in PHASES:
                    samples[k].extend(times[k])
    finally:
        for p in peers:
            p.node.close()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return RoundCost(name, first.spec.num_parameters(), seq, shares, cap, rounds, medians)
