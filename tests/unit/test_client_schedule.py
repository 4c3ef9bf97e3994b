"""Learning-rate schedules: warmup, then constant, linear, cosine or warmup-stable-decay."""

from __future__ import annotations

import pytest

from psyche.chain.accounts.model import ConstantLR, CosineLR, LinearLR, WarmupStableDecayLR
from psyche.client.schedule import lr_at


def test_constant_with_warmup() -> None:
    s = ConstantLR(base_lr=1.0, warmup_init_lr=0.0, warmup_steps=4)
    assert [lr_at(s, i) for i in (0, 1, 2, 4, 100)] == [0.0, 0.25, 0.5, 1.0, 1.0]


def test_linear_decays_to_final_at_total_steps() -> None:
    s = LinearLR(base_lr=1.0, warmup_init_lr=0.0, final_lr=0.2, warmup_steps=2, total_steps=10)
    assert lr_at(s, 1) == pytest.approx(0.5)
    assert lr_at(s, 2) == pytest.approx(1.0)
    assert lr_at(s, 6) == pytest.approx(0.6)
    assert lr_at(s, 10) == pytest.approx(0.2) and lr_at(s, 50) == pytest.approx(0.2)


def test_cosine_halfway_is_the_midpoint() -> None:
    s = CosineLR(base_lr=1.0, warmup_init_lr=0.1, final_lr=0.0, warmup_steps=0, total_steps=100)
    assert lr_at(s, 0) == pytest.approx(1.0)
    assert lr_at(s, 50) == pytest.approx(0.5)
    assert lr_at(s, 100) == pytest.approx(0.0) and lr_at(s, 200) == pytest.approx(0.0)


def test_warmup_stable_decay_phases() -> None:
    s = WarmupStableDecayLR(
        base_lr=1.0,
        warmup_init_lr=0.0,
        cosine_decay_final_lr=0.5,
        linear_decay_final_lr=0.1,
        warmup_steps=2,
        stable_steps=3,
        cosine_decay_steps=4,
        linear_decay_steps=4,
    )
    assert lr_at(s, 1) == pytest.approx(0.5)
    assert [lr_at(s, i) for i in (2, 4)] == [1.0, 1.0]
    assert lr_at(s, 7) == pytest.approx(0.75)  # halfway through the cosine
    assert lr_at(s, 9) == pytest.approx(0.5)
    assert lr_at(s, 11) == pytest.approx(0.3)  # halfway through the linear
    assert lr_at(s, 13) == pytest.approx(0.1) and lr_at(s, 99) == pytest.approx(0.1)
