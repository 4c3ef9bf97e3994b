"""The witnesses' Bloom filter: FNV-1a keys, bit layout, no false negatives."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psyche.chain import bloom


def _reference_fnv(data: bytes, key: int) -> int:
    h = key
    for b in data:
        h = ((h ^ b) * 1099511628211) % 2**64
    return h


def test_fnv_matches_reference_and_standard_offset() -> None:
    # With the standard offset basis as key this is plain FNV-1a-64: "a" -> 0xaf63dc4c8601ec8c.
    assert bloom.fnv1a64(b"a", 0xCBF29CE484222325) == 0xAF63DC4C8601EC8C
    assert bloom.fnv1a64(b"psyche", 12345) == _reference_fnv(b"psyche", 12345)


def test_add_sets_the_expected_bits() -> None:
    keys = tuple(range(1, 9))
    item = hashlib.sha256(b"client").digest()
    bits = bloom.add(keys, bloom.EMPTY_BITS, item)
    expected = [0] * 16
    for k in keys:
        pos = _reference_fnv(item, k) % 1024
        expected[pos // 64] |= 1 << (pos % 64)
    assert bits == tuple(expected)
    assert bloom.contains(keys, bits, item)


def test_empty_bloom_contains_nothing() -> None:
    item = hashlib.sha256(b"anything").digest()
    assert not bloom.contains(bloom.ZERO_KEYS, bloom.EMPTY_BITS, item)


@settings(max_examples=30, deadline=None)
@given(items=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), seed=st.binary())
def test_no_false_negatives(items: list[bytes], seed: bytes) -> None:
    keys = bloom.new_keys(seed)
    bits = bloom.add_all(keys, bloom.EMPTY_BITS, items)
    assert all(bloom.contains(keys, bits, item) for item in items)


def test_false_positive_rate_is_low_at_design_load() -> None:
    keys = bloom.new_keys(b"fp")
    members = [hashlib.sha256(f"in{i}".encode()).digest() for i in range(32)]
    bits = bloom.add_all(keys, bloom.EMPTY_BITS, members)
    strangers = [hashlib.sha256(f"out{i}".encode()).digest() for i in range(2000)]
    false_positives = sum(bloom.contains(keys, bits, s) for s in strangers)
    assert false_positives < 40


def test_new_keys_are_deterministic_and_seed_dependent() -> None:
    assert bloom.new_keys(b"a") == bloom.new_keys(b"a")
    assert bloom.new_keys(b"a") != bloom.new_keys(b"b")
    assert len(bloom.new_keys(b"a")) == 8


def test_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError):
        bloom.add((1, 2), bloom.EMPTY_BITS, b"x")


def test_dataclass_helpers() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    made = bloom.make_bloom(b"seed", [a])
    assert bloom.bloom_contains(made, a) and not bloom.bloom_contains(made, b)
    grown = bloom.bloom_add(made, b)
    assert bloom.bloom_contains(grown, b) and grown.keys == made.keys
