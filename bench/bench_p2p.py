"""P2P figures: model fetch MB/s between two processes on loopback, and per-client bytes per round vs clients.

Run: .venv/bin/python bench/bench_p2p.py [--repeats 3] [--clients 2,4,8,16]
(plain script, not a test; goals: model fetch >= 100 MB/s; a result >= 500x smaller than the fp32 gradient)

1. Model fetch: a serving process holds the 125M preset's parameters as bf16 bytes (random contents, the
   real names and shapes) behind a signed manifest; this process joins with fetch_model (8 requests in
   flight, 10 s per request) and times manifest + every blob + sha256 checks, then the bytes -> torch
   bf16 tensors step a joiner does before its first apply.
2. Bytes per round: N nodes in this process, each publishes one DisTrO payload of the preset's size
   (chunk 64, top-k 8, 1-bit), broadcasts its ticket, and fetches the N-1 others' payloads; per-client
   bytes in/out as the nodes count them, and the wall time of the exchange on loopback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from psyche.client.identity import P2PIdentity
from psyche.p2p.model_share import fetch_model, serve_model
from psyche.p2p.node import P2PNode
from psyche.p2p.wire import (
    Broadcast,
    Proof,
    TrainingResult,
    decode_broadcast,
    encode_broadcast,
    parse_address,
)

FETCH_GOAL_MBS = 100.0
RATIO_GOAL = 500.0
CHUNK, TOPK = 64, 8
SERVER_SEED = b"\x51" * 32
JOINER_SEED = b"\x52" * 32


def param_shapes(preset: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every parameter of a preset, built on the meta device (no memory)."""
    import torch  # here, not at the top: the round-bench child processes never need it

    from psyche.client.model import PRESETS, Transformer

    spec = PRESETS[preset]
    spec = type(spec)(**{**spec.as_dict(), "max_seq_len": 2048})
    with torch.device("meta"):
        model = Transformer(spec)
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def chunk_of(n: int) -> int:
    return max(d for d in range(1, min(n, CHUNK) + 1) if n % d == 0)


def payload_bytes(shapes: Sequence[tuple[str, tuple[int, ...]]]) -> int:
    """One result's bytes at chunk 64 / top-k 8 / 1-bit: psyche.client.distro_payload when it is there
    (branch distro), else the same arithmetic: per chunk k indices (u8 up to 256 coefficients, else u16)
    plus k sign bits, and a small header per parameter."""
    import torch

    try:
        from psyche.chain.accounts.optimizer import Distro
        from psyche.client.distro_payload import (  # type: ignore[import-untyped,unused-ignore]
            max_payload_bytes,
            payload_shapes,
        )

        settings = Distro(None, None, 0.999, TOPK, CHUNK, True)
        params = [(n, torch.nn.Parameter(torch.empty(s, device="meta"))) for n, s in shapes]
        return int(max_payload_bytes(payload_shapes(params, settings), settings))
    except ImportError:
        pass
    total = 16  # step, nonce, batch, count
    for _, shape in shapes:
        chunks = [chunk_of(d) for d in shape]
        totalk = math.prod(chunks)
        k = min(TOPK, totalk)
        n_chunks = math.prod(d // c for d, c in zip(shape, chunks, strict=True))
        idx = 1 if totalk <= 256 else 2
        total += 1 + 2 * len(shape) + 8 + n_chunks * (k * idx + math.ceil(k / 8))
    return total


# --- 1. model fetch between two processes -----------------------------------------------------------


def serve(port_file: str) -> None:
    """The serving process: the 125M preset's bf16 bytes behind a signed manifest, until stdin closes."""
    import torch

    shapes = param_shapes("125m")
    gen = torch.Generator().manual_seed(0)
    tensors = []
    for name, shape in shapes:
        t = torch.randn(shape, generator=gen, dtype=torch.float32).to(torch.bfloat16)
        tensors.append((name, "bfloat16", shape, t.view(torch.uint8).numpy().tobytes()))
    node = P2PNode(P2PIdentity(SERVER_SEED), "127.0.0.1", 0, None, [], lambda s, d: None).start()
    serve_model(node, 1, 100, {"preset": "125m"}, tensors)
    with open(port_file, "w") as f:
        json.dump(list(node.address), f)
    sys.stdin.read()
    node.close()


def bench_model_fetch(repeats: int) -> dict[str, float]:
    import torch

    port_file = f"/tmp/bench_p2p_{os.getpid()}.json"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", port_file], stdin=subprocess.PIPE, text=True
    )
    try:
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if proc.poll() is not None:
                raise SystemExit("the serving process died")
            time.sleep(0.1)
        time.sleep(0.1)
        with open(port_file) as f:
            host, port = json.load(f)
        server = P2PIdentity(SERVER_SEED).public
        times, convert = [], []
        total = 0
        for _ in range(repeats):
            joiner = P2PNode(
                P2PIdentity(JOINER_SEED), "127.0.0.1", 0, None, [(host, port)], lambda s, d: None
            )
            with joiner:
                joiner.set_allowed({server})
                while server not in joiner.peers():
                    time.sleep(0.01)
                start = time.perf_counter()
                manifest, blobs = fetch_model(joiner, [server])
                times.append(time.perf_counter() - start)
                total = manifest.total_bytes()
                start = time.perf_counter()
                params = {
                    p.name: torch.frombuffer(bytearray(blobs[p.name]), dtype=torch.bfloat16).view(p.shape)
                    for p in manifest.params
                }
                convert.append(time.perf_counter() - start)
                assert len(params) == len(manifest.params)
        best = min(times)
        return {
            "bytes": total,
            "params": len(manifest.params),
            "best_s": best,
            "median_s": statistics.median(times),
            "best_mbs": total / best / 1e6,
            "median_mbs": total / statistics.median(times) / 1e6,
            "convert_s": statistics.median(convert),
        }
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)
        if os.path.exists(port_file):
            os.unlink(port_file)


