"""Committee selection: swap-or-not shuffle, seeds, witness election, quorum table."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psyche.chain import committee


def _reference_shuffle(idx: int, n: int, seed: bytes) -> int:
    """Straight transcription of the spec 5.3 pseudo-code, kept independent of the module."""
    for r in range(90):
        h = hashlib.sha256(seed + bytes([r])).digest()
        pivot = int.from_bytes(h[0:8], "little") % n
        flip = (pivot + n - idx) % n
        p = max(idx, flip)
        src = hashlib.sha256(seed + bytes([r]) + (p // 256).to_bytes(4, "little")).digest()
        if (src[(p % 256) // 8] >> (p % 8)) & 1:
            idx = flip
    return idx


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=70), seed=st.binary(min_size=32, max_size=32))
def test_shuffle_is_a_permutation(n: int, seed: bytes) -> None:
    image = [committee.swap_or_not_shuffle(i, n, seed) for i in range(n)]
    assert sorted(image) == list(range(n))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 32, 257, 600])
@pytest.mark.parametrize("seed_byte", [0, 1, 0xAB])
def test_shuffle_matches_reference(n: int, seed_byte: int) -> None:
    seed = bytes([seed_byte]) * 32
    for i in sorted({0, n // 2, n - 1}):
        assert committee.swap_or_not_shuffle(i, n, seed) == _reference_shuffle(i, n, seed)


def test_shuffle_is_not_identity_for_a_large_set() -> None:
    seed = hashlib.sha256(b"x").digest()
    assert [committee.swap_or_not_shuffle(i, 50, seed) for i in range(50)] != list(range(50))


def test_shuffle_rejects_index_out_of_range() -> None:
    with pytest.raises(ValueError):
        committee.swap_or_not_shuffle(5, 5, bytes(32))


def test_seeds_follow_the_spec() -> None:
    base = hashlib.sha256((123456789).to_bytes(8, "little")).digest()
    assert committee.round_seed(123456789) == base
    assert committee.purpose_seed(base, b"witness") == hashlib.sha256(base + b"witness").digest()
    expected = _reference_shuffle(3, 10, hashlib.sha256(base + b"witness").digest())
    assert committee.witness_position(3, 10, 123456789) == expected
    expected_c = _reference_shuffle(3, 10, hashlib.sha256(base + b"committee").digest())
    assert committee.committee_position(3, 10, 123456789) == expected_c


def test_every_client_is_a_witness_with_auto_nodes_and_at_most_32_clients() -> None:
    assert all(committee.is_witness(i, 20, 42, 0) for i in range(20))


def test_exactly_witness_nodes_clients_are_witnesses() -> None:
    elected = [i for i in range(40) if committee.is_witness(i, 40, 7, 5)]
    assert len(elected) == 5
    auto = [i for i in range(40) if committee.is_witness(i, 40, 7, 0)]
    assert len(auto) == 32


@pytest.mark.parametrize(
    ("n", "quorum"),
    [(1, 1), (2, 2), (3, 2), (4, 2), (5, 3), (6, 4), (7, 4), (9, 6), (10, 6), (32, 21)],
)
def test_quorum_table(n: int, quorum: int) -> None:
    assert committee.witness_quorum(n) == quorum
    # A configured witness_nodes overrides the number of witnesses actually seen.
    assert committee.witness_quorum(1, n) == quorum


def test_quorum_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        committee.witness_quorum(0)


def test_effective_witness_nodes() -> None:
    assert committee.effective_witness_nodes(3, 100) == 3
    assert committee.effective_witness_nodes(0, 5) == 5
    assert committee.effective_witness_nodes(0, 100) == 32


def test_tick_random_seed_vector() -> None:
    digest = hashlib.sha256((1_700_000_000).to_bytes(8, "little", signed=True) + (99).to_bytes(8, "little"))
    assert committee.tick_random_seed(1_700_000_000, 99) == int.from_bytes(digest.digest()[:8], "little")
    negative = hashlib.sha256((-1).to_bytes(8, "little", signed=True) + bytes(8)).digest()
    assert committee.tick_random_seed(-1, 0) == int.from_bytes(negative[:8], "little")


def test_committee_from_position() -> None:
    # 10 tie-breakers, then 30% of the remaining 90 = 27 verifiers, then trainers.
    assert committee.committee_from_position(9, 100, 10, 30) == committee.TIE_BREAKER
    assert committee.committee_from_position(36, 100, 10, 30) == committee.VERIFIER
    assert committee.committee_from_position(37, 100, 10, 30) == committee.TRAINER
    assert committee.committee_from_position(0, 5) == committee.TRAINER


def test_fixed_vectors() -> None:
    # Computed once with _reference_shuffle above; pinned so both cannot drift together.
    seed = hashlib.sha256(b"psyche").digest()
    assert [committee.swap_or_not_shuffle(i, 10, seed) for i in range(10)] == [0, 6, 4, 5, 2, 9, 7, 8, 3, 1]
    assert committee.swap_or_not_shuffle(123, 1000, seed) == 313
    assert committee.swap_or_not_shuffle(999, 1000, seed) == 811
    assert [committee.witness_position(i, 5, 42) for i in range(5)] == [1, 2, 4, 0, 3]
    assert committee.tick_random_seed(1_700_000_000, 99) == 8268801069205483098
