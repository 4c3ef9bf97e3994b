"""The Trainer: builds the decoder on its device(s), runs one optimizer step per round over the assigned
sample indices (data-parallel split, micro-batch accumulation, averaged gradients, then AdamW, or for a
Distro run the DisTrO result to share and, later, everyone's results applied), and saves/resumes
checkpoints. The chain protocol drives it; it knows nothing of the chain."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
import torch.distributed as dist

from psyche.chain.accounts.model import LLM
from psyche.client import checkpoint as ckpt
from psyche.client.config import DeviceName, TrainerConfig, TrainerEnv, model_source, trainer_config
from psyche.client.data import DataSource, data_source
from psyche.client.distributed import (
    ParallelContext,
    all_reduce_grads,
    apply_tensor_parallel,
    clip_grads,
    full,
    local,
    shard_like,
    single,
)
from psyche.client.distro import DistroOptimizer, SparseParam
from psyche.client.distro_payload import PayloadShape, payload_shapes
from psyche.client.model import ModelSpec, Transformer, load_hf_weights, preset, read_hf_config
from psyche.client.schedule import lr_at
from psyche.errors import ConfigError, RunManagerError
from psyche.parallelism_table import Parallelism

log = logging.getLogger("psyche.client")

# Peak dense bf16 tensor-core FLOP/s per GPU (no sparsity), from the vendors' datasheets; MFU divides by it.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H100": 989e12,  # SXM; the PCIe card is 756e12 (its name says "PCIe")
    "H100 PCIE": 756e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "RTX 4090": 165e12,
}


def peak_flops(device_name: str) -> float | None:
    """The table's peak for a device name such as 'NVIDIA H100 80GB HBM3' (longest matching key), or None."""
    upper = device_name.upper()
    matches = [k for k in PEAK_BF16_FLOPS if all(part in upper for part in k.split())]
    return PEAK_BF16_FLOPS[max(matches, key=len)] if matches else None


