"""Local multi-process parallelism: process groups and the dp x tp mesh, tensor-parallel sharding of the
decoder, gradient all-reduce over data-parallel replicas, and the broadcast of sample indices from rank 0."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._C._distributed_c10d import Store
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
from torch.multiprocessing.spawn import spawn as mp_spawn

from psyche.client.model import Transformer
from psyche.errors import ConfigError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ParallelContext:
    """This process's place in a dp x tp grid of local processes; rank = dp_rank * tp + tp_rank."""

    rank: int
    dp: int
    tp: int
    device: torch.device
    mesh: DeviceMesh | None = None

    @property
    def world_size(self) -> int:
        return self.dp * self.tp

    @property
    def dp_rank(self) -> int:
        return self.rank // self.tp

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tp

    @property
    def is_leader(self) -> bool:
        """Rank 0: the process that talks to the chain and writes checkpoints."""
        return self.rank == 0

    def group(self, dim: str) -> dist.ProcessGroup | None:
        """The process group along "dp" or "tp" (None in a single process)."""
        return None if self.mesh is None else self.mesh.get_group(dim)


def single(device: torch.device) -> ParallelContext:
    """The context of a lone process (dp = tp = 1, no process group)."""
    return ParallelContext(0, 1, 1, device)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def init_parallel(
    rank: int,
    dp: int,
    tp: int,
    device_type: str,
    *,
    store: Store | None = None,
    timeout: timedelta | None = None,
) -> ParallelContext:
    """Join the process group (through ``store``, else MASTER_ADDR/MASTER_PORT from the environment; gloo on
    CPU, NCCL on CUDA) and build the ("dp", "tp") mesh. Each CUDA process uses device ``rank``. ``timeout``
    bounds every collective (torch's default otherwise)."""
    if dp * tp == 1:
        return single(torch.device(device_type))
    if device_type == "cuda":
        if torch.cuda.device_count() < dp * tp:
            raise ConfigError(
                f"DATA_PARALLELISM x TENSOR_PARALLELISM = {dp * tp} but only {torch.cuda.device_count()} "
                "GPUs are visible"
            )
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if device_type == "cuda" else {}
        if store is not None:
            kwargs["store"] = store
        if timeout is not None:
            kwargs["timeout"] = timeout
        dist.init_process_group(backend, rank=rank, world_size=dp * tp, **kwargs)
    mesh = init_device_mesh(device_type, (dp, tp), mesh_dim_names=("dp", "tp"))
    return ParallelContext(rank, dp, tp, device, mesh)


def _entry(
    rank: int, fn: Callable[..., None], dp: int, tp: int, device_type: str, args: tuple[Any, ...]
) -> None:
    if device_type == "cpu":
        # Each process gets its share of the cores; oversubscription makes gloo collectives crawl.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // (dp * tp)))
    ctx = init_parallel(rank, dp, tp, device_type)
    try:
        fn(ctx, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn_local(fn: Callable[..., None], dp: int, tp: int, device_type: str, *args: Any) -> None:
    """Run ``fn(ctx, *args)`` in dp x tp local processes on 127.0.0.1 (``fn`` must be importable: spawn)."""
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT")}
    # The children inherit these at spawn; the parent's environment is put back afterwards.
    os.environ["MASTER_ADDR"] = LOOPBACK
    os.environ["MASTER_PORT"] = str(free_port())
    try:
        mp_spawn(_entry, args=(fn, dp, tp, device_type, args), nprocs=dp * tp, join=True)  # type: ignore[no-untyped-call]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def apply_tensor_parallel(model: Transformer, ctx: ParallelContext) -> None:
    """Shard attention and MLP projections across the "tp" ranks (Megatron-style column then row split);
    embeddings, norms and the LM head stay replicated."""
    spec = model.spec
    if spec.n_kv_heads % ctx.tp or spec.ffn_dim % ctx.tp:
        raise ConfigError(
            f"TENSOR_PARALLELISM={ctx.tp} must divide the model's {spec.n_kv_heads} kv heads "
            f"and its ffn size {spec.ffn_dim}"
        )
    assert ctx.mesh is not None
    plan = {
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": ColwiseParallel(),
        "self_attn.v_proj": ColwiseParallel(),
        "self_attn.o_proj": RowwiseParallel(),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(),
    }
    for layer in model.model.layers:
        parallelize_module(layer, ctx.mesh["tp"], plan)


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor this rank holds (a DTensor's local shard, else the tensor itself)."""
    return t.to_local() if isinstance(t, DTensor) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a collective for a sharded DTensor; every tp rank must call it)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The part of the full tensor ``value`` that this rank holds for a tensor laid out as ``like``."""
    if isinstance(like, DTensor):
        return distribute_tensor(value.to(like.device), like.device_mesh, like.placements).to_local()
    return value


@torch.no_grad()
def all_reduce_grads(
    ctx: ParallelContext, params: Sequence[nn.Parameter], extra: torch.Tensor
) -> torch.Tensor:
    """Sum every gradient and the ``extra`` values over the dp replicas in one flat all-reduce; returns the
    summed ``extra`` (the step's loss terms ride along at no extra round trip)."""
    if ctx.dp == 1:
        return extra
    for p in params:
        if p.grad is None:  # a rank with no samples this step still contributes (zeros)
            p.grad = torch.zeros_like(p)
    grads = [local(p.grad) for p in params if p.grad is not None]
    flat = torch.cat([*(g.reshape(-1).float() for g in grads), extra.float().to(grads[0].device)])
    dist.all_reduce(flat, group=ctx.group("dp"))
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n
    return flat[offset:]


@torch.no_grad()
def clip_grads(ctx: ParallelContext, params: Iterable[nn.Parameter], max_norm: float) -> float:
    """Scale gradients so their global L2 norm is at most ``max_norm``; returns the norm before clipping.
    Sharded gradients' squares are summed over the tp ranks; replicated ones are counted once."""
    sharded = torch.zeros((), dtype=torch.float32, device=ctx.device)
    replicated = torch.zeros((), dtype=torch.float32, device=ctx.device)
    grads = [p.grad for p in params if p.grad is not None]
    for g in grads:
        sq = local(g).float().pow(2).sum()
        if isinstance(g, DTensor) and any(pl.is_shard() for pl in g.placements):
            sharded += sq
        else:
            replicated += sq
    if ctx.tp > 1:
        dist.all_reduce(sharded, group=ctx.group("tp"))
    norm = float((sharded + replicated).sqrt())
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            local(g).mul_(scale)
    return norm


def broadcast_indices(ctx: ParallelContext, indices: Sequence[int] | None) -> list[int]:
    """Rank 0 sends its sample indices (it learned them from the chain); every other rank passes None and
    receives them. Two small broadcasts: the count, then the int64 values."""
    if ctx.world_size == 1:
        return list(indices or [])
    device = ctx.device
    count = torch.tensor([len(indices or [])], dtype=torch.int64, device=device)
    dist.broadcast(count, src=0)
    values = (
        torch.tensor(list(indices or []), dtype=torch.int64, device=device)
        if ctx.is_leader
        else torch.empty(int(count.item()), dtype=torch.int64, device=device)
    )
    dist.broadcast(values, src=0)
    return [int(v) for v in values.tolist()]
