"""DisTrO math with fixed vectors: chunk sizes, the DCT basis and its round trip, top-k and 1-bit, the
aggregation (mean per coefficient), error feedback, lookahead, and bitwise determinism across instances."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from psyche.chain.accounts.model import ConstantLR, LinearLR
from psyche.chain.accounts.optimizer import Distro
from psyche.client.config import OptimizerSettings, TrainerConfig
from psyche.client.data import DummySource
from psyche.client.distributed import ParallelContext
from psyche.client.distro import (
    DistroOptimizer,
    ParamTransform,
    SparseParam,
    _buckets,
    aggregate,
    chunk_size,
    compress,
    dct_basis,
    quantize_1bit,
)
from psyche.client.distro_payload import decode_payload, encode_payload, max_payload_bytes
from psyche.client.model import preset
from psyche.client.train import Trainer
from psyche.errors import ConfigError, RunManagerError

R2 = math.sqrt(0.5)


def _settings(**kw: object) -> Distro:
    base: dict[str, object] = {
        "clip_grad_norm": None,
        "weight_decay": None,
        "compression_decay": 1.0,
        "compression_topk": 1,
        "compression_chunk": 2,
        "quantize_1bit": True,
    }
    return Distro(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "chunk", "expected"),
    [
        (768, 64, 64),
        (100, 64, 50),
        (7, 64, 7),
        (97, 64, 1),
        (64, 64, 64),
        (2048, 64, 64),
        (32000, 64, 64),
        (192, 64, 64),
        (130, 64, 26),
        (1, 64, 1),
        (12, 5, 4),
    ],
)
def test_chunk_size_is_the_largest_divisor_up_to_the_chunk(n: int, chunk: int, expected: int) -> None:
    assert chunk_size(n, chunk) == expected


def test_dct_basis_fixed_values() -> None:
    assert torch.allclose(dct_basis(1), torch.tensor([[1.0]], dtype=torch.float64))
    expected2 = torch.tensor([[R2, R2], [R2, -R2]], dtype=torch.float64)
    assert torch.allclose(dct_basis(2), expected2, atol=1e-15)
    m4 = dct_basis(4)
    assert m4.dtype == torch.float64
    assert m4[0].tolist() == pytest.approx([0.5, 0.6532814824381883, 0.5, 0.27059805007309845])
    assert m4[3].tolist() == pytest.approx([0.5, -0.6532814824381883, 0.5, -0.27059805007309845])
    assert dct_basis(4) is m4  # cached


@pytest.mark.parametrize("c", [1, 2, 3, 7, 8, 26, 50, 64])
def test_dct_basis_is_orthonormal(c: int) -> None:
    m = dct_basis(c)
    eye = torch.eye(c, dtype=torch.float64)
    assert torch.allclose(m @ m.T, eye, atol=1e-12)
    assert torch.allclose(m.T @ m, eye, atol=1e-12)


@pytest.mark.parametrize("shape", [(12,), (97,), (100, 768), (130, 96), (7, 3)])
def test_transform_round_trip(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = ParamTransform(shape, 64)
    coeffs = t.encode(x)
    assert tuple(coeffs.shape) == (*t.grid, t.totalk)
    assert torch.allclose(t.decode(coeffs), x, atol=1e-12)
    assert coeffs.norm().item() == pytest.approx(x.norm().item())  # orthonormal: energy is kept


def test_transform_2d_matches_the_upstream_einsum_and_fixed_values() -> None:
    t = ParamTransform((4, 6), 3)
    assert (t.chunks, t.xshape, t.totalk) == ((2, 3), (2, 2, 2, 3), 6)
    x = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    m1, m2 = dct_basis(2), dct_basis(3)
    upstream = torch.einsum("yhxw,hb,wd->yxbd", x.view(2, 2, 2, 3), m1, m2).reshape(2, 2, 6)
    assert torch.allclose(t.encode(x), upstream, atol=1e-12)
    # The first chunk is [[0, 1, 2], [6, 7, 8]]: its DC coefficient is the sum / sqrt(2 * 3).
    assert t.encode(x)[0, 0, 0].item() == pytest.approx(24 / math.sqrt(6))
    # A constant chunk has only a DC coefficient.
    const = torch.full((4, 6), 2.0, dtype=torch.float64)
    assert torch.allclose(t.encode(const)[..., 1:], torch.zeros(2, 2, 5, dtype=torch.float64), atol=1e-12)


def test_transform_refuses_other_ranks() -> None:
    with pytest.raises(ConfigError, match=r"conv has 3 dimensions \(2, 3, 4\)"):
        ParamTransform((2, 3, 4), 64, name="conv")
    with pytest.raises(ConfigError, match="0 dimensions"):
        ParamTransform((), 64)


def test_topk_and_1bit_of_a_hand_made_tensor() -> None:
    coeffs = torch.tensor([[0.5, -3.0, 1.0, 2.0], [4.0, 0.1, -0.2, -5.0]])
    r = compress(coeffs, 2, (2, 4))
    order = r.idx.sort(dim=-1)
    assert order.values.tolist() == [[1, 3], [0, 3]]
    assert r.val.gather(-1, order.indices).tolist() == [[-3.0, 2.0], [4.0, -5.0]]
    assert (r.idx.dtype, r.val.dtype, r.totalk) == (torch.int64, torch.float32, 4)
    q = quantize_1bit(r)
    assert q.val.gather(-1, order.indices).tolist() == [[-1.0, 1.0], [1.0, -1.0]]
    assert torch.equal(q.idx, r.idx)
    # k is clamped to [1, totalk].
    assert compress(coeffs, 9, (2, 4)).idx.shape == (2, 4)
    assert compress(coeffs, 0, (2, 4)).idx.sort(dim=-1).values.tolist() == [[1], [3]]
    # Zero and -0.0 are sent as "not negative".
    zeros = SparseParam(torch.tensor([0, 1]), torch.tensor([0.0, -0.0]), (1, 2), 2)
    assert quantize_1bit(zeros).val.tolist() == [1.0, 1.0]


def _upstream_aggregate(results: list[SparseParam], t: ParamTransform) -> torch.Tensor:
    """Upstream's formula, written independently: concatenate, scatter_reduce mean without self, IDCT."""
    idx = torch.cat([r.idx for r in results], dim=-1)
    val = torch.cat([r.val.double() for r in results], dim=-1)
    zeros = torch.zeros(*t.grid, t.totalk, dtype=torch.float64)
    return t.decode(zeros.scatter_reduce(-1, idx, val, "mean", include_self=False))


