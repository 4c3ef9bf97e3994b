"""DisTrO: the run's ``Distro`` optimizer (docs/client.md, spec distro.md section 1).

Each parameter is cut into chunks (per dimension, the largest divisor of its size that is <= the run's
``compression_chunk``), every chunk goes through an orthonormal DCT-II, and a trainer sends only the top-k
coefficients of each chunk (optionally their sign alone). Every client then applies the same set of results:
per coefficient the mean over the results that picked it, the inverse DCT, and sign-SGD
``p -= lr * sign(decoded)``. An error-feedback buffer per parameter keeps what was not sent.

Determinism: every client applies the same payloads in the same order and must end bitwise identical, so the
aggregation is a fixed sequence of float64 matmuls (no scatter, no atomics) before the sign is taken.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from psyche.chain.accounts.optimizer import Distro
from psyche.errors import ConfigError

__all__ = [
    "DistroOptimizer",
    "ParamTransform",
    "SparseParam",
    "aggregate",
    "aggregate_blocks",
    "chunk_size",
    "compress",
    "dct_basis",
    "quantize_1bit",
]


def chunk_size(n: int, chunk: int) -> int:
    """The chunk length for a dimension of size ``n``: the largest divisor of ``n`` that is <= ``chunk``
    (``n`` itself when ``n <= chunk``; 1 for a prime larger than ``chunk``)."""
    if n < 1 or chunk < 1:
        raise ValueError(f"chunk_size needs positive sizes, got n={n} chunk={chunk}")
    if n <= chunk:
        return n
    return max(d for d in range(1, chunk + 1) if n % d == 0)


@functools.lru_cache(maxsize=64)
def dct_basis(c: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix of size ``c`` (float64, CPU, cached; do not modify it):
    ``M[i, k] = s_k cos(pi (i + 1/2) k / c)`` with ``s_0 = sqrt(1/c)``, ``s_k = sqrt(2/c)``. ``x @ M`` is the
    transform, ``y @ M.T`` its inverse."""
    if c < 1:
        raise ValueError(f"dct_basis needs a positive size, got {c}")
    i = torch.arange(c, dtype=torch.float64).unsqueeze(1)
    k = torch.arange(c, dtype=torch.float64).unsqueeze(0)
    m = torch.cos(math.pi * (i + 0.5) * k / c)
    scale = torch.full((1, c), math.sqrt(2.0 / c), dtype=torch.float64)
    scale[0, 0] = math.sqrt(1.0 / c)
    return m * scale


