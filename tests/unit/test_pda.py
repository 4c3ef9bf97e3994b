"""PDA derivations against the spec's vectors (computed independently with solders 0.29, default IDs)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    AUTHORIZER_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    NATIVE_MINT,
    PERMISSIONLESS_GRANTEE,
    TREASURER_PROGRAM_ID,
)
from psyche.errors import ConfigError

DEV_KEY = Pubkey.from_string("CXSChDHELm7tJYvnveBiXuJtN457GabkrK8YFHhpRS81")
TEST_RUN = Pubkey.from_string("tG3nRngwkJC3JAL9Aq9AMhFtTzr56hr9ZmaSRpD8dT8")


@pytest.mark.parametrize(
    ("run_id", "address", "bump"),
    [
        ("test", "9L4yCH7TsMn9JfoXYEupuQwtcNPTTtHcyNL6uqDfjwGB", 255),
        ("my-run", "8x8QXP7qscuSfRFvwdqSob9wFFdcZzzLaBZRkqqGDzsA", 254),
    ],
)
def test_coordinator_instance_vectors(run_id: str, address: str, bump: int) -> None:
    assert pda.find_coordinator_instance(run_id) == (Pubkey.from_string(address), bump)
    assert pda.coordinator_instance(run_id) == Pubkey.from_string(address)


def test_coordinator_instance_refuses_run_ids_over_32_bytes_with_the_reference_text() -> None:
    assert pda.coordinator_instance("x" * 32) != pda.coordinator_instance("x" * 31)
    with pytest.raises(ConfigError, match=r"^run_id must be 32 bytes or less, got 33 bytes$"):
        pda.coordinator_instance("x" * 33)
    # bytes, not characters: 11 three-byte characters are 33 bytes
    with pytest.raises(ConfigError, match="got 33 bytes"):
        pda.run_id_bytes("€" * 11)


def test_program_id_override_changes_the_address() -> None:
    other = Pubkey.from_bytes(bytes([9]) * 32)
    assert pda.coordinator_instance("test", program_id=other) != pda.coordinator_instance("test")
    assert pda.coordinator_instance("test", program_id=COORDINATOR_PROGRAM_ID) == pda.coordinator_instance(
        "test"
    )
    assert pda.treasurer_run(1, program_id=other) != pda.treasurer_run(1)


def test_authorization_vector_with_default_join_scope() -> None:
    expected = (Pubkey.from_string("4WY8nArQUvxZm5wi4zjctFQoyu87qETQ1nLr6cVieRdN"), 255)
    assert pda.find_authorization(DEV_KEY, PERMISSIONLESS_GRANTEE) == expected
    assert pda.find_authorization(DEV_KEY, PERMISSIONLESS_GRANTEE, b"CoordinatorJoinRun") == expected
    assert pda.authorization(DEV_KEY, PERMISSIONLESS_GRANTEE, program_id=AUTHORIZER_PROGRAM_ID) == expected[0]


def test_authorization_seeds_are_grantor_grantee_scope_in_that_order() -> None:
    address, bump = pda.find_authorization(DEV_KEY, TEST_RUN, b"s")
    seeds = [b"Authorization", bytes(DEV_KEY), bytes(TEST_RUN), b"s", bytes([bump])]
    assert Pubkey.create_program_address(seeds, AUTHORIZER_PROGRAM_ID) == address
    assert pda.authorization(TEST_RUN, DEV_KEY, b"s") != address
    with pytest.raises(ValueError, match="33 bytes"):
        pda.authorization(DEV_KEY, TEST_RUN, b"x" * 33)


def test_treasurer_index_vector() -> None:
    assert pda.treasurer_index("test") == 7313085519096743583 == 0x657D4C8881D0869F


def test_treasurer_run_vector() -> None:
    assert pda.find_treasurer_run(pda.treasurer_index("test")) == (TEST_RUN, 252)
    with pytest.raises(ValueError, match="u64"):
        pda.treasurer_run(-1)
    with pytest.raises(ValueError, match="u64"):
        pda.treasurer_run(2**64)


def test_participant_vector() -> None:
    expected = Pubkey.from_string("52wxSPBfp27mPT2Z85ZitztRR2NmozqdEGF4h6mL79AS")
    assert pda.find_participant(TEST_RUN, DEV_KEY) == (expected, 255)
    assert pda.participant(TEST_RUN, DEV_KEY, program_id=TREASURER_PROGRAM_ID) == expected


def test_run_collateral_ata_vector() -> None:
    expected = Pubkey.from_string("3KJQwxAaQ3xDCAbk5FAzKX5z52XbpvUwJZFDJsYVUNPg")
    assert pda.associated_token_account(TEST_RUN, NATIVE_MINT) == expected
    address, bump = pda.find_associated_token_account(TEST_RUN, NATIVE_MINT)
    assert address == expected and 0 <= bump <= 255
    other = Pubkey.from_bytes(bytes([7]) * 32)
    assert pda.associated_token_account(TEST_RUN, NATIVE_MINT, token_program_id=other) != expected
    assert (
        pda.associated_token_account(TEST_RUN, NATIVE_MINT, program_id=ASSOCIATED_TOKEN_PROGRAM_ID)
        == expected
    )


@given(st.text(max_size=40))
def test_treasurer_index_is_the_first_8_sha256_bytes_little_endian(run_id: str) -> None:
    digest = hashlib.sha256(run_id.encode()).digest()
    assert pda.treasurer_index(run_id) == int.from_bytes(digest[:8], "little")


@given(st.text(max_size=32).filter(lambda s: len(s.encode()) <= 32))
def test_every_valid_run_id_derives_an_off_curve_address(run_id: str) -> None:
    address, bump = pda.find_coordinator_instance(run_id)
    assert not address.is_on_curve()
    seeds = [b"coordinator", run_id.encode(), bytes([bump])]
    assert Pubkey.create_program_address(seeds, COORDINATOR_PROGRAM_ID) == address