def resolve_device(name: DeviceName) -> torch.device:
    """'auto' is CUDA when available, else the CPU; asking for CUDA without it is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"DEVICE: {name} requested but torch sees no CUDA device")
    return torch.device(name)


@dataclass(frozen=True, slots=True)
class StepResult:
    """One optimizer step: mean loss per token over the whole (all-replica) batch, tokens trained on,
    wall seconds, throughput, the learning rate used, and MFU (None off-GPU or for an unknown GPU).
    ``payload_results``: for a Distro run, this trainer's result as it goes on the wire (1-bit quantised when
    the run asks), one entry per parameter in ``Trainer.payload_shapes()`` order; None for AdamW."""

    step: int
    loss: float
    tokens: int
    seconds: float
    tokens_per_second: float
    lr: float
    mfu: float | None
    payload_results: list[SparseParam] | None = None


class Trainer:
    """One client's training state; in multi-process runs every rank builds one and calls the same methods
    with the same arguments (``parallel.broadcast_indices`` gives them rank 0's indices)."""

    def __init__(
        self,
        config: TrainerConfig,
        spec: ModelSpec,
        seed: int,
        data: DataSource,
        *,
        ctx: ParallelContext | None = None,
        weights_dir: Path | None = None,
        run_id: str = "",
    ) -> None:
        if data.seq_len != spec.max_seq_len:
            raise ConfigError(
                f"data seq_len {data.seq_len} differs from the model's max_seq_len {spec.max_seq_len}"
            )
        self.config = config
        self.run_id = run_id  # recorded in each checkpoint's manifest (ckpt.current_checkpoint matches it)
        self.spec = spec
        self.seed = seed
        self.data = data
        self.ctx = ctx or single(resolve_device(config.device))
        if (self.ctx.dp, self.ctx.tp) != (config.data_parallelism, config.tensor_parallelism):
            raise ConfigError(
                f"process grid dp={self.ctx.dp} tp={self.ctx.tp} differs from the config's "
                f"dp={config.data_parallelism} tp={config.tensor_parallelism}"
            )
        if config.optimizer.distro is not None:
            _check_distro_grid(self.ctx)
        self.device = self.ctx.device
        self.step = 0  # optimizer steps taken; the LR schedule's clock
        on_cuda = self.device.type == "cuda"
        self.autocast = config.precision == "bf16" or (config.precision == "auto" and on_cuda)

        torch.manual_seed(seed)
        model = Transformer(spec)
        if weights_dir is None:
            model.init_weights(seed)
        else:
            load_hf_weights(model, weights_dir)
        model.to(self.device)
        if self.ctx.tp > 1:
            apply_tensor_parallel(model, self.ctx)
        if config.compile:
            for layer in model.model.layers:
                layer.compile()
        self.model = model
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named_params]
        self.names = {id(p): n for n, p in model.named_parameters()}
        opt = config.optimizer
        self.distro: DistroOptimizer | None = None
        self.optimizer: torch.optim.AdamW | None = None
        if opt.distro is not None:
            self.distro = DistroOptimizer(self.named_params, opt.distro)
        else:
            decay = [p for p in self.params if p.ndim >= 2]
            no_decay = [p for p in self.params if p.ndim < 2]
            # Fused AdamW is one kernel per step on CUDA; DTensor (tp > 1) params take the foreach path.
            self.optimizer = torch.optim.AdamW(
                [
                    {"params": decay, "weight_decay": opt.weight_decay},
                    {"params": no_decay, "weight_decay": 0.0},
                ],
                lr=lr_at(config.lr_schedule, 0),
                betas=opt.betas,
                eps=opt.eps,
                fused=on_cuda and self.ctx.tp == 1,
            )
        name = torch.cuda.get_device_name(self.device) if on_cuda else ""
        self.peak = peak_flops(name) if on_cuda else None
        self.flops_per_token = spec.flops_per_token()

    # ------------------------------------------------------------------ training

    def _my_share(self, indices: Sequence[int]) -> list[int]:
        """This dp replica's contiguous slice of the round's samples (tp ranks of a replica share it)."""
        n, dp, r = len(indices), self.ctx.dp, self.ctx.dp_rank
        return list(indices[r * n // dp : (r + 1) * n // dp])

    def train_step(self, sample_indices: Sequence[int], *, step: int | None = None) -> StepResult:
        """Forward/backward over this replica's share of ``sample_indices`` in micro-batches, average the
        gradients over all replicas (sum of per-token losses / all tokens), clip, and take an AdamW step.

        A Distro run instead makes this trainer's DisTrO result (``StepResult.payload_results``) and changes
        no parameter: the forward/backward runs at the lookahead point (the previous step's LR times the sign
        of the error buffer), and the LR is the schedule's at ``step``, the coordinator's step (default: the
        trainer's own count). Results change the model only through ``apply_results``. AdamW ignores
        ``step``."""
        start = time.perf_counter()
        total_tokens = len(sample_indices) * self.spec.max_seq_len
        if total_tokens == 0:
            raise ValueError("train_step needs at least one sample index")
        at = self.step if step is None or self.distro is None else step
        lr = lr_at(self.config.lr_schedule, at)
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.model.zero_grad(set_to_none=True)
        if self.distro is not None:
            self.distro.lookahead(lr_at(self.config.lr_schedule, at - 1) if at > 0 else 0.0)
        mine = self._my_share(sample_indices)
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        mbs = self.config.micro_batch_size
        for i in range(0, len(mine), mbs):
            batch = self.data.fetch(mine[i : i + mbs]).to(self.device, non_blocking=True)
            ctx = (
                torch.autocast(self.device.type, torch.bfloat16)
                if self.autocast
                else contextlib.nullcontext()
            )
            with ctx:
                loss = self.model.loss_sum(batch)
            (loss / total_tokens).backward()  # type: ignore[no-untyped-call]
            loss_sum += loss.detach()
        loss_sum = all_reduce_grads(self.ctx, self.params, loss_sum.reshape(1))
        if self.config.optimizer.clip_grad_norm is not None:
            clip_grads(self.ctx, self.params, self.config.optimizer.clip_grad_norm)
        wire: list[SparseParam] | None = None
        if self.distro is not None:
            self.distro.restore()
            wire = self.distro.generate(lr)
            self.step = at + 1
        else:
            assert self.optimizer is not None
            self.optimizer.step()
            self.step += 1
        mean_loss = float(loss_sum.sum()) / total_tokens  # .item() syncs the device: the timing is honest
        seconds = time.perf_counter() - start
        tps = total_tokens / seconds
        mfu = None if self.peak is None else self.flops_per_token * tps / (self.peak * self.ctx.world_size)
        if self.ctx.is_leader:
            log.info(
                "step %d loss %.4f tokens %d tokens/s %.0f lr %.3g%s",
                self.step,
                mean_loss,
                total_tokens,
                tps,
                lr,
                "" if mfu is None else f" mfu {mfu:.1%}",
            )
        return StepResult(self.step, mean_loss, total_tokens, seconds, tps, lr, mfu, wire)

    def payload_shapes(self) -> list[PayloadShape]:
        """What every valid DisTrO payload for this model holds, per parameter (a Distro run only).

        Raises:
            ConfigError: the run is not a DisTrO run, or a parameter has too many chunks for a payload.
        """
        return payload_shapes(self.named_params, self._require_distro().settings)

    def apply_results(self, results: Sequence[Sequence[SparseParam]], step: int) -> None:
        """Apply DisTrO ``results`` (one list per payload, in the order every client uses: batch-id order)
        with the schedule's LR at the coordinator ``step``. Every client applying the same results to the
        same parameters ends bitwise identical.

        Raises:
            ConfigError: the run is not a DisTrO run.
        """
        self._require_distro().apply(results, lr_at(self.config.lr_schedule, step))

    def round_to_bf16(self) -> None:
        """Round every parameter to bfloat16 and back in place (Cooldown: holders and joiners end equal)."""
        with torch.no_grad():
            for p in self.model.parameters():
                local(p).copy_(local(p).to(torch.bfloat16).to(p.dtype))

    def parameters_for_sharing(self) -> dict[str, torch.Tensor]:
        """Every model parameter as a full CPU tensor in bfloat16, by name (the P2P model share at Cooldown,
        after ``round_to_bf16``, so the bf16 copy is exact). A collective under tp: every rank calls it."""
        return {
            n: full(p.detach()).to(device="cpu", dtype=torch.bfloat16)
            for n, p in self.model.named_parameters()
        }

    @torch.no_grad()
    def load_parameters(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace every parameter with ``tensors`` (full tensors by name, any float dtype; a joiner's fetched
        model) and zero DisTrO's error buffers. A missing, extra or misshapen tensor is a RunManagerError and
        changes nothing."""
        params = dict(self.model.named_parameters())
        if set(tensors) != set(params):
            missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
            raise RunManagerError(
                f"model parameters do not match this model: missing {missing}, extra {extra}"
            )
        for name, p in params.items():
            t = tensors[name]
            if tuple(t.shape) != tuple(p.shape) or not t.dtype.is_floating_point:
                raise RunManagerError(
                    f"model parameter {name}: {t.dtype} {tuple(t.shape)}, expected {tuple(p.shape)} floats"
                )
        for name, p in params.items():
            local(p).copy_(shard_like(tensors[name].to(p.dtype), p))
        self.reset_errors()

    def reset_errors(self) -> None:
        """Zero DisTrO's error buffers (round 0 of a cold-start epoch); nothing to do for AdamW."""
        if self.distro is not None:
            self.distro.reset()

    def _require_distro(self) -> DistroOptimizer:
        if self.distro is None:
            raise ConfigError("this run's optimizer is AdamW, not Distro: there are no DisTrO results")
        return self.distro

    # ------------------------------------------------------------------ checkpoints

    def _gather(self) -> dict[str, dict[str, torch.Tensor]]:
        """Full CPU copies of weights and AdamW moments (a collective under tp: every rank calls it). A Distro
        run saves the weights alone: no error buffer, nothing that differs between clients."""
        model = {n: full(p.detach()).cpu() for n, p in self.model.named_parameters()}
        if self.optimizer is None:
            return {"model": model}
        optim: dict[str, torch.Tensor] = {}
        for p in self.params:
            state = self.optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    optim[f"{self.names[id(p)]}.{key}"] = full(state[key]).cpu()
        return {"model": model, "optimizer": optim}

    def checkpoint_content(self, step: int | None = None) -> ckpt.Content:
        """What a checkpoint of this trainer holds (a collective under tp: every rank calls it). A Distro
        run records the coordinator ``step`` as its trainer step, so clients holding the same parameters
        hold the same content and write the same bytes."""
        meta = {
            "run_id": self.run_id,
            "trainer_step": self.step if self.distro is None or step is None else step,
            "seed": self.seed,
            "spec": self.spec.as_dict(),
        }
        return ckpt.Content(self._gather(), meta, {"config.json": self.spec.to_hf_config()})

    def save_checkpoint(self, root: Path, epoch: int, step: int) -> Path | None:
        """Write a checkpoint for the run's ``epoch`` and ``step`` (rank 0 writes; all ranks must call).
        Returns the directory on rank 0, None elsewhere."""
        content = self.checkpoint_content(step)
        path = None
        if self.ctx.is_leader:
            path = ckpt.write_content(root, epoch, step, content)
            log.info("checkpoint saved: %s", path)
        if self.ctx.world_size > 1:
            dist.barrier()
        return path

    def load_latest_checkpoint(self, root: Path) -> tuple[int, int] | None:
        """Resume from the newest valid checkpoint under ``root``: returns its (epoch, step), or None when
        there is none (corrupt or partial ones are skipped with a warning, never loaded)."""
        if self.ctx.world_size > 1:
            dist.barrier()  # a save in progress on rank 0 has finished
        info = ckpt.latest_checkpoint(root)
        while info is not None:
            try:
                return self._restore(info)
            except ckpt.CorruptCheckpoint as exc:
                log.warning("ignoring checkpoint: %s", exc)
                older = [p for p in ckpt.list_checkpoints(root) if p < info.path]
                info = next((i for i in map(_try_validate, reversed(older)) if i is not None), None)
        return None

    def load_checkpoint(self, path: Path) -> tuple[int, int]:
        """Resume from the checkpoint directory ``path``, already validated by rank 0
        (``ckpt.current_checkpoint``): returns its (epoch, step); ``ckpt.CorruptCheckpoint`` when it does not
        fit this model."""
        return self._restore(ckpt.read_info(path))

    @torch.no_grad()
    def _restore(self, info: ckpt.CheckpointInfo) -> tuple[int, int]:
        if info.meta.get("spec") != self.spec.as_dict():
            raise ckpt.CorruptCheckpoint(f"{info.path}: saved for another model shape")
        weights = info.tensors("model")
        # A Distro checkpoint has no optimizer file; an AdamW trainer then starts with fresh moments.
        has_moments = "optimizer.safetensors" in info.meta["files"]
        moments = info.tensors("optimizer") if has_moments and self.optimizer is not None else {}
        if set(weights) != set(self.names.values()):
            raise ckpt.CorruptCheckpoint(f"{info.path}: model tensors do not match this model")
        for name, p in self.model.named_parameters():
            local(p).copy_(shard_like(weights[name], p))
        for p in self.params:
            name = self.names[id(p)]
            if f"{name}.exp_avg" not in moments or self.optimizer is None:
                continue
            state = self.optimizer.state[p]
            # Fused AdamW keeps its step counter on the parameter's device; the other paths on the CPU.
            on = local(p).device if self.optimizer.defaults.get("fused") else torch.device("cpu")
            state["step"] = torch.tensor(float(info.meta["trainer_step"]), dtype=torch.float32, device=on)
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = torch.zeros_like(p)
                local(state[key]).copy_(shard_like(moments[f"{name}.{key}"], p))
        self.step = int(info.meta["trainer_step"])
        if self.distro is not None:
            self.distro.reset()  # the error buffer is not saved: a resumed trainer starts it from zero
        log.info("resumed from checkpoint %s (trainer step %d)", info.path, self.step)
        return info.epoch, info.step


def _check_distro_grid(ctx: ParallelContext) -> None:
    """DisTrO's DCT chunks span whole parameter dimensions: tensor parallelism (sharded dimensions) is
    refused. Data parallelism works: gradients are averaged before ``generate``, so every rank makes the
    same result, and rank 0 sends every rank the same results to apply (``ranks.Apply``)."""
    if ctx.tp > 1:
        raise ConfigError(
            f"a Distro run cannot use tensor parallelism (tp={ctx.tp}): DisTrO's DCT chunks need whole, "
            "unsharded parameters; set TENSOR_PARALLELISM=1 (data parallelism is fine)"
        )


def _try_validate(path: Path) -> ckpt.CheckpointInfo | None:
    try:
        return ckpt.validate(path)
    except ckpt.CorruptCheckpoint as exc:
        log.warning("ignoring checkpoint: %s", exc)
        return None


def run_seed(run_id: str) -> int:
    """The run's seed for Dummy checkpoints and Dummy data: the first 8 bytes (u64 LE) of sha256(run_id),
    the same on every client of the run."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "little")


def trainer_for_run(
    model: LLM,
    env: TrainerEnv,
    seed: int,
    parallelism: Parallelism,
    *,
    ctx: ParallelContext | None = None,
    client: httpx.Client | None = None,
    resume: Path | None = None,
    run_id: str = "",
) -> Trainer:
    """A Trainer for the run's model: the preset, the local Hub directory or (a Hub repo not on disk) the
    shape saved in ``resume``, the checkpoint the caller resumes next; the run's data location, LR schedule
    and optimizer, with ``parallelism`` (from ``parallelism.resolve_parallelism``).

    Raises:
        ConfigError: the model cannot be found or loaded, or its settings do not hold together (the message
            names which).
    """
    source = model_source(model, env, resume)
    weights_dir = source.directory
    if source.kind == "checkpoint" and source.directory is not None:
        spec = checkpoint_spec(ckpt.read_info(source.directory))
        weights_dir = None  # initialised from the seed, then overwritten by the resume
    elif source.directory is not None:
        spec = ModelSpec.from_hf_config(read_hf_config(source.directory), model.max_seq_len)
    else:
        spec = preset(source.preset, model.max_seq_len)
    config = trainer_config(
        model,
        env,
        dp=parallelism.dp,
        tp=parallelism.tp,
        micro_batch_size=parallelism.micro_batch_size,
        device=env.device if ctx is None else ctx.device.type,
    )
    data = data_source(
        model.data_location, seq_len=model.max_seq_len, vocab_size=spec.vocab_size, seed=seed, client=client
    )
    return Trainer(config, spec, seed, data, ctx=ctx, weights_dir=weights_dir, run_id=run_id)


def checkpoint_spec(info: ckpt.CheckpointInfo) -> ModelSpec:
    """The model shape a checkpoint was saved for (its manifest's ``spec``).

    Raises:
        ConfigError: the manifest has no usable model spec.
    """
    try:
        spec = ModelSpec(**info.meta["spec"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"checkpoint {info.path}: {ckpt.META} has no usable model spec: {exc}") from exc
    spec.check()
    return spec
