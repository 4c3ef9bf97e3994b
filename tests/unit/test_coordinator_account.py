"""CoordinatorAccount: golden decode of the real dump, byte-identical encode, bad bytes refused."""

from __future__ import annotations

import dataclasses
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import (
    DISCRIMINATOR,
    SIZE,
    Bloom,
    ClientsState,
    ClientState,
    CoordinatorAccount,
    EpochClient,
    EpochRates,
    EpochState,
    LedgerClient,
    NodeIdentity,
    Round,
    RunState,
    Witness,
    WitnessProof,
    peek_client_version,
    peek_nonce,
    peek_run_state,
)
from psyche.chain.accounts.model import (
    CheckpointKind,
    CosineLR,
    DataLocationKind,
    Distro,
    Gcp,
    HttpDataLocation,
    HubRepo,
    LLMArchitecture,
    LLMTrainingDataType,
    TokenSize,
)
from psyche.chain.layout import Reader
from psyche.errors import AccountDecodeError
from tests.support.coordinator_strategies import accounts, blooms, proofs, witnesses

KEY_A = Pubkey.from_bytes(bytes(range(32)))
KEY_B = Pubkey.from_bytes(bytes(range(32, 64)))


def _real(fixtures: Path) -> bytes:
    return (fixtures / "coordinator-account-v1.bin").read_bytes()


def _populated() -> CoordinatorAccount:
    """A project-made account with every array in use, beyond what the real dump holds."""
    base = CoordinatorAccount.initial("my-run", "v1.2.3")
    wit = Witness(WitnessProof(3, 1, True), Bloom(tuple(range(8)), tuple(range(16))), Bloom(), b"\x07" * 32)
    rounds = (Round((wit, wit), 10, 99, 2, 5, 1), Round(), Round((wit,), 1, 2, 3, 4, 5), Round())
    epoch = EpochState(
        rounds,
        (EpochClient(KEY_A, KEY_B), EpochClient(KEY_B, KEY_A, ClientState.Dropped, 0)),
        (EpochClient(KEY_B, KEY_B, ClientState.Withdrawn, 7),),
        2,
        5,
        0,
        1_700_000_000,
        True,
        False,
    )
    ledger = ClientsState(
        (LedgerClient(KEY_A, KEY_B, 10, 2, 3),), 3, EpochRates(5, 1), EpochRates(1_000_000, 0)
    )
    return dataclasses.replace(
        base,
        run_state=RunState.RoundTrain,
        epoch_state=epoch,
        clients_state=ledger,
        pending_pause=True,
        is_warmup_first_tick=True,
        nonce=41,
    )


# ---------------------------------------------------------------- the real dump