def bench_joiner_ready(preset: str) -> dict[str, float]:
    """A joiner's path to its first apply, with the client's own code, one process on loopback: a serving
    client rounds its trained model to bf16 and serves it (ResultSharing.serve_model); the joiner fetches it
    (signed manifest, hash-checked blobs), widens it back, writes it as its own checkpoint and builds its
    trainer resuming that checkpoint (what TorchTrainerPort does). Checks the joiner is bitwise equal."""
    import tempfile
    from pathlib import Path

    import torch

    from psyche.chain.accounts.model import (
        LLM,
        Checkpoint,
        CheckpointKind,
        ConstantLR,
        DataLocation,
        DataLocationKind,
        HubRepo,
        LLMArchitecture,
        LLMTrainingDataType,
    )
    from psyche.chain.accounts.optimizer import Distro
    from psyche.client import checkpoint as ckpt
    from psyche.client.config import TrainerEnv
    from psyche.client.rank_messages import Build
    from psyche.client.sharing import ResultSharing, content_from_wire
    from psyche.client.trainer_port import build_trainer
    from psyche.parallelism_table import Parallelism

    distro = Distro(1.0, None, 0.999, 8, 64, True)
    model = LLM(
        max_seq_len=128,
        cold_start_warmup_steps=0,
        architecture=LLMArchitecture.HfLlama,
        checkpoint=Checkpoint(CheckpointKind.Dummy, HubRepo("")),
        data_type=LLMTrainingDataType.Pretraining,
        data_location=DataLocation(DataLocationKind.Dummy),
        lr_schedule=ConstantLR(1e-3, 1e-3, 0),
        optimizer=distro,
    )
    env = TrainerEnv(device="cpu", model_preset=preset)
    par = Parallelism(1, 1, 1)
    holder = build_trainer(Build(model), env, "bench", par, None)
    holder.round_to_bf16()
    content = holder.checkpoint_content(100)
    serving_id, joining_id = P2PIdentity(SERVER_SEED), P2PIdentity(JOINER_SEED)
    noop = lambda s, d: None  # noqa: E731
    server = P2PNode(serving_id, "127.0.0.1", 0, None, [], noop).start()
    sharing = ResultSharing(server, serving_id)
    sharing.serve_model(0, 100, content)
    server.set_allowed({joining_id.public})
    with (
        tempfile.TemporaryDirectory() as tmp,
        P2PNode(joining_id, "127.0.0.1", 0, None, [server.address], noop) as joiner,
    ):
        joiner.set_allowed({serving_id.public})
        while serving_id.public not in joiner.peers():
            time.sleep(0.01)
        start = time.perf_counter()
        manifest, blobs = fetch_model(joiner, [serving_id.public])
        fetched = time.perf_counter()
        path = ckpt.write_content(
            Path(tmp), manifest.epoch, manifest.step, content_from_wire(manifest, blobs)
        )
        written = time.perf_counter()
        trainer = build_trainer(Build(model, path), env, "bench", par, None)
        ready = time.perf_counter()
        equal = all(
            torch.equal(a, b)
            for a, b in zip(holder.model.parameters(), trainer.model.parameters(), strict=True)
        )
    sharing.close()
    if not equal:
        raise SystemExit("the joiner's parameters differ from the holder's")
    return {
        "bytes": manifest.total_bytes(),
        "fetch_s": fetched - start,
        "write_s": written - fetched,
        "resume_s": ready - written,
        "total_s": ready - start,
    }


# --- 2. per-client bytes per round --------------------------------------------------------------