def test_aggregation_is_the_mean_over_the_results_that_picked_each_coefficient() -> None:
    t = ParamTransform((4,), 4)
    a = SparseParam(torch.tensor([[0, 1]]), torch.tensor([[2.0, -1.0]]), t.xshape, 4)
    b = SparseParam(torch.tensor([[2, 1]]), torch.tensor([[4.0, 3.0]]), t.xshape, 4)
    got = aggregate([a, b], t)
    expected_coeffs = torch.tensor([2.0, 1.0, 4.0, 0.0], dtype=torch.float64)  # coefficient 1: (-1 + 3) / 2
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected_coeffs @ dct_basis(4).T, atol=1e-15)
    assert torch.allclose(got, _upstream_aggregate([a, b], t), atol=1e-15)


@pytest.mark.parametrize("one_bit", [True, False])
def test_aggregation_of_random_2d_results_matches_upstream(one_bit: bool) -> None:
    g = torch.Generator().manual_seed(3)
    t = ParamTransform((130, 96), 64)
    results = [compress(t.encode(torch.randn(130, 96, generator=g)), 8, t.xshape) for _ in range(3)]
    if one_bit:
        results = [quantize_1bit(r) for r in results]
    assert torch.allclose(aggregate(results, t), _upstream_aggregate(results, t), atol=1e-12)
    # The sparse inverse agrees with the dense one.
    for r in results:
        dense = torch.zeros(*t.grid, t.totalk).scatter(-1, r.idx, r.val)
        assert torch.allclose(t.decode_sparse(r.idx, r.val), t.decode(dense), atol=1e-6)


def _one_param(values: list[float]) -> tuple[torch.nn.Parameter, DistroOptimizer]:
    p = torch.nn.Parameter(torch.tensor(values))
    return p, DistroOptimizer([("w", p)], _settings())


def test_generate_and_apply_fixed_vector_with_error_feedback() -> None:
    p, opt = _one_param([1.0, 1.0])
    p.grad = torch.tensor([3.0, 1.0])
    (wire,) = opt.generate(1.0)  # d = [3, 1]; DCT = [4, 2] / sqrt(2); top-1 is the DC coefficient
    assert (wire.idx.tolist(), wire.val.tolist(), wire.xshape, wire.totalk) == ([[0]], [[1.0]], (1, 2), 2)
    own = opt.own[0]
    assert own is not None and own.val.flatten().tolist() == pytest.approx([4 / math.sqrt(2)])
    opt.apply([[wire]], 0.5)  # decoded [1, 1] / sqrt(2): sign [1, 1]
    assert p.detach().tolist() == [0.5, 0.5]
    p.grad = torch.zeros(2)
    (wire2,) = opt.generate(1.0)  # d = [3, 1] - IDCT([2.83, 0]) = [1, -1]: only the second coefficient
    assert torch.allclose(opt.errors[0], torch.tensor([1.0, -1.0]))
    assert (wire2.idx.tolist(), wire2.val.tolist()) == ([[1]], [[1.0]])


