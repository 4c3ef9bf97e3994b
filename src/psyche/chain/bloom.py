"""The witnesses' 1024-bit Bloom filter with 8 FNV-1a-64 keys (spec 5.3), on (keys, bits) tuples.

A bloom is ``keys`` (8 u64 hash keys) and ``bits`` (16 u64 words; bit i is word i // 64, bit i % 64,
LSB first). Item positions are ``fnv1a64(item, key) % 1024`` for each key. Functions here are pure
and return new tuples; ``make_bloom``, ``bloom_add`` and ``bloom_contains`` do the same on the
accounts' ``Bloom`` dataclass.

Keys are chosen by whoever builds the bloom (the witness). Upstream picks them at random; we derive
them from a seed with ``new_keys(seed)`` so tests and replays are reproducible (any keys verify the
same way on chain, since the keys travel inside the bloom).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from psyche.chain.accounts.state import Bloom

NUM_KEYS = 8
NUM_WORDS = 16
NUM_BITS = NUM_WORDS * 64
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1
_KEY_DOMAIN = b"psyche-bloom-keys"

Keys = tuple[int, ...]
Bits = tuple[int, ...]
EMPTY_BITS: Bits = (0,) * NUM_WORDS
ZERO_KEYS: Keys = (0,) * NUM_KEYS


def fnv1a64(data: bytes, key: int) -> int:
    """FNV-1a 64-bit over ``data`` starting from state ``key`` (Rust `FnvHasher::with_key`)."""
    h = key & _U64
    for b in data:
        h ^= b
        h = (h * _FNV_PRIME) & _U64
    return h


def positions(keys: Sequence[int], item: bytes) -> list[int]:
    """Bit positions that ``item`` sets / must find set, one per key."""
    return [fnv1a64(item, k) % NUM_BITS for k in keys]


def _check(keys: Sequence[int], bits: Sequence[int]) -> None:
    if len(keys) != NUM_KEYS or len(bits) != NUM_WORDS:
        raise ValueError(f"bloom needs {NUM_KEYS} keys and {NUM_WORDS} words, got {len(keys)}/{len(bits)}")


def add(keys: Sequence[int], bits: Sequence[int], item: bytes) -> Bits:
    """Bits of the bloom after adding ``item``."""
    _check(keys, bits)
    words = list(bits)
    for pos in positions(keys, item):
        words[pos // 64] |= 1 << (pos % 64)
    return tuple(words)


def add_all(keys: Sequence[int], bits: Sequence[int], items: Sequence[bytes]) -> Bits:
    """Bits of the bloom after adding every item."""
    out: Bits = tuple(bits)
    for item in items:
        out = add(keys, out, item)
    return out


def contains(keys: Sequence[int], bits: Sequence[int], item: bytes) -> bool:
    """Whether ``item`` may be in the bloom (no false negatives; ~1% false positives at design load)."""
    _check(keys, bits)
    return all((bits[pos // 64] >> (pos % 64)) & 1 for pos in positions(keys, item))


def new_keys(seed: bytes) -> Keys:
    """Deterministic keys for a new bloom: key i = LE u64 of sha256("psyche-bloom-keys" ‖ seed ‖ u8 i)[:8]."""
    return tuple(
        int.from_bytes(hashlib.sha256(_KEY_DOMAIN + seed + bytes((i,))).digest()[:8], "little")
        for i in range(NUM_KEYS)
    )


def make_bloom(seed: bytes, items: Sequence[bytes] = ()) -> Bloom:
    """A new ``Bloom`` with keys from ``seed`` holding ``items`` (e.g. sha256 of participants' signers)."""
    keys = new_keys(seed)
    return Bloom(keys, add_all(keys, EMPTY_BITS, items))


def bloom_add(b: Bloom, item: bytes) -> Bloom:
    """``b`` with ``item`` added."""
    return Bloom(tuple(b.keys), add(b.keys, b.bits, item))


def bloom_contains(b: Bloom, item: bytes) -> bool:
    """Whether ``b`` may contain ``item``."""
    return contains(b.keys, b.bits, item)
