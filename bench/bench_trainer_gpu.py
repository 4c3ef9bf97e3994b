"""Benchmark: the trainer directly (no Docker) on one CUDA GPU, ~125M-parameter LLaMA, bf16: tokens/s and MFU.

Run on an H100/H200: `.venv/bin/python bench/bench_trainer_gpu.py` (add --compile for torch.compile). MFU is
model FLOPs (6 per matmul parameter per token plus attention, see ModelSpec.flops_per_token) per second over
the GPU's peak dense bf16 FLOP/s from the table below; the target is MFU >= 35% on H100/H200.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys

import torch

from psyche.chain.accounts.model import ConstantLR
from psyche.client.config import TrainerConfig
from psyche.client.data import DummySource
from psyche.client.model import preset
from psyche.client.train import PEAK_BF16_FLOPS, Trainer, peak_flops

TARGET_MFU = 0.35


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="125m")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32, help="samples per optimizer step")
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator, autotune)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each decoder layer")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the table's peak")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("bench_trainer_gpu: no CUDA device visible; nothing measured", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(name)
    spec = preset(args.preset, args.seq_len)
    config = TrainerConfig(
        micro_batch_size=args.micro_batch_size,
        device="cuda",
        compile=args.compile,
        lr_schedule=ConstantLR(3e-4, 3e-4, 0),
    )
    trainer = Trainer(config, spec, 0, DummySource(args.seq_len, spec.vocab_size, 0))
    shown = "unknown" if peak is None else f"{peak / 1e12:.0f} TFLOP/s"
    print(f"device: {name}  peak bf16: {shown}  (table has: {', '.join(sorted(PEAK_BF16_FLOPS))})")
    print(
        f"model: {args.preset} {spec.num_parameters() / 1e6:.1f}M params, seq {args.seq_len}, "
        f"batch {args.batch} x micro {args.micro_batch_size}, compile={args.compile}"
    )
    rates, losses = [], []
    for step in range(args.warmup + args.steps):
        result = trainer.train_step(list(range(step * args.batch, (step + 1) * args.batch)))
        if step >= args.warmup:
            rates.append(result.tokens_per_second)
            losses.append(result.loss)
    tps = statistics.median(rates)
    mfu = None if peak is None else spec.flops_per_token() * tps / peak
    mem = torch.cuda.max_memory_allocated() / 2**30
    print(f"tokens/s: {tps:,.0f} (median of {args.steps} steps)  loss: {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"peak memory: {mem:.1f} GiB")
    if mfu is None:
        print(f"MFU: unknown for {name!r} (pass --peak-tflops)")
        return 0
    verdict = "meets" if mfu >= TARGET_MFU else "BELOW"
    print(f"MFU: {mfu:.1%} ({verdict} the {TARGET_MFU:.0%} target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