def test_decay_and_unquantised_wire() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    opt = DistroOptimizer(
        [("w", p)], _settings(compression_decay=0.5, quantize_1bit=False, compression_topk=2)
    )
    opt.errors[0].copy_(torch.tensor([4.0, 2.0]))
    p.grad = torch.tensor([1.0, 1.0])
    (wire,) = opt.generate(2.0)  # d = [4, 2] * 0.5 + 2 * [1, 1] = [4, 3]
    assert torch.allclose(opt.errors[0], torch.tensor([4.0, 3.0]))
    order = wire.idx.sort(dim=-1)
    assert wire.val.gather(-1, order.indices).flatten().tolist() == pytest.approx([7 * R2, R2])


def test_weight_decay_is_applied_with_the_results() -> None:
    p = torch.nn.Parameter(torch.tensor([2.0, 2.0]))
    opt = DistroOptimizer([("w", p)], _settings(weight_decay=0.1))
    up = SparseParam(torch.tensor([[0]]), torch.tensor([[-1.0]]), (1, 2), 2)  # decodes to sign [-1, -1]
    opt.apply([], 0.5)
    assert p.detach().tolist() == [2.0, 2.0]  # nothing to apply: no decay either
    opt.apply([[up]], 0.5)
    assert p.detach().tolist() == pytest.approx([2.0 * 0.95 + 0.5] * 2)


def test_lookahead_then_restore_is_exact() -> None:
    p = torch.nn.Parameter(torch.tensor([0.1, 0.2, 0.3]))
    opt = DistroOptimizer([("w", p)], _settings(compression_chunk=3))
    opt.errors[0].copy_(torch.tensor([1.0, -2.0, 0.0]))
    before = p.detach().clone()
    opt.lookahead(0.07)
    assert torch.equal(p.detach(), before - 0.07 * torch.tensor([1.0, -1.0, 0.0]))
    opt.restore()
    assert torch.equal(p.detach(), before)
    with pytest.raises(RuntimeError):
        opt.restore()


def test_reset_and_round_to_bf16() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0 + 2**-12, 3.0]))
    opt = DistroOptimizer([("w", p)], _settings())
    p.grad = torch.ones(2)
    opt.generate(1.0)
    opt.reset()
    assert torch.equal(opt.errors[0], torch.zeros(2)) and opt.own == [None]
    opt.round_to_bf16()
    assert p.detach().tolist() == [1.0, 3.0]
    assert p.dtype == torch.float32


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(96, 130), torch.nn.LayerNorm(130), torch.nn.Linear(130, 7))


def test_two_optimizers_given_the_same_inputs_stay_bitwise_identical() -> None:
    settings = Distro(1.0, 0.01, 0.999, 8, 64, True)
    models = [_model(0), _model(0)]
    opts = [DistroOptimizer(list(m.named_parameters()), settings) for m in models]
    g = torch.Generator().manual_seed(1)
    for step in range(4):
        x = torch.randn(16, 96, generator=g)
        y = torch.randint(0, 7, (16,), generator=g)
        wires = []
        for m, opt in zip(models, opts, strict=True):
            m.zero_grad()
            opt.lookahead(1e-3 if step else 0.0)
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            opt.restore()
            wires.append(opt.generate(1e-3))
        # Both apply the same results in the same order (their own plus a "peer" made from noise).
        peer = [
            quantize_1bit(compress(t.encode(torch.randn(t.shape, generator=g)), 8, t.xshape))
            for t in opts[0].transforms
        ]
        for opt in opts:
            opt.apply([wires[0], peer], 1e-3)
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            assert torch.equal(a, b)
        for da, db in zip(opts[0].errors, opts[1].errors, strict=True):
            assert torch.equal(da, db)


# ---------------------------------------------------------------- the Trainer with a Distro run

SEQ = 32
DEMO = Distro(1.0, None, 0.999, 8, 64, True)  # upstream-like: chunk 64, top-k 8, decay 0.999, 1-bit