@functools.lru_cache(maxsize=256)
def _basis_on(c: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return dct_basis(c).to(device=device, dtype=dtype)


class ParamTransform:
    """The chunked DCT of one parameter shape.

    1-D (N): chunks (N/c, c), coefficients (N/c, c). 2-D (R, C): view (R/c1, c1, C/c2, c2), transform both
    chunk dimensions, coefficients (R/c1, C/c2, c1*c2). ``xshape`` is the coefficient tensor before the last
    two dimensions are flattened (what the payload carries), ``totalk`` the coefficients per chunk.
    Other ranks are refused (the reference model has none; a 0-D or 3-D parameter is a ConfigError)."""

    def __init__(self, shape: Sequence[int], chunk: int, *, name: str = "parameter") -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) == 1:
            (n,) = self.shape
            c = chunk_size(n, chunk)
            self.chunks: tuple[int, ...] = (c,)
            self.xshape: tuple[int, ...] = (n // c, c)
            self.grid: tuple[int, ...] = (n // c,)
        elif len(self.shape) == 2:
            r, cols = self.shape
            c1, c2 = chunk_size(r, chunk), chunk_size(cols, chunk)
            self.chunks = (c1, c2)
            self.xshape = (r // c1, cols // c2, c1, c2)
            self.grid = (r // c1, cols // c2)
        else:
            raise ConfigError(
                f"DisTrO: {name} has {len(self.shape)} dimensions {self.shape}; only 1-D and 2-D parameters "
                "can be compressed"
            )
        self.totalk = math.prod(self.chunks)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """DCT coefficients of ``x`` (the parameter's shape), shape ``grid + (totalk,)``, in ``x``'s dtype."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"encode: expected shape {self.shape}, got {tuple(x.shape)}")
        if len(self.chunks) == 1:
            m = _basis_on(self.chunks[0], x.device, x.dtype)
            return x.reshape(self.grid[0], self.chunks[0]) @ m
        c1, c2 = self.chunks
        m1, m2 = _basis_on(c1, x.device, x.dtype), _basis_on(c2, x.device, x.dtype)
        # einsum("yhxw,hb,wd->yxbd", blocks, M1, M2) as two batched matmuls (faster than torch.einsum).
        blocks = x.reshape(self.grid[0], c1, self.grid[1], c2).transpose(1, 2)
        return (m1.T @ blocks @ m2).reshape(*self.grid, self.totalk)

    def decode(self, coeffs: torch.Tensor) -> torch.Tensor:
        """The inverse of ``encode``: coefficients ``grid + (totalk,)`` back to the parameter's shape."""
        if len(self.chunks) == 1:
            m = _basis_on(self.chunks[0], coeffs.device, coeffs.dtype)
            return (coeffs.reshape(self.grid[0], self.chunks[0]) @ m.T).reshape(self.shape)
        c1, c2 = self.chunks
        m1, m2 = _basis_on(c1, coeffs.device, coeffs.dtype), _basis_on(c2, coeffs.device, coeffs.dtype)
        blocks = m1 @ coeffs.reshape(self.grid[0], self.grid[1], c1, c2) @ m2.T
        return blocks.transpose(1, 2).reshape(self.shape)

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        """A view of ``x`` (the parameter's shape, contiguous) chunk by chunk: ``(N/c, 1, c)`` for 1-D,
        ``(R/c1, C/c2, c1, c2)`` for 2-D; writing to it writes to ``x``."""
        if len(self.chunks) == 1:
            return x.view(self.grid[0], 1, self.chunks[0])
        c1, c2 = self.chunks
        return x.view(self.grid[0], c1, self.grid[1], c2).transpose(1, 2)

    def decode_sparse_blocks(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """``decode`` of coefficients given as picks (``idx``, ``val``: ``grid + (K,)``; a repeated index
        adds up), in ``val``'s dtype and the layout of ``blocks``: a sum of K basis functions per chunk
        instead of a dense transform (K = 8-24 picks of 4,096 coefficients at chunk 64)."""
        k = idx.shape[-1]
        flat = _sparse_blocks(self.chunks, idx.reshape(-1, k), val.reshape(-1, k))
        return flat.view(*self.grid, *flat.shape[1:])

    def decode_sparse(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """``decode_sparse_blocks`` in the parameter's shape."""
        blocks = self.decode_sparse_blocks(idx, val)
        if len(self.chunks) == 1:
            return blocks.reshape(self.shape)
        return blocks.transpose(1, 2).reshape(self.shape)


def _sparse_blocks(chunks: tuple[int, ...], idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """Chunks (N, 1, c) or (N, c1, c2) from picks ``idx``/``val`` (N, K): each pick's basis function times
    its value, summed in a fixed order (a batched matmul over the K picks)."""
    if len(chunks) == 1:
        rows = _basis_on(chunks[0], val.device, val.dtype).T[idx]  # (N, K, c): basis function k at every i
        return val.unsqueeze(-2) @ rows
    c1, c2 = chunks
    rows1 = _basis_on(c1, val.device, val.dtype).T[idx // c2]  # (N, K, c1)
    rows2 = _basis_on(c2, val.device, val.dtype).T[idx % c2]  # (N, K, c2)
    return (rows1 * val.unsqueeze(-1)).transpose(-1, -2) @ rows2


def _encode_blocks(chunks: tuple[int, ...], blocks: torch.Tensor) -> torch.Tensor:
    """DCT coefficients (N, totalk) of chunks (N, 1, c) or (N, c1, c2)."""
    n = blocks.shape[0]
    if len(chunks) == 1:
        return (blocks @ _basis_on(chunks[0], blocks.device, blocks.dtype)).reshape(n, chunks[0])
    m1 = _basis_on(chunks[0], blocks.device, blocks.dtype)
    m2 = _basis_on(chunks[1], blocks.device, blocks.dtype)
    return (m1.T @ blocks @ m2).reshape(n, chunks[0] * chunks[1])


@dataclass(frozen=True, slots=True)
class _Bucket:
    """Parameters with the same chunk shape, processed as one tensor of chunks (small models have many
    small parameters, and each torch call has a fixed cost); ``offsets[j]`` is member j's first chunk."""

    chunks: tuple[int, ...]
    members: tuple[int, ...]
    offsets: tuple[int, ...]


# Small parameters share a bucket (fewer torch calls); large ones go alone, which avoids the bucket's copy
# and keeps temporaries small (measured: 1M-value buckets beat 16M-value ones at the 20m and 125m presets).
BUCKET_ELEMENTS = 1 << 20


def _buckets(transforms: Sequence[ParamTransform], cap: int = BUCKET_ELEMENTS) -> list[_Bucket]:
    """Parameters of the same chunk shape share a bucket, in model order, up to ``cap`` values (one larger
    parameter gets a bucket of its own), which bounds the extra memory a bucket's copy takes."""
    open_: dict[tuple[int, ...], list[int]] = {}
    done: list[list[int]] = []
    size: dict[tuple[int, ...], int] = {}
    for i, t in enumerate(transforms):
        numel = math.prod(t.shape)
        members = open_.setdefault(t.chunks, [])
        if members and size[t.chunks] + numel > cap:
            done.append(members)
            members = open_[t.chunks] = []
            size[t.chunks] = 0
        members.append(i)
        size[t.chunks] = size.get(t.chunks, 0) + numel
    done.extend(m for m in open_.values() if m)
    buckets = []
    for members in sorted(done):
        offsets, total = [], 0
        for i in members:
            offsets.append(total)
            total += math.prod(transforms[i].grid)
        buckets.append(_Bucket(transforms[members[0]].chunks, tuple(members), tuple(offsets)))
    return buckets


@dataclass(frozen=True, slots=True)
class SparseParam:
    """One parameter's compressed result: ``idx`` (int64, ``grid + (k,)``) picks coefficients of each chunk,
    ``val`` (float32, same shape) their values (-1/+1 when 1-bit quantised); ``xshape`` and ``totalk`` as in
    ``ParamTransform``."""

    idx: torch.Tensor
    val: torch.Tensor
    xshape: tuple[int, ...]
    totalk: int


def compress(coeffs: torch.Tensor, topk: int, xshape: tuple[int, ...]) -> SparseParam:
    """The ``topk`` coefficients of largest magnitude in each chunk (last dimension); k is clamped to
    [1, totalk]. The order of the indices within a chunk carries no meaning."""
    totalk = coeffs.shape[-1]
    k = min(max(topk, 1), totalk)
    idx = coeffs.abs().topk(k, dim=-1, sorted=False).indices
    val = coeffs.gather(-1, idx).to(torch.float32)
    return SparseParam(idx, val, xshape, totalk)


def quantize_1bit(result: SparseParam) -> SparseParam:
    """The wire copy of ``result`` with each value replaced by its sign: -1.0 for negative, +1.0 otherwise
    (zero and -0.0 count as positive: the sign bit sent is ``value < 0``)."""
    one = torch.ones((), dtype=torch.float32, device=result.val.device)
    val = torch.where(result.val < 0, -one, one)
    return SparseParam(result.idx, val, result.xshape, result.totalk)


def aggregate(
    results: Sequence[SparseParam], transform: ParamTransform, device: torch.device | None = None
) -> torch.Tensor:
    """The parameter-shaped float64 update of several results for one parameter, computed on ``device``
    (default: the first result's): for each coefficient, the mean over the results that picked it (upstream's
    ``scatter_reduce(mean, include_self=False)``), then the inverse DCT."""
    blocks = aggregate_blocks(results, transform, device)
    if len(transform.chunks) == 1:
        return blocks.reshape(transform.shape)
    return blocks.transpose(1, 2).reshape(transform.shape)


def aggregate_blocks(
    results: Sequence[SparseParam], transform: ParamTransform, device: torch.device | None = None
) -> torch.Tensor:
    """``aggregate`` in the layout of ``transform.blocks`` (no reshuffling copy).

    Computed sparsely: each pick, weighted by its value over the number of picks of the same coefficient in
    its chunk, adds its basis function (``transform.decode_sparse_blocks``). No scatter and no atomics: every
    client gets the same bits on the same hardware, whatever the device."""
    if not results:
        raise ValueError("aggregate needs at least one result")
    device = results[0].idx.device if device is None else device
    for r in results:
        if r.xshape != transform.xshape or r.totalk != transform.totalk:
            raise ValueError(
                f"aggregate: result of shape {r.xshape}/{r.totalk}, expected {transform.xshape}/"
                f"{transform.totalk}"
            )
    idx = torch.cat([r.idx for r in results], dim=-1).to(device)
    val = torch.cat([r.val for r in results], dim=-1).to(device=device, dtype=torch.float64)
    if len(results) > 1:  # a result's own indices are unique; repeats come from different results
        val = val / (idx.unsqueeze(-1) == idx.unsqueeze(-2)).sum(dim=-1)
    return transform.decode_sparse_blocks(idx, val)


class DistroOptimizer:
    """DisTrO state for one model: an error buffer per parameter and this trainer's own last unquantised
    result. ``generate`` makes this trainer's result from the gradients; ``apply`` applies everyone's."""

    def __init__(
        self,
        named_params: Sequence[tuple[str, torch.nn.Parameter]],
        settings: Distro,
        *,
        bucket_elements: int = BUCKET_ELEMENTS,
    ) -> None:
        if settings.compression_chunk < 1:
            raise ConfigError("model.optimizer.Distro.compression_chunk: must be at least 1")
        for name, p in named_params:
            if not p.is_contiguous():  # results are applied through views of the parameter's chunks
                raise ConfigError(f"DisTrO: {name} is not contiguous in memory")
        self.settings = settings
        self.names = [n for n, _ in named_params]
        self.params: list[torch.Tensor] = [p for _, p in named_params]
        self.transforms = [
            ParamTransform(p.shape, settings.compression_chunk, name=n) for n, p in named_params
        ]
        self.errors = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]
        self.buckets = _buckets(self.transforms, bucket_elements)
        self.own: list[SparseParam | None] = [None] * len(self.params)
        self._saved: list[torch.Tensor] | None = None
        self._spare: list[torch.Tensor] | None = None

    @torch.no_grad()
    def lookahead(self, lr_prev: float) -> None:
        """Step 1: save the parameters, then ``p -= lr_prev * sign(error buffer)``; ``restore`` undoes it."""
        if self._saved is not None:
            raise RuntimeError("lookahead called twice without restore")
        if self._spare is None:
            self._spare = [torch.empty_like(p) for p in self.params]
        torch._foreach_copy_(self._spare, self.params)
        self._saved, self._spare = self._spare, None
        if lr_prev != 0.0:
            torch._foreach_add_(self.params, torch._foreach_sign(self.errors), alpha=-lr_prev)

    @torch.no_grad()
    def restore(self) -> None:
        """Step 3: put back the parameters saved by ``lookahead`` (exact, unlike adding the step back)."""
        if self._saved is None:
            raise RuntimeError("restore called without lookahead")
        torch._foreach_copy_(self.params, self._saved)
        self._saved, self._spare = None, self._saved  # the copies are reused by the next lookahead

    @torch.no_grad()
    def generate(self, lr: float) -> list[SparseParam]:
        """Steps 4, 6, 7: subtract this trainer's previous (unquantised) result from the error buffer, decay
        it, add ``lr * grad`` (a missing gradient counts as zero), and compress its DCT. Returns the wire
        copy (1-bit quantised when the run asks); the unquantised result is kept for the next call."""
        s = self.settings
        for b in self.buckets:
            prevs = [self.own[i] for i in b.members]
            if all(prev is not None for prev in prevs):
                idx = torch.cat(
                    [prev.idx.reshape(-1, prev.idx.shape[-1]) for prev in prevs if prev is not None]
                )
                val = torch.cat(
                    [prev.val.reshape(-1, prev.val.shape[-1]) for prev in prevs if prev is not None]
                )
                transmitted = _sparse_blocks(b.chunks, idx, val.to(self.errors[b.members[0]].dtype))
                self._sub_per_member(b, self.errors, transmitted, 1.0)
        # One multi-tensor call each for decay and gradient: per-parameter calls dominate small models.
        torch._foreach_mul_(self.errors, s.compression_decay)
        with_grad = [(d, p.grad) for d, p in zip(self.errors, self.params, strict=True) if p.grad is not None]
        if with_grad:
            torch._foreach_add_([d for d, _ in with_grad], [g for _, g in with_grad], alpha=lr)
        wire: list[SparseParam | None] = [None] * len(self.params)
        for b in self.buckets:
            parts = [self._chunks_of(i, self.errors[i]) for i in b.members]
            blocks = parts[0] if len(parts) == 1 else torch.cat(parts)
            result = compress(_encode_blocks(b.chunks, blocks), s.compression_topk, ())
            sent = quantize_1bit(result) if s.quantize_1bit else result
            for j, i in enumerate(b.members):
                self.own[i] = self._member_part(b, j, result)
                wire[i] = self._member_part(b, j, sent)
        return [w for w in wire if w is not None]

    def _chunks_of(self, i: int, x: torch.Tensor) -> torch.Tensor:
        t = self.transforms[i]
        chunks = t.blocks(x)
        return chunks.reshape(-1, *chunks.shape[len(t.grid) :])

    def _member_part(self, b: _Bucket, j: int, result: SparseParam) -> SparseParam:
        """Member j's rows of a bucket's result, in its own shape (views, no copy)."""
        t = self.transforms[b.members[j]]
        start = b.offsets[j]
        stop = start + math.prod(t.grid)
        k = result.idx.shape[-1]
        return SparseParam(
            result.idx[start:stop].view(*t.grid, k),
            result.val[start:stop].view(*t.grid, k),
            t.xshape,
            t.totalk,
        )

    def _sub_per_member(
        self, b: _Bucket, targets: Sequence[torch.Tensor], chunks: torch.Tensor, alpha: float
    ) -> None:
        """``target -= alpha * chunks`` for each member, through views of its chunks."""
        for j, i in enumerate(b.members):
            t = self.transforms[i]
            start = b.offsets[j]
            part = chunks[start : start + math.prod(t.grid)]
            t.blocks(targets[i]).sub_(part.view(*t.grid, *part.shape[1:]), alpha=alpha)

    @torch.no_grad()
    def apply(self, results: Sequence[Sequence[SparseParam]], lr: float) -> None:
        """Apply ``results`` (one list per payload, one entry per parameter, in the order every client uses):
        weight decay ``p *= 1 - lr * weight_decay`` when set, then ``p -= lr * sign(aggregate)``. No results
        is a no-op (weight decay included), so a round without results leaves the model as it is."""
        if not results:
            return
        for r in results:
            if len(r) != len(self.params):
                raise ValueError(f"apply: a result has {len(r)} parameters, the model {len(self.params)}")
        for r in results:
            for i, t in enumerate(self.transforms):
                if r[i].xshape != t.xshape or r[i].totalk != t.totalk:
                    raise ValueError(
                        f"apply: {self.names[i]} result of shape {r[i].xshape}/{r[i].totalk}, expected "
                        f"{t.xshape}/{t.totalk}"
                    )
        wd = self.settings.weight_decay
        if wd:
            torch._foreach_mul_(self.params, 1.0 - lr * wd)
        for b in self.buckets:
            device = self.params[b.members[0]].device
            # Per payload, the bucket's members one after another; then the payloads side by side (K picks).
            idx = torch.cat(
                [torch.cat([r[i].idx.reshape(-1, r[i].idx.shape[-1]) for i in b.members]) for r in results],
                dim=-1,
            ).to(device)
            val = torch.cat(
                [torch.cat([r[i].val.reshape(-1, r[i].val.shape[-1]) for i in b.members]) for r in results],
                dim=-1,
            ).to(device=device, dtype=torch.float64)
            if len(results) > 1:  # a result's own indices are unique; repeats come from different results
                val = val / (idx.unsqueeze(-1) == idx.unsqueeze(-2)).sum(dim=-1)
            update = _sparse_blocks(b.chunks, idx, val).sign_().to(self.params[b.members[0]].dtype)
            self._sub_per_member(b, self.params, update, lr)

    def reset(self) -> None:
        """Zero the error buffers and forget the own previous result (a cold start of an epoch, a joiner)."""
        for d in self.errors:
            d.zero_()
        self.own = [None] * len(self.params)

    @torch.no_grad()
    def round_to_bf16(self) -> None:
        """Round every parameter to bfloat16 and back in place (Cooldown: holders and joiners end equal)."""
        for p in self.params:
            p.copy_(p.to(torch.bfloat16).to(p.dtype))