def test_real_dump_decodes_to_every_value_in_the_fixtures_readme(psyche_fixtures: Path) -> None:
    a = CoordinatorAccount.decode(_real(psyche_fixtures))
    assert (a.version, a.nonce, a.client_version) == (1, 2, "test")
    assert (a.is_warmup_first_tick, a.is_training_first_tick) == (False, False)
    assert (a.metadata.name, a.metadata.description) == ("", "")
    assert (a.metadata.num_parameters, a.metadata.vocab_size) == (1_100_000_000, 32768)
    assert (a.run_id, a.run_state, a.run_state_start_unix_timestamp, a.pending_pause) == (
        "test",
        RunState.Uninitialized,
        0,
        False,
    )
    m = a.model
    assert (m.max_seq_len, m.cold_start_warmup_steps, m.architecture) == (2048, 0, LLMArchitecture.HfLlama)
    assert m.checkpoint.kind is CheckpointKind.Hub
    assert m.checkpoint.repo == HubRepo("emozilla/llama2-1.1b-gqa-init", None)
    assert m.data_type is LLMTrainingDataType.Pretraining
    assert m.data_location.kind is DataLocationKind.Http
    assert m.data_location.value == HttpDataLocation(
        Gcp("nous-pretraining-public-us", "fineweb-edu-tokenized-llama2"), TokenSize.TwoBytes, None
    )
    assert m.lr_schedule == CosineLR(0.0004, 0.0, 0.00004, 250, 25000)
    assert m.optimizer == Distro(1.0, None, struct.unpack("<f", struct.pack("<f", 0.999))[0], 2, 64, False)
    c = a.config
    assert (c.warmup_time, c.cooldown_time, c.max_round_train_time, c.round_witness_time) == (15, 30, 15, 1)
    assert (c.global_batch_size_warmup_tokens, c.epoch_time, c.total_steps) == (0, 60, 25000)
    assert (c.init_min_clients, c.min_clients, c.witness_nodes) == (1, 1, 0)
    assert (c.global_batch_size_start, c.global_batch_size_end) == (2048, 2048)
    assert (c.verification_percent, c.waiting_for_members_extra_time) == (0, 3)
    assert (a.progress.epoch, a.progress.step, a.progress.epoch_start_data_index) == (0, 0, 0)
    e = a.epoch_state
    assert e.rounds == (Round(),) * 4
    assert (e.clients, e.exited_clients) == ((), ())
    assert (e.rounds_head, e.start_step, e.last_step, e.start_timestamp) == (0, 0, 0, 0)
    assert (e.first_round, e.cold_start_epoch) == (False, False)
    s = a.clients_state
    assert (s.clients, s.next_active) == ((), 0)
    assert s.current_epoch_rates == EpochRates(0, 0)
    assert s.future_epoch_rates == EpochRates(1_000_000, 0)


def test_real_dump_re_encodes_byte_identically(psyche_fixtures: Path) -> None:
    data = _real(psyche_fixtures)
    assert CoordinatorAccount.decode(data).encode() == data


def test_real_dump_peeks(psyche_fixtures: Path) -> None:
    data = _real(psyche_fixtures)
    assert (peek_client_version(data), peek_nonce(data), peek_run_state(data)) == (
        "test",
        2,
        RunState.Uninitialized,
    )


def test_v0_dump_is_refused_by_size(psyche_fixtures: Path) -> None:
    data = (psyche_fixtures / "coordinator-account-v0.bin").read_bytes()
    msg = "coordinator account: expected 119160 bytes, got 119072 (older, unsupported layout?)"
    for read in (CoordinatorAccount.decode, peek_nonce, peek_client_version, peek_run_state):
        with pytest.raises(AccountDecodeError) as info:
            read(data)
        assert str(info.value) == msg


# ---------------------------------------------------------------- refusals


def _with(data: bytes, offset: int, raw: bytes) -> bytes:
    buf = bytearray(data)
    buf[offset : offset + len(raw)] = raw
    return bytes(buf)


GOOD = _populated().encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD[:-1], "coordinator account: expected 119160 bytes, got 119159 (older, unsupported layout?)"),
        (b"", "coordinator account: expected 119160 bytes, got 0"),
        (
            GOOD + b"\x00",
            "coordinator account: expected 119160 bytes, got 119161 (older, unsupported layout?)",
        ),
        (
            _with(GOOD, 0, bytes(8)),
            "coordinator account: wrong discriminator 0000000000000000, expected ef21b1372c9b562b",
        ),
        (_with(GOOD, 8, struct.pack("<Q", 2)), "coordinator account: unsupported version 2 (expected 1)"),
        (_with(GOOD, 8, struct.pack("<Q", 0)), "coordinator account: unsupported version 0 (expected 1)"),
        (
            _with(GOOD, 1048 + 14112 * 3 + 14080, struct.pack("<Q", 33)),
            "coordinator account: epoch_state.rounds[3].witnesses.len 33 exceeds capacity 32",
        ),
        (
            _with(GOOD, 75928, struct.pack("<Q", 257)),
            "coordinator account: epoch_state.clients.len 257 exceeds capacity 256",
        ),
        (
            _with(GOOD, 94368, struct.pack("<Q", 2**64 - 1)),
            f"coordinator account: epoch_state.exited_clients.len {2**64 - 1} exceeds capacity 256",
        ),
        (
            _with(GOOD, 119000, struct.pack("<Q", 300)),
            "coordinator account: clients_state.clients.len 300 exceeds capacity 256",
        ),
        (_with(GOOD, 408, b"\x08"), "coordinator account: unknown run_state 8 at offset 408"),
        (_with(GOOD, 57496 + 64, b"\x04"), "coordinator account: unknown client state 4 at offset 57560"),
        (
            _with(GOOD, 436, struct.pack("<I", 6)),
            "coordinator account: unknown checkpoint variant 6 at offset 436",
        ),
        (
            _with(GOOD, 416, struct.pack("<I", 1)),
            "coordinator account: unknown model variant 1 at offset 416",
        ),
        (
            _with(GOOD, 936, struct.pack("<I", 3)),
            "coordinator account: unknown optimizer variant 3 at offset 936",
        ),
    ],
)
def test_bad_bytes_raise_account_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(AccountDecodeError) as info:
        CoordinatorAccount.decode(data)
    assert str(info.value) == message


