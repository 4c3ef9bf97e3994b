"""Instruction builders: discriminators, Borsh args and account metas (order and flags) against the spec."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.instruction import Instruction
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, TransferParams
from solders.system_program import create_account as solders_create_account
from solders.system_program import transfer as solders_transfer

from psyche.chain import instructions as ix
from psyche.chain import pda
from psyche.chain.accounts.model import (
    LLM,
    Checkpoint,
    ConstantLR,
    CoordinatorConfig,
    CoordinatorProgress,
    DataLocation,
    DummyOptimizer,
    LLMArchitecture,
    LLMTrainingDataType,
    RunMetadata,
)
from psyche.chain.accounts.state import Bloom, NodeIdentity, WitnessProof
from psyche.chain.instructions import authorizer, coordinator, treasurer
from psyche.chain.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    AUTHORIZER_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    JOIN_RUN_AUTHORIZATION_SCOPE,
    NATIVE_MINT,
    PERMISSIONLESS_GRANTEE,
    SYSTEM_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    TREASURER_PROGRAM_ID,
)
from psyche.errors import ConfigError

DEV_KEY = Pubkey.from_string("CXSChDHELm7tJYvnveBiXuJtN457GabkrK8YFHhpRS81")
A, B, C, D, E, F = (Pubkey.from_bytes(bytes([i]) * 32) for i in range(1, 7))
OTHER_PROGRAM = Pubkey.from_bytes(bytes([99]) * 32)
S, W, SW, R = (True, False), (False, True), (True, True), (False, False)  # (is_signer, is_writable)


def metas(instruction: Instruction) -> list[tuple[Pubkey, tuple[bool, bool]]]:
    return [(m.pubkey, (m.is_signer, m.is_writable)) for m in instruction.accounts]


def data(instruction: Instruction) -> bytes:
    return bytes(instruction.data)


SPEC_DISCRIMINATORS = {
    "authorization_create": "149dc4b3e7df6d66",
    "authorization_grantor_update": "1d7441a161bd3af9",
    "authorization_grantee_update": "ba6f7fc75990c143",
    "authorization_close": "81d0f820c8855717",
    "init_coordinator": "14399449e8857a19",
    "free_coordinator": "59d8d7e5dff24a20",
    "update": "dbc858b09e3ffd7f",
    "update_client_version": "c1152e3c33020dfb",
    "set_future_epoch_rates": "ef15a057c7c8b681",
    "join_run": "48a07d666a86f64b",
    "set_paused": "5b3c7dc0b0e1a6da",
    "tick": "5c4f2c0865503f0f",
    "witness": "d5f495198edf1527",
    "warmup_witness": "d3e87ae83f16375e",
    "health_check": "735a63a88a129d83",
    "checkpoint": "d5c813ccf08fb8fc",
    "run_create": "c638a3f70e3aa7fd",
    "run_update": "33562e740d42149d",
    "participant_create": "32b18e2875b046b5",
    "participant_claim": "a096e8563b6bad26",
}


def test_every_discriminator_matches_the_spec_table() -> None:
    computed = {**authorizer.DISCRIMINATORS, **coordinator.DISCRIMINATORS, **treasurer.DISCRIMINATORS}
    assert {name: d.hex() for name, d in computed.items()} == SPEC_DISCRIMINATORS


# --- authorizer ---------------------------------------------------------------------------------------------


def test_authorization_create_spec_example_is_62_bytes() -> None:
    instruction = ix.authorization_create(A, DEV_KEY, PERMISSIONLESS_GRANTEE)
    expected = bytes.fromhex(
        "149dc4b3e7df6d66" + "00" * 32 + "12000000" + "436f6f7264696e61746f724a6f696e52756e"
    )
    assert data(instruction) == expected and len(expected) == 62
    assert instruction.program_id == AUTHORIZER_PROGRAM_ID
    address = Pubkey.from_string("4WY8nArQUvxZm5wi4zjctFQoyu87qETQ1nLr6cVieRdN")
    assert metas(instruction) == [(A, SW), (DEV_KEY, S), (address, W), (SYSTEM_PROGRAM_ID, R)]


def test_authorization_create_with_another_program_derives_the_pda_there() -> None:
    instruction = ix.authorization_create(A, B, C, b"x", program_id=OTHER_PROGRAM)
    assert instruction.program_id == OTHER_PROGRAM
    assert instruction.accounts[2].pubkey == pda.authorization(B, C, b"x", program_id=OTHER_PROGRAM)
    assert data(instruction)[40:] == b"\x01\x00\x00\x00x"


@pytest.mark.parametrize(("active", "tail"), [(True, "01"), (False, "00")])
def test_authorization_grantor_update(active: bool, tail: str) -> None:
    instruction = ix.authorization_grantor_update(A, B, active)
    assert data(instruction).hex() == "1d7441a161bd3af9" + tail
    assert metas(instruction) == [(A, S), (B, W)]


def test_authorization_grantee_update() -> None:
    instruction = ix.authorization_grantee_update(A, B, C, delegates_clear=True, delegates_added=[D, E])
    assert data(instruction) == bytes.fromhex("ba6f7fc75990c143") + b"\x01" + b"\x02\x00\x00\x00" + bytes(
        D
    ) + bytes(E)
    assert metas(instruction) == [(A, SW), (B, S), (C, W), (SYSTEM_PROGRAM_ID, R)]
    empty = ix.authorization_grantee_update(A, B, C)
    assert data(empty).hex() == "ba6f7fc75990c143" + "00" + "00000000"


def test_authorization_close_has_no_args() -> None:
    instruction = ix.authorization_close(A, B, C)
    assert data(instruction).hex() == "81d0f820c8855717"
    assert metas(instruction) == [(A, S), (B, W), (C, W), (SYSTEM_PROGRAM_ID, R)]


# --- coordinator --------------------------------------------------------------------------------------------

INSTANCE = pda.coordinator_instance("test")


def test_init_coordinator_spec_example_is_88_bytes() -> None:
    instruction = ix.init_coordinator(
        A, B, main_authority=DEV_KEY, join_authority=DEV_KEY, run_id="test", client_version="test"
    )
    expected = (
        bytes.fromhex("14399449e8857a19")
        + bytes(DEV_KEY) * 2
        + b"\x04\x00\x00\x00test"
        + b"\x04\x00\x00\x00test"
    )
    assert data(instruction) == expected and len(expected) == 88
    assert instruction.program_id == COORDINATOR_PROGRAM_ID
    assert metas(instruction) == [(A, SW), (INSTANCE, W), (B, W), (SYSTEM_PROGRAM_ID, R)]


def test_init_coordinator_refuses_long_run_ids_and_honours_the_program_id() -> None:
    with pytest.raises(ConfigError, match="run_id must be 32 bytes or less, got 33 bytes"):
        ix.init_coordinator(A, B, main_authority=A, join_authority=A, run_id="r" * 33, client_version="v")
    other = ix.init_coordinator(
        A, B, main_authority=A, join_authority=C, run_id="x", client_version="", program_id=OTHER_PROGRAM
    )
    assert other.program_id == OTHER_PROGRAM
    assert other.accounts[1].pubkey == pda.coordinator_instance("x", program_id=OTHER_PROGRAM)
    assert data(other)[8:72] == bytes(A) + bytes(C)


def test_free_coordinator() -> None:
    instruction = ix.free_coordinator(A, B, C, D)
    assert data(instruction).hex() == "59d8d7e5dff24a20"
    assert metas(instruction) == [(A, S), (B, W), (C, W), (D, W)]


OWNER_METAS = [(A, S), (INSTANCE, R), (C, W)]


def test_set_paused_spec_example_and_owner_accounts() -> None:
    instruction = ix.set_paused(A, INSTANCE, C, False)
    assert data(instruction).hex() == "5b3c7dc0b0e1a6da00"
    assert data(ix.set_paused(A, INSTANCE, C, True)).hex() == "5b3c7dc0b0e1a6da01"
    assert metas(instruction) == OWNER_METAS


def test_tick_spec_example() -> None:
    instruction = ix.tick(A, INSTANCE, C)
    assert data(instruction).hex() == "5c4f2c0865503f0f"
    assert metas(instruction) == OWNER_METAS
    assert ix.tick(A, INSTANCE, C, program_id=OTHER_PROGRAM).program_id == OTHER_PROGRAM


def test_set_future_epoch_rates_spec_example() -> None:
    instruction = ix.set_future_epoch_rates(A, INSTANCE, C, earning_rate_total_shared=1_000_000)
    assert data(instruction).hex() == "ef15a057c7c8b681" + "01" + "40420f0000000000" + "00"
    both = ix.set_future_epoch_rates(
        A, INSTANCE, C, earning_rate_total_shared=0, slashing_rate_per_client=2**64 - 1
    )
    assert data(both).hex() == "ef15a057c7c8b681" + "01" + "00" * 8 + "01" + "ff" * 8
    assert metas(instruction) == OWNER_METAS


def test_update_client_version() -> None:
    instruction = ix.update_client_version(A, INSTANCE, C, "sha256:ab")
    assert data(instruction) == bytes.fromhex("c1152e3c33020dfb") + b"\x09\x00\x00\x00sha256:ab"
    assert metas(instruction) == OWNER_METAS


def test_join_run_carries_the_node_identity_and_the_authorization() -> None:
    p2p = bytes(range(32))
    instruction = ix.join_run(A, B, INSTANCE, C, p2p)
    assert data(instruction) == bytes.fromhex("48a07d666a86f64b") + bytes(A) + p2p
    assert metas(instruction) == [(A, S), (B, R), (INSTANCE, R), (C, W)]
    with pytest.raises(ValueError, match="p2p_identity must be 32 bytes, got 31"):
        ix.join_run(A, B, INSTANCE, C, p2p[:31])


class _Raw:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def to_borsh(self) -> bytes:
        return self.payload


def test_witness_is_830_bytes_in_argument_order() -> None:
    proof = struct.pack("<QQB", 3, 4, 1)
    bloom_p, bloom_b, merkle = bytes([1]) * 192, bytes([2]) * 192, bytes([3]) * 32
    metadata = ix.WitnessMetadata(step=7, loss=2.5, evals=[("hellaswag", 0.5)], prompt_results=[-1, 2])
    instruction = ix.witness(
        A,
        INSTANCE,
        C,
        proof=_Raw(proof),
        participant_bloom=bloom_p,
        broadcast_bloom=_Raw(bloom_b),
        broadcast_merkle=merkle,
        metadata=metadata,
    )
    raw = data(instruction)
    assert len(raw) == 830
    assert raw[:8].hex() == "d5f495198edf1527"
    assert (
        raw[8:25] == proof and raw[25:217] == bloom_p and raw[217:409] == bloom_b and raw[409:441] == merkle
    )
    meta = raw[441:]
    assert struct.unpack_from("<Ifff", meta) == (7, 0.0, 0.0, 2.5)
    assert meta[16:48] == b"hellaswag".ljust(32, b"\x00") and struct.unpack_from("<f", meta, 48)[0] == 0.5
    assert meta[52:304] == bytes(252)  # seven unused eval slots
    assert struct.unpack_from("<Q", meta, 304)[0] == 1
    assert struct.unpack_from("<ii", meta, 312) == (-1, 2) and meta[320:376] == bytes(56)
    assert struct.unpack_from("<QBf", meta, 376) == (2, 0, 0.0)
    assert metas(instruction) == OWNER_METAS
    # metadata defaults to all zeros
    plain = ix.witness(
        A,
        INSTANCE,
        C,
        proof=proof,
        participant_bloom=bloom_p,
        broadcast_bloom=bloom_b,
        broadcast_merkle=merkle,
    )
    assert data(plain)[441:] == bytes(304) + bytes(8) + bytes(64) + bytes(8) + bytes(5)


def test_witness_takes_the_coordinator_state_types() -> None:
    bloom = Bloom(keys=tuple(range(8)), bits=tuple(range(16)))
    typed = ix.warmup_witness(
        A,
        INSTANCE,
        C,
        proof=WitnessProof(position=3, index=4, witness=True),
        participant_bloom=bloom,
        broadcast_bloom=Bloom(),
        broadcast_merkle=bytes(32),
    )
    bloom_bytes = struct.pack("<24Q", *range(8), *range(16))
    assert data(typed)[8:] == struct.pack("<QQB", 3, 4, 1) + bloom_bytes + bytes(192) + bytes(32)


def test_witness_argument_sizes_are_checked() -> None:
    good: dict[str, Any] = {
        "proof": bytes(17),
        "participant_bloom": bytes(192),
        "broadcast_bloom": bytes(192),
    }
    with pytest.raises(ValueError, match="witness proof must encode to 17 bytes, got 16"):
        ix.warmup_witness(A, B, C, **{**good, "proof": _Raw(bytes(16))}, broadcast_merkle=bytes(32))
    with pytest.raises(ValueError, match="broadcast bloom must be 192 bytes, got 191"):
        ix.warmup_witness(A, B, C, **{**good, "broadcast_bloom": bytes(191)}, broadcast_merkle=bytes(32))
    with pytest.raises(ValueError, match="broadcast merkle root must be 32 bytes"):
        ix.warmup_witness(A, B, C, **good, broadcast_merkle=bytes(31))
    with pytest.raises(ValueError, match="at most 8 evals"):
        ix.WitnessMetadata(evals=[("e", 0.0)] * 9).to_borsh()
    with pytest.raises(ValueError, match="at most 16 prompt results"):
        ix.WitnessMetadata(prompt_results=[0] * 17).to_borsh()
    with pytest.raises(ValueError, match="out of range for i32"):
        ix.WitnessMetadata(prompt_results=[2**31]).to_borsh()


def test_warmup_witness_is_441_bytes() -> None:
    instruction = ix.warmup_witness(
        A,
        INSTANCE,
        C,
        proof=bytes(17),
        participant_bloom=bytes(192),
        broadcast_bloom=bytes(192),
        broadcast_merkle=bytes([9]) * 32,
    )
    assert len(data(instruction)) == 441
    assert data(instruction)[:8].hex() == "d3e87ae83f16375e" and data(instruction)[-32:] == bytes([9]) * 32
    assert metas(instruction) == OWNER_METAS


def test_health_check_is_89_bytes() -> None:
    instruction = ix.health_check(
        A,
        INSTANCE,
        C,
        accused=NodeIdentity(D, E),
        committee=ix.Committee.TRAINER,
        position=5,
        index=6,
    )
    expected = bytes.fromhex("735a63a88a129d83") + bytes(D) + bytes(E) + b"\x02" + struct.pack("<QQ", 5, 6)
    assert data(instruction) == expected and len(expected) == 89
    assert metas(instruction) == OWNER_METAS


def test_checkpoint_sends_a_hub_repo() -> None:
    instruction = ix.checkpoint(A, INSTANCE, C, Checkpoint.hub("org/model", "main"))
    expected = (
        bytes.fromhex("d5c813ccf08fb8fc")
        + b"\x02"
        + b"org/model".ljust(64, b"\x00")
        + b"\x01"
        + b"main".ljust(64, b"\x00")
    )
    assert data(instruction) == expected
    assert data(ix.checkpoint(A, INSTANCE, C, Checkpoint.hub("r")))[-1:] == b"\x00"
    assert metas(instruction) == OWNER_METAS


CONFIG = CoordinatorConfig(15, 30, 15, 1, 0, 60, 25000, 1, 1, 0, 2048, 2048, 0, 3)
CONFIG_BORSH = struct.pack("<6QI5H2B", 15, 30, 15, 1, 0, 60, 25000, 1, 1, 0, 2048, 2048, 0, 3)
PROGRESS = CoordinatorProgress(epoch=1, step=2, epoch_start_data_index=3)
PROGRESS_BORSH = struct.pack("<HIQ", 1, 2, 3)
METADATA = RunMetadata(name="n", description="d", num_parameters=5, vocab_size=6)
METADATA_BORSH = b"n".ljust(64, b"\x00") + b"d".ljust(280, b"\x00") + struct.pack("<QQ", 5, 6)
MODEL = LLM(
    2048,
    0,
    LLMArchitecture.HfLlama,
    Checkpoint.hub("a/b"),
    LLMTrainingDataType.Pretraining,
    DataLocation(),
    ConstantLR(0.0004, 0.0, 10),
    DummyOptimizer(),
)


def test_update_encodes_four_options_in_order() -> None:
    assert data(ix.update(A, INSTANCE, C)).hex() == "dbc858b09e3ffd7f" + "00" * 4
    config_only = ix.update(A, INSTANCE, C, config=CONFIG)
    assert data(config_only) == bytes.fromhex("dbc858b09e3ffd7f") + b"\x00\x01" + CONFIG_BORSH + b"\x00\x00"
    assert len(CONFIG_BORSH) == 64 and len(PROGRESS_BORSH) == 14 and len(METADATA_BORSH) == 360
    everything = ix.update(A, INSTANCE, C, metadata=METADATA, config=CONFIG, model=MODEL, progress=PROGRESS)
    assert data(everything) == (
        bytes.fromhex("dbc858b09e3ffd7f")
        + b"\x01"
        + METADATA_BORSH
        + b"\x01"
        + CONFIG_BORSH
        + b"\x01"
        + MODEL.to_borsh()
        + b"\x01"
        + PROGRESS_BORSH
    )
    assert metas(everything) == OWNER_METAS


# --- treasurer ----------------------------------------------------------------------------------------------

TEST_INDEX = 7313085519096743583
TEST_RUN = Pubkey.from_string("tG3nRngwkJC3JAL9Aq9AMhFtTzr56hr9ZmaSRpD8dT8")
TEST_RUN_ATA = Pubkey.from_string("3KJQwxAaQ3xDCAbk5FAzKX5z52XbpvUwJZFDJsYVUNPg")


def test_run_create_argument_order_and_accounts() -> None:
    instruction = ix.run_create(
        A,
        B,
        NATIVE_MINT,
        index=TEST_INDEX,
        run_id="test",
        client_version="v1",
        main_authority=C,
        join_authority=D,
    )
    assert instruction.program_id == TREASURER_PROGRAM_ID
    assert data(instruction) == (
        bytes.fromhex("c638a3f70e3aa7fd")
        + struct.pack("<Q", TEST_INDEX)
        + b"\x04\x00\x00\x00test"
        + b"\x02\x00\x00\x00v1"
        + bytes(C)
        + bytes(D)
    )
    assert metas(instruction) == [
        (A, SW),
        (TEST_RUN, W),
        (TEST_RUN_ATA, W),
        (NATIVE_MINT, R),
        (INSTANCE, W),
        (B, W),
        (COORDINATOR_PROGRAM_ID, R),
        (ASSOCIATED_TOKEN_PROGRAM_ID, R),
        (TOKEN_PROGRAM_ID, R),
        (SYSTEM_PROGRAM_ID, R),
    ]


def test_run_create_honours_every_program_id_override() -> None:
    instruction = ix.run_create(
        A,
        B,
        NATIVE_MINT,
        index=1,
        run_id="x",
        client_version="",
        main_authority=A,
        join_authority=A,
        program_id=OTHER_PROGRAM,
        coordinator_program_id=E,
        token_program_id=F,
        associated_token_program_id=D,
    )
    run = pda.treasurer_run(1, program_id=OTHER_PROGRAM)
    keys = [m.pubkey for m in instruction.accounts]
    assert instruction.program_id == OTHER_PROGRAM
    assert keys[1] == run
    assert keys[2] == pda.associated_token_account(run, NATIVE_MINT, token_program_id=F, program_id=D)
    assert keys[4] == pda.coordinator_instance("x", program_id=E)
    assert keys[6:9] == [E, D, F]


def test_run_update_spec_example_paused_only() -> None:
    instruction = ix.run_update(A, TEST_RUN, INSTANCE, C, paused=True)
    assert data(instruction).hex() == "33562e740d42149d" + "00" * 6 + "0101" + "00"
    assert metas(instruction) == [(A, S), (TEST_RUN, R), (INSTANCE, R), (C, W), (COORDINATOR_PROGRAM_ID, R)]


def test_run_update_every_field_in_order() -> None:
    instruction = ix.run_update(
        A,
        TEST_RUN,
        INSTANCE,
        C,
        config=CONFIG,
        progress=PROGRESS,
        epoch_earning_rate_total_shared=7,
        epoch_slashing_rate_per_client=8,
        paused=False,
        client_version="v2",
        coordinator_program_id=OTHER_PROGRAM,
    )
    assert data(instruction) == (
        bytes.fromhex("33562e740d42149d")
        + b"\x00"
        + b"\x01"
        + CONFIG_BORSH
        + b"\x00"
        + b"\x01"
        + PROGRESS_BORSH
        + b"\x01"
        + struct.pack("<Q", 7)
        + b"\x01"
        + struct.pack("<Q", 8)
        + b"\x01\x00"
        + b"\x01\x02\x00\x00\x00v2"
    )
    assert instruction.accounts[4].pubkey == OTHER_PROGRAM


def test_participant_create() -> None:
    instruction = ix.participant_create(A, DEV_KEY, TEST_RUN)
    participant = Pubkey.from_string("52wxSPBfp27mPT2Z85ZitztRR2NmozqdEGF4h6mL79AS")
    assert data(instruction).hex() == "32b18e2875b046b5"
    assert metas(instruction) == [
        (A, SW),
        (DEV_KEY, S),
        (TEST_RUN, R),
        (participant, W),
        (SYSTEM_PROGRAM_ID, R),
    ]


def test_participant_claim_spec_example() -> None:
    instruction = ix.participant_claim(DEV_KEY, B, TEST_RUN, TEST_RUN_ATA, C, 42)
    participant = Pubkey.from_string("52wxSPBfp27mPT2Z85ZitztRR2NmozqdEGF4h6mL79AS")
    assert data(instruction).hex() == "a096e8563b6bad26" + "2a00000000000000"
    assert metas(instruction) == [
        (DEV_KEY, S),
        (B, W),
        (TEST_RUN, W),
        (TEST_RUN_ATA, W),
        (C, R),
        (participant, W),
        (TOKEN_PROGRAM_ID, R),
    ]


# --- System, SPL Token, Associated Token --------------------------------------------------------------------


def test_system_create_account_matches_solders() -> None:
    ours = ix.system_create_account(A, B, 830_244_480, 119_160, COORDINATOR_PROGRAM_ID)
    theirs = solders_create_account(
        CreateAccountParams(
            from_pubkey=A, to_pubkey=B, lamports=830_244_480, space=119_160, owner=COORDINATOR_PROGRAM_ID
        )
    )
    assert ours == theirs
    assert data(ours) == struct.pack("<IQQ", 0, 830_244_480, 119_160) + bytes(COORDINATOR_PROGRAM_ID)
    assert metas(ours) == [(A, SW), (B, SW)]


def test_system_transfer_matches_solders() -> None:
    ours = ix.system_transfer(A, B, 5)
    assert ours == solders_transfer(TransferParams(from_pubkey=A, to_pubkey=B, lamports=5))
    assert data(ours) == struct.pack("<IQ", 2, 5)
    assert metas(ours) == [(A, SW), (B, W)]


def test_token_transfer_tag_3() -> None:
    instruction = ix.token_transfer(A, B, C, 1234)
    assert instruction.program_id == TOKEN_PROGRAM_ID
    assert data(instruction) == b"\x03" + struct.pack("<Q", 1234)
    assert metas(instruction) == [(A, W), (B, W), (C, S)]


def test_token_transfer_checked_tag_12() -> None:
    instruction = ix.token_transfer_checked(A, NATIVE_MINT, B, C, 1234, 9, program_id=OTHER_PROGRAM)
    assert instruction.program_id == OTHER_PROGRAM
    assert data(instruction) == b"\x0c" + struct.pack("<Q", 1234) + b"\x09"
    assert metas(instruction) == [(A, W), (NATIVE_MINT, R), (B, W), (C, S)]


@pytest.mark.parametrize(
    ("builder", "payload"),
    [(ix.create_associated_token_account, b""), (ix.create_associated_token_account_idempotent, b"\x01")],
)
def test_associated_token_account_creation(
    builder: Callable[[Pubkey, Pubkey, Pubkey], Instruction], payload: bytes
) -> None:
    instruction = builder(A, TEST_RUN, NATIVE_MINT)
    assert instruction.program_id == ASSOCIATED_TOKEN_PROGRAM_ID
    assert data(instruction) == payload
    assert metas(instruction) == [
        (A, SW),
        (TEST_RUN_ATA, W),
        (TEST_RUN, R),
        (NATIVE_MINT, R),
        (SYSTEM_PROGRAM_ID, R),
        (TOKEN_PROGRAM_ID, R),
    ]


# --- properties ---------------------------------------------------------------------------------------------

pubkeys = st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes)


@given(pubkeys, pubkeys, st.binary(max_size=32))
def test_authorization_create_data_is_grantee_then_scope_vec(
    grantor: Pubkey, grantee: Pubkey, scope: bytes
) -> None:
    raw = data(ix.authorization_create(A, grantor, grantee, scope))
    assert raw[8:40] == bytes(grantee)
    assert int.from_bytes(raw[40:44], "little") == len(scope) and raw[44:] == scope


@given(st.none() | st.integers(0, 2**64 - 1), st.none() | st.integers(0, 2**64 - 1))
def test_set_future_epoch_rates_lengths(earning: int | None, slashing: int | None) -> None:
    raw = data(
        ix.set_future_epoch_rates(
            A, B, C, earning_rate_total_shared=earning, slashing_rate_per_client=slashing
        )
    )
    assert len(raw) == 8 + 2 + 8 * ((earning is not None) + (slashing is not None))


def test_default_join_scope_is_used_by_authorization_create() -> None:
    assert data(ix.authorization_create(A, B, C)).endswith(JOIN_RUN_AUTHORIZATION_SCOPE)


def test_associated_token_account_creation_matches_solana_py() -> None:
    spl = pytest.importorskip("spl.token.instructions")
    theirs = spl.create_idempotent_associated_token_account(A, B, C)
    assert ix.create_associated_token_account_idempotent(A, B, C) == theirs
    # solana-py's legacy Create still appends the rent sysvar, which today's ATA program no longer reads.
    legacy = spl.create_associated_token_account(A, B, C)
    ours = ix.create_associated_token_account(A, B, C)
    assert list(ours.accounts) == list(legacy.accounts)[:6] and bytes(ours.data) == bytes(legacy.data) == b""
