"""psyche.base58 against fixed vectors and against solders' own base58 (an independent implementation)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.base58 import Base58Error, b58decode, b58encode, is_pubkey

VECTORS = [
    (b"", ""),
    (b"\0", "1"),
    (b"\0\0\x01", "112"),
    (b"a", "2g"),
    (b"hello world", "StV1DL6CwTryKyV"),
    (bytes(32), "11111111111111111111111111111111"),
    (
        bytes(Pubkey.from_string("PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw")),
        "PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw",
    ),
]


@pytest.mark.parametrize(("raw", "text"), VECTORS)
def test_fixed_vectors_both_ways(raw: bytes, text: str) -> None:
    assert b58encode(raw) == text
    assert b58decode(text) == raw


def test_matches_solders_for_keys_and_keypairs() -> None:
    for _ in range(20):
        keypair = Keypair()
        assert b58encode(bytes(keypair.pubkey())) == str(keypair.pubkey())
        assert b58decode(str(keypair)) == bytes(keypair)


@given(st.binary(max_size=80))
def test_round_trip_keeps_leading_zeros(raw: bytes) -> None:
    assert b58decode(b58encode(raw)) == raw


def test_a_bad_character_is_named_by_position_never_by_value() -> None:
    with pytest.raises(Base58Error, match=r"^character 3 is not in the base58 alphabet$") as caught:
        b58decode("110")
    assert caught.value.position == 3
    assert isinstance(caught.value, ValueError)


def test_is_pubkey_wants_exactly_32_bytes() -> None:
    assert is_pubkey("PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw")
    assert is_pubkey("11111111111111111111111111111111")
    assert not is_pubkey("1111")
    assert not is_pubkey("0" * 44)
    assert not is_pubkey(str(Keypair()))  # 64 bytes