def _trainer(
    distro: Distro | None = DEMO, lr: float = 3e-3, ctx: ParallelContext | None = None, **cfg: object
) -> Trainer:
    spec = preset("tiny", SEQ)
    settings: dict[str, object] = {
        "micro_batch_size": 8,
        "device": "cpu",
        "lr_schedule": ConstantLR(lr, lr, 0),
        "optimizer": OptimizerSettings(clip_grad_norm=1.0, distro=distro),
        **cfg,
    }
    config = TrainerConfig(**settings)  # type: ignore[arg-type]
    return Trainer(config, spec, 7, DummySource(SEQ, spec.vocab_size, 7), ctx=ctx)


def _batch(i: int) -> list[int]:
    return list(range(i * 8, i * 8 + 8))


def test_distro_trainer_loss_falls_applying_its_own_results() -> None:
    t = _trainer()
    assert t.distro is not None and t.optimizer is None
    losses = []
    for step in range(20):
        before = [p.detach().clone() for p in t.params]
        r = t.train_step(_batch(step), step=step)
        assert r.payload_results is not None and len(r.payload_results) == len(t.params)
        assert r.step == step + 1 and r.lr == pytest.approx(3e-3)
        assert all(
            torch.equal(p, b) for p, b in zip(t.params, before, strict=True)
        )  # training alone: no change
        assert {v for res in r.payload_results for v in torch.unique(res.val).tolist()} <= {-1.0, 1.0}
        t.apply_results([r.payload_results], step)
        losses.append(r.loss)
    assert losses[0] > 6.0
    assert sum(losses[-3:]) / 3 < losses[0] - 0.4


def test_two_distro_trainers_applying_the_same_results_stay_bitwise_equal(tmp_path: Path) -> None:
    a, b = _trainer(), _trainer()
    for step in range(4):
        # Each trains its own batch; both apply both results in the same (batch-id) order.
        ra = a.train_step(_batch(2 * step), step=step)
        rb = b.train_step(_batch(2 * step + 1), step=step)
        assert ra.payload_results is not None and rb.payload_results is not None
        for t in (a, b):
            t.apply_results([ra.payload_results, rb.payload_results], step)
        for p, q in zip(a.params, b.params, strict=True):
            assert torch.equal(p, q)
    a.round_to_bf16()
    b.round_to_bf16()
    assert all(torch.equal(p, p.to(torch.bfloat16).float()) for p in a.params)
    # Their checkpoints hold no error buffer and no per-client counter: the same bytes.
    da = a.save_checkpoint(tmp_path / "a", 1, 4)
    db = b.save_checkpoint(tmp_path / "b", 1, 4)
    assert da is not None and db is not None
    names = sorted(f.name for f in da.iterdir())
    assert names == sorted(f.name for f in db.iterdir()) == ["config.json", "meta.json", "model.safetensors"]
    for name in names:
        assert (da / name).read_bytes() == (db / name).read_bytes(), name
    # A resumed Distro trainer starts from zero error buffers.
    c = _trainer()
    c.train_step(_batch(0), step=0)
    assert c.load_latest_checkpoint(tmp_path / "a") == (1, 4)
    assert c.distro is not None and all(not d.any() for d in c.distro.errors)
    assert all(torch.equal(p, q) for p, q in zip(a.params, c.params, strict=True))


def test_distro_uses_the_coordinator_step_for_the_learning_rate() -> None:
    spec = LinearLR(1e-3, 0.0, 0.0, 2, 4)  # warm-up 0 -> 1e-3 over 2 steps, then down to 0 at step 4
    t = _trainer(lr_schedule=spec)
    assert t.train_step(_batch(0), step=3).lr == pytest.approx(5e-4)
    assert t.train_step(_batch(1), step=1).lr == pytest.approx(5e-4)
    assert t.step == 2


def test_adamw_trainer_has_no_distro() -> None:
    t = _trainer(distro=None)
    assert t.distro is None and t.optimizer is not None
    assert t.train_step(_batch(0)).payload_results is None
    with pytest.raises(ConfigError, match="not Distro"):
        t.apply_results([], 0)


def test_distro_refuses_tensor_parallelism() -> None:
    with pytest.raises(ConfigError, match="tensor parallelism"):
        _trainer(tensor_parallelism=2, ctx=ParallelContext(0, 1, 2, torch.device("cpu")))


def test_payload_shapes_of_the_trainer_fit_its_results() -> None:
    t = _trainer()
    r = t.train_step(_batch(0), step=0)
    assert r.payload_results is not None
    shapes = t.payload_shapes()
    raw = encode_payload(0, 0, (0, 7), r.payload_results, True)
    assert len(raw) == max_payload_bytes(shapes)
    assert [s.name for s in shapes] == [n for n, _ in t.named_params]