def round_node(index: int, n: int, payload: int, boot: str) -> None:
    """One client of the round bench, in its own process: address, "ready", wait "go", exchange, report."""
    ids = [P2PIdentity(bytes([i + 1]) * 32) for i in range(n)]
    inbox: list[tuple[bytes, Broadcast]] = []
    arrived = threading.Condition()

    def on_message(sender: bytes, data: bytes) -> None:
        with arrived:
            inbox.append((sender, decode_broadcast(data)))
            arrived.notify_all()

    bootstrap = [parse_address(boot)] if boot else []
    node = P2PNode(ids[index], "127.0.0.1", 0, None, bootstrap, on_message, discovery_interval=0.5).start()
    print(json.dumps(list(node.address)), flush=True)
    node.set_allowed({i.public for i in ids})
    while len(node.peers()) < n - 1:
        time.sleep(0.02)
    print("ready", flush=True)
    sys.stdin.readline()
    before = node.stats()
    start = time.perf_counter()
    ticket = node.publish(os.urandom(payload), 1)
    b = Broadcast(
        1,
        Proof(0, index, index),
        ticket.blob,
        ids[index].sign(ticket.blob),
        0,
        TrainingResult((index, index), ticket),
    )
    while node.send_all(encode_broadcast(b)) < n - 1:
        time.sleep(0.05)
    done = 0
    while done < n - 1:
        with arrived:
            arrived.wait_for(lambda seen=done: len(inbox) > seen, timeout=30)  # type: ignore[misc]
            todo = inbox[done:]
        for sender, got in todo:
            assert isinstance(got.body, TrainingResult)
            node.fetch(got.body.ticket, sender, [], payload, 10.0)
        done += len(todo)
    wall = time.perf_counter() - start
    time.sleep(0.5)  # let the slower peers fetch our payload before counting what we sent
    after = node.stats()
    down = after.get("bytes_in", 0) - before.get("bytes_in", 0)
    up = after.get("bytes_out", 0) - before.get("bytes_out", 0)
    print(json.dumps({"down": down, "up": up, "wall_s": wall}), flush=True)
    sys.stdin.read()
    node.close()


def bench_round(n: int, payload: int) -> dict[str, float]:
    """n client processes on loopback: publish, broadcast, fetch the n-1 others; per-client bytes, wall."""

    def spawn(i: int, boot: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, __file__, "--round-node", f"{i},{n},{payload},{boot}"]
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    procs = [spawn(0, "")]
    try:
        assert procs[0].stdout is not None
        host, port = json.loads(procs[0].stdout.readline())
        procs += [spawn(i, f"{host}:{port}") for i in range(1, n)]
        for p in procs[1:]:
            assert p.stdout is not None
            p.stdout.readline()
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            assert p.stdout is not None
            reports.append(json.loads(p.stdout.readline()))
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
        for p in procs:
            p.wait(timeout=30)
            if p.stdout:
                p.stdout.close()
    return {
        "down": statistics.mean(r["down"] for r in reports),
        "up": statistics.mean(r["up"] for r in reports),
        "wall_s": max(r["wall_s"] for r in reports),
    }


def report_joiner() -> None:
    for preset in ("tiny", "125m"):
        j = bench_joiner_ready(preset)
        print(
            f"joiner ready, {preset} (bf16 {j['bytes'] / 1e6:.1f} MB, loopback): fetch {j['fetch_s']:.2f} s, "
            f"widen + write checkpoint {j['write_s']:.2f} s, build + resume trainer {j['resume_s']:.2f} s: "
            f"{j['total_s']:.2f} s before its first apply (bitwise equal to the holder)"
        )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", default="2,4,8,16")
    parser.add_argument("--skip-fetch", action="store_true")
    parser.add_argument("--round-node", help=argparse.SUPPRESS)
    parser.add_argument("--joiner-only", action="store_true", help="only the joiner part")
    args = parser.parse_args(argv)
    if args.round_node:
        index, n, payload, boot = args.round_node.split(",")
        round_node(int(index), int(n), int(payload), boot)
        return 0
    if args.serve:
        serve(args.serve)
        return 0

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; chunk {CHUNK}, top-k {TOPK}, 1-bit")
    if args.joiner_only:
        report_joiner()
        return 0
    sizes = {}
    for preset in ("tiny", "20m", "125m"):
        shapes = param_shapes(preset)
        n_params = sum(math.prod(s) for _, s in shapes)
        sizes[preset] = payload_bytes(shapes)
        ratio = 4 * n_params / sizes[preset]
        print(
            f"result of {preset:>4}: {sizes[preset]:>10,} bytes vs fp32 gradient {4 * n_params:>12,} bytes: "
            f"{ratio:,.0f}x smaller (goal >= {RATIO_GOAL:.0f}x)"
        )

    if not args.skip_fetch:
        r = bench_model_fetch(args.repeats)
        print(
            f"model fetch 125m bf16 ({r['params']:.0f} params, {r['bytes'] / 1e6:.1f} MB), "
            f"2 processes on loopback: best {r['best_mbs']:.0f} MB/s ({r['best_s']:.2f} s), "
            f"median {r['median_mbs']:.0f} MB/s ({r['median_s']:.2f} s) (goal >= {FETCH_GOAL_MBS:.0f} MB/s); "
            f"bytes -> tensors {r['convert_s']:.2f} s"
        )

    report_joiner()
    for preset in ("tiny", "125m"):
        for n in [int(x) for x in args.clients.split(",")]:
            r = bench_round(n, sizes[preset])
            print(
                f"round exchange {preset:>4}, {n:>2} clients: per client down {r['down'] / 1e6:8.3f} MB, "
                f"up {r['up'] / 1e6:8.3f} MB (= {n - 1} x {sizes[preset] / 1e6:.3f} MB payload + messages); "
                f"exchange wall {r['wall_s'] * 1000:7.1f} ms on loopback"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
