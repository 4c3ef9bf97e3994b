"""Collaboration helps: three DisTrO clients sharing their results reach a lower held-out loss than one client
alone with the same per-client batch and the same number of rounds, and stay bitwise equal after every apply
(tests/support/collab.py has the schedule; bench/bench_collab.py reports the curves)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("torch")

import torch

from tests.support.collab import collaborate, loopback_rounds

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny model is fastest on one torch thread (two threads on 2 shared cores take ~3x as long)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_three_clients_sharing_results_beat_one_client_on_held_out_loss() -> None:
    # lr 1e-2 learns fastest of 1e-3 / 3e-3 / 1e-2 (docs/benchmarks.md); 40 rounds of 8 samples per client.
    curves = collaborate(batch=8, rounds=40, lr=1e-2, eval_every=20)
    assert curves.applied == [0, 20, 40]
    assert curves.solo[0] == curves.shared[0]  # the same initial model
    assert curves.equal_checks == 40  # collaborate raises when the clients differ after any apply
    assert curves.solo[-1] < curves.solo[0] - 0.5  # one client alone learns too
    assert curves.shared[-1] < curves.solo[-1] - 0.2, (curves.solo, curves.shared)


def test_three_loopback_clients_exchange_real_payloads_and_stay_equal() -> None:
    # Real P2PNodes on 127.0.0.1: loopback_rounds raises when a broadcast or payload does not arrive, a
    # signature or commitment does not check out, or the clients differ after an apply.
    cost = loopback_rounds("tiny", 32, 16, 1)
    assert cost.shares == [5, 5, 6]
    assert cost.payload_bytes == 1126
    assert set(cost.phases) == {"train", "compress", "encode", "publish", "fetch", "verify", "apply"}
    assert all(v > 0 for v in cost.phases.values())
