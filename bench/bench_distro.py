"""Benchmark: DisTrO on this CPU. (1) Bytes of one result vs the fp32 gradient for the model presets at
chunk 64 / top-k 8 / 1-bit (goal: at least 500x smaller). (2) The per-round cost of generate (compress) +
encode + decode + data_hash + apply for 3 results, beside one training step of the same trainer, for the
demo's sizes (tiny preset), the 20m preset and the 125m preset (short: few steps, small batch)."""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from psyche.chain.accounts.model import ConstantLR
from psyche.chain.accounts.optimizer import Distro
from psyche.client.config import OptimizerSettings, TrainerConfig
from psyche.client.data import DummySource
from psyche.client.distro import SparseParam
from psyche.client.distro_payload import (
    data_hash,
    decode_payload,
    encode_payload,
    max_payload_bytes,
    payload_shapes,
)
from psyche.client.model import PRESETS, Transformer, preset
from psyche.client.train import Trainer

T = TypeVar("T")
UPSTREAM = Distro(1.0, None, 0.999, 8, 64, True)  # chunk 64, top-k 8, decay 0.999, 1-bit


def sizes() -> None:
    """Result bytes vs fp32 gradient bytes per preset (shapes only: the models live on the meta device)."""
    print("result size at chunk 64 / top-k 8 (goal: >= 500x smaller than the fp32 gradient)")
    head = f"  {'preset':<6} {'params':>12} {'fp32 grad':>12} {'1-bit result':>13} {'ratio':>7}"
    print(f"{head} {'f32 values':>12}")
    for name in PRESETS:
        with torch.device("meta"):
            model = Transformer(preset(name, 64))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        numel = sum(p.numel() for _, p in named)
        one_bit = max_payload_bytes(payload_shapes(named, UPSTREAM))
        f32 = max_payload_bytes(payload_shapes(named, Distro(1.0, None, 0.999, 8, 64, False)))
        print(
            f"  {name:<6} {numel:>12,} {4 * numel:>12,} {one_bit:>13,} {4 * numel / one_bit:>6.0f}x "
            f"{f32:>12,} ({4 * numel / f32:.0f}x)"
        )


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _trainer(name: str, seq: int, mbs: int, distro: Distro | None) -> Trainer:
    spec = preset(name, seq)
    optimizer = OptimizerSettings(clip_grad_norm=1.0, distro=distro)
    config = TrainerConfig(
        micro_batch_size=mbs, device="cpu", lr_schedule=ConstantLR(1e-3, 1e-3, 0), optimizer=optimizer
    )
    return Trainer(config, spec, 0, DummySource(seq, spec.vocab_size, 0))


def round_cost(name: str, seq: int, batch: int, steps: int, mbs: int) -> None:
    """One Distro trainer: per step, the time of train_step (of which generate), then encode, 3 x decode +
    data_hash, and apply of 3 results; beside an AdamW train_step of the same model and batch."""
    adamw = _trainer(name, seq, mbs, None)
    adamw_s = [adamw.train_step(list(range(s * batch, (s + 1) * batch))).seconds for s in range(steps + 1)][
        1:
    ]
    del adamw
    t = _trainer(name, seq, mbs, UPSTREAM)
    assert t.distro is not None
    shapes = t.payload_shapes()
    cap = max_payload_bytes(shapes)
    gen_times: list[float] = []
    real_generate = t.distro.generate

    def timed_generate(lr: float) -> list[SparseParam]:
        out, sec = _timed(lambda: real_generate(lr))
        gen_times.append(sec)
        return out

    t.distro.generate = timed_generate  # type: ignore[method-assign]
    rows: dict[str, list[float]] = {k: [] for k in ("step", "generate", "encode", "decode+hash", "apply")}
    for s in range(steps + 1):
        r = t.train_step(list(range(s * batch, (s + 1) * batch)), step=s)
        wire = r.payload_results
        assert wire is not None
        batch_id = (s * batch, (s + 1) * batch - 1)
        raw, enc = _timed(functools.partial(encode_payload, s, 0, batch_id, wire, True))
        start = time.perf_counter()
        payloads = [decode_payload(raw, shapes, cap) for _ in range(3)]  # 3 clients' results, same size
        for p in payloads:
            data_hash(p)
        dec = time.perf_counter() - start
        _, app = _timed(functools.partial(t.apply_results, [p.results for p in payloads], s))
        if s == 0:
            continue  # the first step warms up the allocator and the basis caches
        for key, value in zip(rows, (r.seconds, gen_times[-1], enc, dec, app), strict=True):
            rows[key].append(value)
    med = {k: statistics.median(v) for k, v in rows.items()}
    extra = med["encode"] + med["decode+hash"] + med["apply"]
    train = med["step"] - med["generate"]
    print(
        f"{name} preset ({t.spec.num_parameters() / 1e6:.2f}M params), seq {seq}, batch {batch}, "
        f"{torch.get_num_threads()} thread(s), median of {steps} step(s); payload {len(raw):,} B"
    )
    print(f"  AdamW train_step (baseline)          {statistics.median(adamw_s) * 1e3:10.1f} ms")
    print(f"  Distro train_step                    {med['step'] * 1e3:10.1f} ms")
    print(f"    of which forward/backward/lookahead {train * 1e3:9.1f} ms")
    print(f"    of which generate (compress)       {med['generate'] * 1e3:10.1f} ms")
    print(f"  encode_payload                       {med['encode'] * 1e3:10.1f} ms")
    print(f"  3 x decode_payload + data_hash       {med['decode+hash'] * 1e3:10.1f} ms")
    print(f"  apply 3 results                      {med['apply'] * 1e3:10.1f} ms")
    overhead = med["generate"] + extra
    print(
        f"  DisTrO per round (generate + encode + 3 decode/hash + apply) {overhead * 1e3:.1f} ms = "
        f"{overhead / train:.0%} of the forward/backward, {overhead / statistics.median(adamw_s):.0%} of an "
        f"AdamW step"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the dev machine has 2)")
    parser.add_argument("--tiny-steps", type=int, default=20)
    parser.add_argument("--mid-steps", type=int, default=5, help="20m steps (0 skips the 20m run)")
    parser.add_argument("--large-steps", type=int, default=2, help="125m steps (0 skips the 125m run)")
    parser.add_argument("--large-batch", type=int, default=2)
    parser.add_argument("--large-seq", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes()
    print()
    round_cost("tiny", 64, 8, args.tiny_steps, 8)  # the demo: seq 64, global batch 8
    if args.mid_steps:
        print()
        round_cost("20m", 64, 8, args.mid_steps, 8)
    if args.large_steps:
        print()
        round_cost("125m", args.large_seq, args.large_batch, args.large_steps, args.large_batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
