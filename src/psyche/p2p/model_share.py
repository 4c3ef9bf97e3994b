"""Sharing the model with joiners (spec section 5): a signed manifest plus one blob per parameter.

A serving node puts each tensor's raw bytes in its BlobStore (tag "model") and serves a ModelManifest,
signed by its identity, at GET /model/manifest. A joiner's ``fetch_model`` takes the manifest from the
first peer that answers, checks that the peer signed it, cross-checks it with a second peer's when
there is one (every field must agree, else it refuses), then fetches every blob with bounded
concurrency, a per-request timeout and an error budget per peer, spreading requests over the peers.
Bytes only: the caller turns them into tensors.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from psyche.errors import FetchFailed, PeerRefused
from psyche.hosts import url_host
from psyche.p2p.node import P2PNode
from psyche.p2p.wire import DOMAIN_MANIFEST, Signer, open_envelope, sign

MODEL_TAG: Final = "model"
ITEM_BYTES: Final = {
    "bfloat16": 2,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "bool": 1,
}
MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParamEntry:
    """One parameter: its name, dtype name (torch's, without "torch."), shape, sha256 and byte size."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    sha256: bytes
    size: int


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """What a serving peer holds: the epoch and step it ended, the model config, and every parameter."""

    epoch: int
    step: int
    config: dict[str, Any]
    params: tuple[ParamEntry, ...]

    def encode(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): equal manifests have equal bytes."""
        doc = {
            "epoch": self.epoch,
            "step": self.step,
            "config": self.config,
            "params": [[p.name, p.dtype, list(p.shape), p.sha256.hex(), p.size] for p in self.params],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def decode(cls, data: bytes) -> ModelManifest:
        """The manifest in ``data``; PeerRefused("malformed") on anything that does not hold together."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise PeerRefused("malformed", "manifest is not JSON") from exc
        if not isinstance(doc, dict) or set(doc) != {"epoch", "step", "config", "params"}:
            raise PeerRefused("malformed", "manifest needs exactly epoch, step, config, params")
        epoch, step, config, params = doc["epoch"], doc["step"], doc["config"], doc["params"]
        if not (_uint(epoch) and _uint(step) and isinstance(config, dict) and isinstance(params, list)):
            raise PeerRefused("malformed", "manifest epoch/step/config/params of the wrong type")
        entries = tuple(_entry(item) for item in params)
        if len({p.name for p in entries}) != len(entries):
            raise PeerRefused("malformed", "manifest names a parameter twice")
        return cls(epoch, step, config, entries)

    def total_bytes(self) -> int:
        """The model's bytes, all tensors together."""
        return sum(p.size for p in self.params)


def _uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _entry(item: object) -> ParamEntry:
    if not (isinstance(item, list) and len(item) == 5):
        raise PeerRefused("malformed", "manifest parameter is not [name, dtype, shape, sha256, size]")
    name, dtype, shape, digest, size = item
    if not (isinstance(name, str) and 0 < len(name) <= 512):
        raise PeerRefused("malformed", "manifest parameter name is not a short string")
    if dtype not in ITEM_BYTES:
        raise PeerRefused("malformed", f"manifest parameter {name[:64]!r}: unknown dtype {str(dtype)[:32]!r}")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(_uint(d) for d in shape)):
        raise PeerRefused("malformed", f"manifest parameter {name[:64]!r}: bad shape")
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise PeerRefused("malformed", f"manifest parameter {name[:64]!r}: sha256 is not 64 hex digits")
    if not _uint(size) or size != math.prod(shape) * ITEM_BYTES[dtype]:
        raise PeerRefused("malformed", f"manifest parameter {name[:64]!r}: size does not match shape x dtype")
    return ParamEntry(name, dtype, tuple(shape), bytes.fromhex(digest), size)


def build_manifest(
    epoch: int, step: int, config: dict[str, Any], tensors: Sequence[tuple[str, str, tuple[int, ...], bytes]]
) -> ModelManifest:
    """The manifest of (name, dtype, shape, raw bytes) tensors; ValueError when one does not hold together."""
    entries = tuple(ParamEntry(n, d, tuple(s), hashlib.sha256(b).digest(), len(b)) for n, d, s, b in tensors)
    manifest = ModelManifest(epoch, step, config, entries)
    ModelManifest.decode(manifest.encode())  # the same checks a joiner makes, up front
    return manifest


def sign_manifest(identity: Signer, manifest: ModelManifest) -> bytes:
    """The manifest in a signed envelope (its own domain, so it cannot pass for a message)."""
    return sign(identity, manifest.encode(), domain=DOMAIN_MANIFEST)


def open_manifest(raw: bytes) -> tuple[bytes, ModelManifest]:
    """(signer, manifest) of a signed manifest; PeerRefused on a bad signature or content."""
    signer, data = open_envelope(raw, MAX_MANIFEST_BYTES, domain=DOMAIN_MANIFEST)
    return signer, ModelManifest.decode(data)


def serve_model(
    node: P2PNode,
    epoch: int,
    step: int,
    config: dict[str, Any],
    tensors: Sequence[tuple[str, str, tuple[int, ...], bytes]],
) -> ModelManifest:
    """Serve these tensors (replacing any model served before) under a manifest signed by the node."""
    manifest = build_manifest(epoch, step, config, tensors)
    node.set_manifest(None)
    node.blobs.drop_tag(MODEL_TAG)
    for _, _, _, data in tensors:
        node.blobs.put(data, MODEL_TAG)
    node.set_manifest(sign_manifest(node.identity, manifest))
    return manifest