def test_peeks_check_the_header_too() -> None:
    bad = _with(GOOD, 0, b"\x01" * 8)
    for peek in (peek_client_version, peek_nonce, peek_run_state):
        with pytest.raises(AccountDecodeError, match="wrong discriminator"):
            peek(bad)
    assert (peek_client_version(GOOD), peek_nonce(GOOD), peek_run_state(GOOD)) == (
        "v1.2.3",
        41,
        RunState.RoundTrain,
    )


# ---------------------------------------------------------------- project-made accounts


def test_initial_account_is_what_init_coordinator_writes() -> None:
    data = CoordinatorAccount.initial("test", "test").encode()
    expected = bytearray(SIZE)
    expected[0:8] = DISCRIMINATOR
    expected[8:16] = struct.pack("<Q", 1)
    expected[376:380] = b"test"
    expected[119050:119054] = b"test"
    assert data == bytes(expected)
    assert CoordinatorAccount.decode(data) == CoordinatorAccount.initial("test", "test")


def test_initial_truncates_run_id_and_client_version() -> None:
    a = CoordinatorAccount.initial("r" * 40, "v" * 100)
    assert (a.run_id, a.client_version) == ("r" * 32, "v" * 96)
    assert CoordinatorAccount.decode(a.encode()) == a


def test_populated_account_round_trips() -> None:
    a = _populated()
    assert CoordinatorAccount.decode(a.encode()) == a
    assert CoordinatorAccount.decode(a.encode()).encode() == a.encode()


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="capacity 256"):
        dataclasses.replace(
            _populated(), clients_state=ClientsState((LedgerClient(KEY_A, KEY_B),) * 257)
        ).encode()
    with pytest.raises(ValueError, match="out of range"):
        dataclasses.replace(_populated(), nonce=-1).encode()
    with pytest.raises(ValueError, match="does not fit in 96 bytes"):
        dataclasses.replace(_populated(), client_version="x" * 97).encode()


def test_run_state_display_halted_active() -> None:
    assert [s.display for s in RunState] == [
        "Uninitialized",
        "Waiting for members",
        "Warmup",
        "Training",
        "Witness",
        "Cooldown",
        "Finished",
        "Paused",
    ]
    assert [s.name for s in RunState if s.halted] == ["Uninitialized", "Finished", "Paused"]
    assert [s.name for s in RunState if s.active] == ["RoundTrain", "RoundWitness", "Cooldown"]
    assert [c.name for c in ClientState] == ["Healthy", "Dropped", "Withdrawn", "Ejected"]


# ---------------------------------------------------------------- Borsh of witness arguments


def test_witness_borsh_golden() -> None:
    proof = WitnessProof(position=5, index=258, witness=True)
    assert proof.to_borsh() == bytes.fromhex("0500000000000000020100000000000001")
    bloom = Bloom(tuple(range(1, 9)), tuple(range(100, 116)))
    assert bloom.to_borsh() == b"".join(struct.pack("<Q", v) for v in [*range(1, 9), *range(100, 116)])
    wit = Witness(proof, bloom, Bloom(), b"\xaa" * 32)
    assert wit.to_borsh() == proof.to_borsh() + bloom.to_borsh() + bytes(192) + b"\xaa" * 32
    assert len(wit.to_borsh()) == 433
    assert NodeIdentity(KEY_A, KEY_B).to_borsh() == bytes(range(64))