def test_three_clients_exchanging_payloads_with_the_upstream_pipeline_stay_bitwise_equal() -> None:
    """Round h trains; its payloads travel as bytes and are applied at the start of round h + 2, in
    batch-id order, by every client: all three hold the same parameters after every apply."""
    clients = [_trainer() for _ in range(3)]
    shapes = clients[0].payload_shapes()
    cap = max_payload_bytes(shapes)
    pending: dict[int, list[bytes]] = {}
    initial = [p.detach().clone() for p in clients[0].params]
    for h in range(6):
        if h - 2 in pending:
            payloads = sorted(
                (decode_payload(raw, shapes, cap) for raw in pending.pop(h - 2)), key=lambda p: p.batch
            )
            for c in clients:
                c.apply_results([p.results for p in payloads], h)
            for c in clients[1:]:
                assert all(torch.equal(a, b) for a, b in zip(clients[0].params, c.params, strict=True))
        raws = []
        for i, c in enumerate(reversed(clients)):  # arrival order is not batch order
            batch = (h * 24 + (2 - i) * 8, h * 24 + (2 - i) * 8 + 7)
            r = c.train_step(list(range(batch[0], batch[1] + 1)), step=h)
            assert r.payload_results is not None
            raws.append(encode_payload(h, h, batch, r.payload_results, True))
        pending[h] = raws
    assert sorted(pending) == [4, 5]
    assert not all(torch.equal(a, b) for a, b in zip(initial, clients[0].params, strict=True))


def test_a_joiner_loading_the_shared_bf16_parameters_is_bitwise_equal() -> None:
    holder, joiner = _trainer(), _trainer(lr=1e-3)
    r = holder.train_step(_batch(0), step=0)
    assert r.payload_results is not None
    holder.apply_results([r.payload_results], 0)
    holder.round_to_bf16()
    shared = holder.parameters_for_sharing()
    assert all(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in shared.values())
    joiner.train_step(_batch(1), step=0)  # some error buffer to be cleared
    joiner.load_parameters(shared)
    assert all(torch.equal(a, b) for a, b in zip(holder.params, joiner.params, strict=True))
    assert joiner.distro is not None and all(not d.any() for d in joiner.distro.errors)


def test_load_parameters_refuses_a_model_that_does_not_fit() -> None:
    t = _trainer()
    good = t.parameters_for_sharing()
    before = [p.detach().clone() for p in t.params]
    name = next(iter(good))
    with pytest.raises(RunManagerError, match=rf"missing \['{name}'\]"):
        t.load_parameters({k: v for k, v in good.items() if k != name})
    with pytest.raises(RunManagerError, match=rf"model parameter {name}: .*expected \(512, 64\) floats"):
        t.load_parameters({**good, name: torch.zeros(3)})
    with pytest.raises(RunManagerError, match="expected"):
        t.load_parameters({**good, name: torch.zeros(512, 64, dtype=torch.int64)})
    assert all(torch.equal(a, b) for a, b in zip(before, t.params, strict=True))


def test_buckets_group_parameters_of_one_chunk_shape_up_to_the_cap() -> None:
    shapes = [(64, 64), (64,), (64, 64), (64, 64), (32, 64), (128, 64)]
    buckets = _buckets([ParamTransform(s, 64) for s in shapes], cap=8192)
    assert [(b.chunks, b.members, b.offsets) for b in buckets] == [
        ((64, 64), (0, 2), (0, 1)),
        ((64,), (1,), (0,)),
        ((64, 64), (3,), (0,)),  # 3 x 4,096 values would pass the cap
        ((32, 64), (4,), (0,)),
        ((64, 64), (5,), (0,)),  # 8,192 values alone: a bucket of its own
    ]


def test_bucketed_and_per_parameter_processing_agree() -> None:
    models = [_model(0), _model(0)]
    opts = [
        DistroOptimizer(list(models[0].named_parameters()), DEMO),
        DistroOptimizer(list(models[1].named_parameters()), DEMO, bucket_elements=1),
    ]
    assert len(opts[0].buckets) < len(opts[1].buckets) == len(opts[1].params)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 96, generator=g), torch.randint(0, 7, (16,), generator=g)
    for _ in range(3):
        wires = []
        for m, opt in zip(models, opts, strict=True):
            m.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            wires.append(opt.generate(1e-3))
        for a, b in zip(*wires, strict=True):
            assert torch.equal(a.idx.sort(-1).values, b.idx.sort(-1).values)
        for opt in opts:
            opt.apply([wires[0], wires[1]], 1e-3)
        for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-7)