def stop_serving(node: P2PNode) -> None:
    """Stop serving the model: withdraw the manifest, then drop its blobs."""
    node.set_manifest(None)
    node.blobs.drop_tag(MODEL_TAG)


def _short(identity: bytes) -> str:
    return identity.hex()[:12]


def fetch_model(
    node: P2PNode,
    peers: Sequence[bytes],
    *,
    timeout: float = 10.0,
    concurrency: int = 8,
    max_errors_per_peer: int = 5,
    max_total_bytes: int | None = None,
) -> tuple[ModelManifest, dict[str, bytes]]:
    """The model ``peers`` (identities) serve: the manifest and every parameter's raw bytes, verified.

    FetchFailed (one line) when no peer serves a valid manifest, when two peers' manifests differ, or
    when a parameter cannot be had before every peer has spent its error budget.
    """
    book = node.peers()
    reachable = [p for p in dict.fromkeys(peers) if p in book]
    if not reachable:
        raise FetchFailed(f"model: none of the {len(peers)} peers has a known address")
    manifests: list[tuple[bytes, ModelManifest]] = []
    failures = []
    silent: set[bytes] = set()  # peers that served no valid manifest serve no blobs either
    for peer in reachable:
        try:
            signer, manifest = open_manifest(node.fetch_manifest(book[peer], timeout))
        except (PeerRefused, FetchFailed) as exc:
            if isinstance(exc, PeerRefused):
                node.count_refusal(exc.reason)
            failures.append(f"{_short(peer)}: {exc}")
            silent.add(peer)
            continue
        if signer != peer:
            node.count_refusal("wrong-signer")
            failures.append(f"{_short(peer)}: manifest signed by {_short(signer)}")
            silent.add(peer)
            continue
        manifests.append((peer, manifest))
        if len(manifests) == 2:
            break
    if not manifests:
        raise FetchFailed(f"model: no peer served a valid manifest ({'; '.join(failures)})")
    (first, manifest), *others = manifests
    for other, theirs in others:
        if theirs != manifest:
            node.count_refusal("manifest-mismatch")
            raise FetchFailed(
                f"model: peers {_short(first)} and {_short(other)} serve different models "
                f"({_difference(manifest, theirs)}); refusing both"
            )
    if max_total_bytes is not None and manifest.total_bytes() > max_total_bytes:
        raise FetchFailed(f"model: {manifest.total_bytes()} bytes, more than the cap of {max_total_bytes}")
    sources = [p for p in reachable if p not in silent]
    blobs = _fetch_params(node, manifest, sources, book, timeout, concurrency, max_errors_per_peer)
    return manifest, blobs


def _difference(a: ModelManifest, b: ModelManifest) -> str:
    if (a.epoch, a.step) != (b.epoch, b.step):
        return f"epoch/step {a.epoch}/{a.step} vs {b.epoch}/{b.step}"
    if a.config != b.config:
        return "config differs"
    theirs = {p.name: p for p in b.params}
    for p in a.params:
        if theirs.get(p.name) != p:
            return f"parameter {p.name[:64]!r} differs"
    return "parameter lists differ"


def _fetch_params(
    node: P2PNode,
    manifest: ModelManifest,
    peers: list[bytes],
    book: dict[bytes, tuple[str, int]],
    timeout: float,
    concurrency: int,
    max_errors: int,
) -> dict[str, bytes]:
    """Every parameter's bytes; a failed request goes back in the queue for the next peer in turn."""
    lock = threading.Lock()
    todo = deque(manifest.params)
    got: dict[str, bytes] = {}
    errors = dict.fromkeys(peers, 0)
    last_error: dict[bytes, str] = {}
    turn = [0]
    abort: list[str] = []

    def next_job() -> tuple[Any, bytes] | None:
        with lock:
            live = [p for p in peers if errors[p] < max_errors]
            if abort or not todo:
                return None
            if not live:
                abort.append("; ".join(f"{_short(p)}: {last_error.get(p, '?')}" for p in peers))
                return None
            turn[0] += 1
            return todo.popleft(), live[turn[0] % len(live)]

    def worker() -> None:
        while (job := next_job()) is not None:
            entry, peer = job
            try:
                data = node.fetch_from(book[peer], entry.sha256, entry.size, timeout)
            except (PeerRefused, FetchFailed) as exc:
                with lock:
                    errors[peer] += 1
                    last_error[peer] = f"{entry.name[:64]}: {exc}"
                    todo.append(entry)
                continue
            with lock:
                got[entry.name] = data

    workers = max(1, min(concurrency, len(manifest.params)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="p2p-model") as pool:
        for f in [pool.submit(worker) for _ in range(workers)]:
            f.result()
    if abort or len(got) != len(manifest.params):
        where = ", ".join(f"{url_host(book[p][0])}:{book[p][1]}" for p in peers)
        reason = abort[0] if abort else "incomplete"
        raise FetchFailed(
            f"model: {len(manifest.params) - len(got)} of {len(manifest.params)} parameters could not be "
            f"had from {where} (each peer gave up after {max_errors} errors; {reason})"
        )
    return got