def test_witness_proof_borsh_rejects_bad_bool() -> None:
    with pytest.raises(AccountDecodeError, match="invalid bool byte 2"):
        WitnessProof.from_borsh(Reader(bytes(16) + b"\x02", "witness"))


# ---------------------------------------------------------------- properties


@settings(max_examples=100, deadline=None)
@given(accounts)
def test_any_valid_account_round_trips(account: CoordinatorAccount) -> None:
    data = account.encode()
    assert len(data) == SIZE
    assert CoordinatorAccount.decode(data) == account


def _decode_or_refuse(data: bytes) -> None:
    try:
        decoded = CoordinatorAccount.decode(data)
    except AccountDecodeError as exc:
        assert str(exc).startswith("coordinator account: ")
        return
    # whatever decodes re-encodes to bytes that decode the same way (encode is stable after one pass)
    again = decoded.encode()
    assert CoordinatorAccount.decode(again).encode() == again


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_short_bytes_only_raise_account_decode_error(data: bytes) -> None:
    _decode_or_refuse(data)


_LEN_OFFSETS = [1048 + 14112 * i + 14080 for i in range(4)] + [75928, 94368, 119000]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
def test_random_full_size_bytes_only_raise_account_decode_error(seed: int, sane_lengths: bool) -> None:
    rng = random.Random(seed)
    # A valid header so the random body is actually parsed; optionally small lengths so arrays are read too.
    buf = bytearray(rng.randbytes(SIZE))
    buf[0:16] = DISCRIMINATOR + struct.pack("<Q", 1)
    if sane_lengths:
        for offset in _LEN_OFFSETS:
            buf[offset : offset + 8] = struct.pack("<Q", rng.randrange(3))
    _decode_or_refuse(bytes(buf))


_mutations = st.lists(st.tuples(st.integers(0, SIZE - 1), st.integers(0, 255)), min_size=1, max_size=16)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for offset, value in edits:
        buf[offset] = value
    return bytes(buf)


@settings(max_examples=200, deadline=None)
@given(_mutations)
def test_mutated_project_account_only_raises_account_decode_error(edits: list[tuple[int, int]]) -> None:
    _decode_or_refuse(_mutate(GOOD, edits))


# Mutations aimed at the bytes that carry tags and lengths, where random offsets rarely land.
_HOT = [
    0,
    8,
    408,
    416,
    432,
    436,
    440,
    572,
    576,
    580,
    840,
    844,
    880,
    936,
    940,
    948,
    964,
    57560,
    75928,
    94368,
    119000,
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_HOT), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_tags_and_lengths_only_raise_account_decode_error(edits: list[tuple[int, int]]) -> None:
    _decode_or_refuse(_mutate(GOOD, edits))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=_mutations)
def test_mutated_real_dump_only_raises_account_decode_error(
    psyche_fixtures: Path, edits: list[tuple[int, int]]
) -> None:
    _decode_or_refuse(_mutate(_real(psyche_fixtures), edits))


@settings(max_examples=200, deadline=None)
@given(proofs, blooms, witnesses)
def test_witness_borsh_round_trips(proof: WitnessProof, bloom: Bloom, witness: Witness) -> None:
    assert WitnessProof.from_borsh(Reader(proof.to_borsh(), "x")) == proof
    assert Bloom.from_borsh(Reader(bloom.to_borsh(), "x")) == bloom
    assert Witness.from_borsh(Reader(witness.to_borsh(), "x")) == witness


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_witness_borsh_decoders_only_raise_account_decode_error(data: bytes) -> None:
    for cls in (WitnessProof, Bloom, Witness):
        try:
            cls.from_borsh(Reader(data, "witness"))
        except AccountDecodeError as exc:
            assert str(exc).startswith("witness: ")
