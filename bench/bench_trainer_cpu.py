"""Benchmark: CPU training throughput of the tiny preset (2 layers, dim 64, vocab 512, seq 64): tokens/s."""

from __future__ import annotations

import argparse
import statistics

import torch

from psyche.chain.accounts.model import ConstantLR
from psyche.client.config import TrainerConfig
from psyche.client.data import DummySource
from psyche.client.model import preset
from psyche.client.train import Trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="samples per optimizer step")
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the dev machine has 2)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    spec = preset("tiny", args.seq_len)
    config = TrainerConfig(
        micro_batch_size=args.micro_batch_size, device="cpu", lr_schedule=ConstantLR(3e-3, 3e-3, 0)
    )
    trainer = Trainer(config, spec, 0, DummySource(args.seq_len, spec.vocab_size, 0))
    results = [
        trainer.train_step(list(range(s * args.batch, (s + 1) * args.batch))) for s in range(args.steps + 3)
    ][3:]  # the first steps warm up the allocator
    tps = statistics.median(r.tokens_per_second for r in results)
    ms = statistics.median(r.seconds for r in results) * 1e3
    print(
        f"tiny preset ({spec.num_parameters() / 1e3:.0f}k params), seq {args.seq_len}, batch {args.batch}, "
        f"{args.threads} thread(s): {tps:,.0f} tokens/s, {ms:.1f} ms/step (median of {args.steps}); "
        f"loss {results[0].loss:.3f} -> {results[-1].loss:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
