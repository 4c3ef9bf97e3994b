"""Benchmark: collaborative DisTrO training on this CPU, measured side by side in one run.

1. Collaboration helps: three clients sharing their results (each applies everyone's round-h results at the
   start of round h + 2, in batch order) vs one client alone, with the same per-client batch and the same
   number of rounds; held-out loss (samples from index 10**6 on, never trained on) every few rounds, for a
   few constant learning rates. Goal: the three clients' model reaches the lower held-out loss.
2. The per-round cost of compress + encode + publish + fetch + verify/decode + apply for 3 clients with real
   P2PNodes on 127.0.0.1, per client, as a share of the client's training step (forward/backward): at the
   demo's sizes (tiny preset, 16 x 32-token batch split over 3 clients, and the demo run's 8 x 64; goal:
   under 10 %; and the tiny preset with larger batches) and for the 125m preset (short).
Upstream DisTrO settings throughout: chunk 64, top-k 8, decay 0.999, 1-bit, clip 1.0.

Run: .venv/bin/python bench/bench_collab.py [--rounds 200] [--lrs 1e-3,3e-3,1e-2] [--large-rounds 1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.collab import RoundCost, collaborate, loopback_rounds

SHARE_GOAL = 0.10  # of the training step, at the demo's sizes


def curves(rounds: int, batch: int, lrs: list[float], eval_every: int, held_out: int) -> None:
    print(
        f"1. held-out loss, tiny preset, seq 32, {batch} samples per client per round, {rounds} rounds, "
        f"{held_out} held-out samples (goal: 3 clients lower than 1)"
    )
    runs = [
        (lr, collaborate(batch=batch, rounds=rounds, lr=lr, eval_every=eval_every, held_out=held_out))
        for lr in lrs
    ]
    print("  rounds applied " + "".join(f" | lr {lr:<7g} 1 client  3 clients" for lr, _ in runs))
    for row, applied in enumerate(runs[0][1].applied):
        print(
            f"  {applied:>14}"
            + "".join(f" | {'':10} {c.solo[row]:8.3f} {c.shared[row]:10.3f}" for _, c in runs)
        )
    for lr, c in runs:
        verdict = "met" if c.shared[-1] < c.solo[-1] else "MISSED"
        print(
            f"  lr {lr:g}: after {rounds} rounds 1 client {c.solo[-1]:.3f}, 3 clients {c.shared[-1]:.3f} "
            f"({c.solo[-1] - c.shared[-1]:+.3f}): {verdict}; 3 clients bitwise equal after all "
            f"{c.equal_checks} applies; {c.seconds:.1f} s"
        )


def report(cost: RoundCost, goal: float | None) -> None:
    ph = cost.phases
    train = ph["train"]
    print(
        f"  {cost.name} preset ({cost.params / 1e6:.2f}M params), seq {cost.seq}, batch {sum(cost.shares)} "
        f"split {cost.shares}, payload {cost.payload_bytes:,} B, median of {cost.rounds} round(s) x 3 clients"
    )
    print(f"    training step (forward/backward on the client's share) {train * 1e3:10.1f} ms")
    labels = {
        "compress": "compress (DisTrO generate)",
        "encode": "encode + data_hash + sign",
        "publish": "publish blob + signed broadcast to 2 peers",
        "fetch": "fetch the 2 other payloads (HTTP)",
        "verify": "verify signature + decode + data_hash x 2",
        "apply": "apply 3 results",
    }
    for key, label in labels.items():
        print(f"    {label:<44} {ph[key] * 1e3:10.1f} ms  {ph[key] / train:6.1%}")
    network = ph["publish"] + ph["fetch"] + ph["verify"]
    share = cost.sharing / train
    target = "" if goal is None else f" (goal: < {goal:.0%}: {'met' if share < goal else 'MISSED'})"
    print(f"    sharing per round {cost.sharing * 1e3:.1f} ms = {share:.0%} of the training step{target}")
    top = max((k for k in ph if k != "train"), key=lambda k: ph[k])
    print(
        f"    of which the network (publish, fetch, verify) {network * 1e3:.1f} ms = {network / train:.0%}; "
        f"largest phase: {top}"
    )


def sweep(per_client: list[int], rounds: int) -> None:
    """The tiny preset's sharing share as the per-client batch grows (sharing does not depend on it)."""
    print(f"  tiny preset, seq 32, larger batches (median of {rounds} round(s) x 3 clients):")
    for n in per_client:
        cost = loopback_rounds("tiny", 32, 3 * n, rounds)
        train = cost.phases["train"]
        print(
            f"    {n:>4} samples per client: training step {train * 1e3:7.1f} ms, sharing "
            f"{cost.sharing * 1e3:5.1f} ms = {cost.sharing / train:4.0%}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the dev machine has 2)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8, help="samples per client per round (part 1)")
    parser.add_argument("--lrs", default="1e-3,3e-3,1e-2")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--tiny-rounds", type=int, default=20)
    parser.add_argument("--sweep", default="32,128,512", help="tiny: samples per client to sweep ('' skips)")
    parser.add_argument("--sweep-rounds", type=int, default=3)
    parser.add_argument("--large-rounds", type=int, default=1, help="125m rounds after a warm-up (0 skips)")
    parser.add_argument("--large-batch", type=int, default=3)
    parser.add_argument("--large-seq", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threads, load = torch.get_num_threads(), os.getloadavg()[0]
    print(f"torch {torch.__version__}, {threads} thread(s), {os.cpu_count()} CPUs, load average {load:.1f}")
    if args.rounds:
        curves(
            args.rounds, args.batch, [float(x) for x in args.lrs.split(",")], args.eval_every, args.held_out
        )
        print()
    print("2. per-round sharing cost per client, 3 clients with real P2PNodes on 127.0.0.1")
    print("  a 16 x 32-token batch split over the 3 clients")
    report(loopback_rounds("tiny", 32, 16, args.tiny_rounds), SHARE_GOAL)
    print("  the demo's run config (psyche.localnet.demo_run: global batch 8, seq 64)")
    report(loopback_rounds("tiny", 64, 8, args.tiny_rounds), SHARE_GOAL)
    if args.sweep:
        sweep([int(x) for x in args.sweep.split(",")], args.sweep_rounds)
    if args.large_rounds:
        # One Trainer does the three clients' compute: three 125m trainers would crowd the other sessions.
        report(
            loopback_rounds("125m", args.large_seq, args.large_batch, args.large_rounds, one_model=True), None
        )
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
