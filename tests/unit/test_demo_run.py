"""The demo run's TOML (scripts/demo): it parses with the run-config loader into exactly the constants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from psyche.chain.accounts.model import LLM, ConstantLR, CoordinatorConfig
from psyche.chain.accounts.optimizer import AdamW, Distro
from psyche.chain.runconfig import load_run_config
from psyche.localnet.demo_run import DEMO_ADAMW, DEMO_DISTRO, demo_run_toml


def parsed(tmp_path: Path, text: str) -> tuple[CoordinatorConfig, LLM]:
    path = tmp_path / "demo-run.toml"
    path.write_text(text)
    return load_run_config(path)


def test_the_default_is_distro_with_upstreams_settings(tmp_path: Path) -> None:
    config, model = parsed(tmp_path, demo_run_toml(clients=2))
    assert Distro(1.0, None, 0.999, 8, 64, True) == DEMO_DISTRO
    # What the chain stores (f32 fields): the same bytes.
    assert model.optimizer.to_borsh() == DEMO_DISTRO.to_borsh()
    assert isinstance(model.lr_schedule, ConstantLR)
    assert (config.init_min_clients, config.min_clients) == (2, 1)


def test_adamw_goes_back_to_the_previous_demo(tmp_path: Path) -> None:
    _, model = parsed(tmp_path, demo_run_toml("adamw", 1))
    assert AdamW((0.9, 0.95), 0.0, 1e-8, 1.0) == DEMO_ADAMW
    assert model.optimizer.to_borsh() == DEMO_ADAMW.to_borsh()


def test_unknown_choices_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; choose one of distro, adamw"):
        demo_run_toml("sgd")
    done = subprocess.run(
        [sys.executable, "-m", "psyche.localnet.demo_run", "--clients", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--clients must be at least 1" in done.stderr
