"""The coordinator program's 119,160-byte zero-copy CoordinatorAccount: frozen dataclasses, decode and encode.

Offsets are absolute (discriminator included) and follow spec onchain.md 4.2. ``decode`` checks, in order,
the size, the discriminator, the version and every FixedVec length, and raises AccountDecodeError starting
with "coordinator account:" for any bad input; it reads only the first ``len`` items of each array.
``encode`` writes the fields over the bytes the account was decoded from (zeros for a made-up account), so
padding and stale bytes survive and a decoded account re-encodes byte-identically.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from solders.pubkey import Pubkey

from psyche.chain.accounts.model import LLM, CoordinatorConfig, CoordinatorProgress, RunMetadata
from psyche.chain.accounts.state import (
    NUM_ROUNDS,
    Bloom,
    ClientsState,
    ClientState,
    EpochClient,
    EpochRates,
    EpochState,
    LedgerClient,
    NodeIdentity,
    Round,
    Witness,
    WitnessProof,
)
from psyche.chain.accounts.zerocopy import ZC_WHAT, zc_pack, zc_put_str, zc_str
from psyche.chain.layout import decode_fixed_str, encode_fixed_str
from psyche.errors import AccountDecodeError

SIZE = 119_160
DISCRIMINATOR = bytes.fromhex("ef21b1372c9b562b")
VERSION = 1

MAX_WITNESSES = 32
MAX_CLIENTS = 256

_U64 = struct.Struct("<Q")
_ROUNDS_AT, _ROUND_SIZE, _WITNESS_SIZE = 1048, 14_112, 440
_ROUND_TAIL = struct.Struct(
    "<QQQIHH"
)  # witnesses.len, data_index, random_seed, height, clients_len, tie_breaker
_EPOCH_CLIENTS_AT, _EXITED_AT, _EPOCH_CLIENT = 57_496, 75_936, struct.Struct("<32s32sB3xI")
_EPOCH_TAIL = struct.Struct("<III4xQBB")  # at 94376
_COORD_TAIL = struct.Struct("<QB")  # run_state_start_unix_timestamp, pending_pause at 94408
_LEDGER_AT, _LEDGER_CLIENT = 94_424, struct.Struct("<32s32s8xQQQ")
_LEDGER_TAIL = struct.Struct("<6Q")  # len, next_active, current rates (2), future rates (2) at 119000
_FLAGS = struct.Struct("<BB")  # is_warmup_first_tick, is_training_first_tick at 119048


class RunState(IntEnum):
    """``RunState`` (u8 at offset 408)."""

    Uninitialized = 0
    WaitingForMembers = 1
    Warmup = 2
    RoundTrain = 3
    RoundWitness = 4
    Cooldown = 5
    Finished = 6
    Paused = 7

    @property
    def display(self) -> str:
        """The Rust Display string the run-manager prints."""
        return _RUN_STATE_DISPLAY[self]

    @property
    def halted(self) -> bool:
        return self in (RunState.Uninitialized, RunState.Finished, RunState.Paused)

    @property
    def active(self) -> bool:
        return self in (RunState.RoundTrain, RunState.RoundWitness, RunState.Cooldown)


_RUN_STATE_DISPLAY = {
    RunState.Uninitialized: "Uninitialized",
    RunState.WaitingForMembers: "Waiting for members",
    RunState.Warmup: "Warmup",
    RunState.RoundTrain: "Training",
    RunState.RoundWitness: "Witness",
    RunState.Cooldown: "Cooldown",
    RunState.Finished: "Finished",
    RunState.Paused: "Paused",
}


def _fail(reason: str) -> AccountDecodeError:
    return AccountDecodeError(f"{ZC_WHAT}: {reason}")


def _check_header(data: bytes) -> None:
    if len(data) != SIZE:
        hint = " (older, unsupported layout?)" if len(data) > SIZE // 2 else ""
        raise _fail(f"expected {SIZE} bytes, got {len(data)}{hint}")
    if data[:8] != DISCRIMINATOR:
        raise _fail(f"wrong discriminator {data[:8].hex()}, expected {DISCRIMINATOR.hex()}")
    version = _U64.unpack_from(data, 8)[0]
    if version != VERSION:
        raise _fail(f"unsupported version {version} (expected {VERSION})")


def _len(data: bytes, off: int, cap: int, name: str) -> int:
    n = int(_U64.unpack_from(data, off)[0])
    if n > cap:
        raise _fail(f"{name}.len {n} exceeds capacity {cap}")
    return n


def _put_len(buf: bytearray, off: int, items: tuple[object, ...], cap: int, name: str) -> None:
    if len(items) > cap:
        raise ValueError(f"{name} holds {len(items)} items, capacity {cap}")
    _U64.pack_into(buf, off, len(items))


def peek_client_version(data: bytes) -> str:
    """The run's client_version, reading nothing else (after the same header checks as decode)."""
    _check_header(data)
    return zc_str(data, 119_050, 96)


def peek_nonce(data: bytes) -> int:
    """The update counter, for dropping stale websocket notifications."""
    _check_header(data)
    return int(_U64.unpack_from(data, 119_152)[0])


def peek_run_state(data: bytes) -> RunState:
    """The run state alone, read without decoding the whole account.

    Raises:
        AccountDecodeError: wrong size, discriminator or version, or an unknown state tag.
    """
    _check_header(data)
    return _run_state(data[408])


_RUN_STATES = tuple(RunState)
_CLIENT_STATES = tuple(ClientState)


def _run_state(value: int) -> RunState:
    if value >= len(_RUN_STATES):
        raise _fail(f"unknown run_state {value} at offset 408")
    return _RUN_STATES[value]


def _read_epoch_clients(data: bytes, at: int, n: int) -> tuple[EpochClient, ...]:
    states, key = _CLIENT_STATES, Pubkey.from_bytes
    out = []
    for k, (signer, p2p, state, height) in enumerate(_EPOCH_CLIENT.iter_unpack(data[at : at + 72 * n])):
        if state >= len(states):
            raise _fail(f"unknown client state {state} at offset {at + 72 * k + 64}")
        out.append(EpochClient(key(signer), key(p2p), states[state], height))
    return tuple(out)


def _write_epoch_clients(buf: bytearray, at: int, clients: tuple[EpochClient, ...]) -> None:
    for k, c in enumerate(clients):
        zc_pack(
            buf,
            _EPOCH_CLIENT,
            at + 72 * k,
            bytes(c.signer),
            bytes(c.p2p_identity),
            int(c.state),
            c.exited_height,
        )


def _read_epoch_state(data: bytes) -> EpochState:
    rounds = []
    for i in range(NUM_ROUNDS):
        base = _ROUNDS_AT + _ROUND_SIZE * i
        n = _len(data, base + 14_080, MAX_WITNESSES, f"epoch_state.rounds[{i}].witnesses")
        _, data_index, seed, height, clients_len, tie = _ROUND_TAIL.unpack_from(data, base + 14_080)
        witnesses = tuple(Witness._unpack(data, base + _WITNESS_SIZE * j) for j in range(n))
        rounds.append(Round(witnesses, data_index, seed, height, clients_len, tie))
    n_clients = _len(data, 75_928, MAX_CLIENTS, "epoch_state.clients")
    n_exited = _len(data, 94_368, MAX_CLIENTS, "epoch_state.exited_clients")
    head, start_step, last_step, start_ts, first_round, cold = _EPOCH_TAIL.unpack_from(data, 94_376)
    return EpochState(
        tuple(rounds),
        _read_epoch_clients(data, _EPOCH_CLIENTS_AT, n_clients),
        _read_epoch_clients(data, _EXITED_AT, n_exited),
        head,
        start_step,
        last_step,
        start_ts,
        first_round != 0,
        cold != 0,
    )


def _write_epoch_state(buf: bytearray, e: EpochState) -> None:
    if len(e.rounds) != NUM_ROUNDS:
        raise ValueError(f"epoch_state.rounds must hold {NUM_ROUNDS} rounds, got {len(e.rounds)}")
    for i, r in enumerate(e.rounds):
        base = _ROUNDS_AT + _ROUND_SIZE * i
        _put_len(buf, base + 14_080, r.witnesses, MAX_WITNESSES, f"epoch_state.rounds[{i}].witnesses")
        for j, w in enumerate(r.witnesses):
            w._pack(buf, base + _WITNESS_SIZE * j)
        tail = (len(r.witnesses), r.data_index, r.random_seed, r.height, r.clients_len, r.tie_breaker_tasks)
        zc_pack(buf, _ROUND_TAIL, base + 14_080, *tail)
    _put_len(buf, 75_928, e.clients, MAX_CLIENTS, "epoch_state.clients")
    _write_epoch_clients(buf, _EPOCH_CLIENTS_AT, e.clients)
    _put_len(buf, 94_368, e.exited_clients, MAX_CLIENTS, "epoch_state.exited_clients")
    _write_epoch_clients(buf, _EXITED_AT, e.exited_clients)
    tail = (
        e.rounds_head,
        e.start_step,
        e.last_step,
        e.start_timestamp,
        int(e.first_round),
        int(e.cold_start_epoch),
    )
    zc_pack(buf, _EPOCH_TAIL, 94_376, *tail)


def _read_clients_state(data: bytes) -> ClientsState:
    n = _len(data, 119_000, MAX_CLIENTS, "clients_state.clients")
    clients = []
    for off in range(_LEDGER_AT, _LEDGER_AT + 96 * n, 96):
        signer, p2p, earned, slashed, active = _LEDGER_CLIENT.unpack_from(data, off)
        clients.append(
            LedgerClient(Pubkey.from_bytes(signer), Pubkey.from_bytes(p2p), earned, slashed, active)
        )
    _, next_active, ce, cs, fe, fs = _LEDGER_TAIL.unpack_from(data, 119_000)
    return ClientsState(tuple(clients), next_active, EpochRates(ce, cs), EpochRates(fe, fs))


def _write_clients_state(buf: bytearray, s: ClientsState) -> None:
    _put_len(buf, 119_000, s.clients, MAX_CLIENTS, "clients_state.clients")
    for k, c in enumerate(s.clients):
        values = (bytes(c.signer), bytes(c.p2p_identity), c.earned, c.slashed, c.active)
        zc_pack(buf, _LEDGER_CLIENT, _LEDGER_AT + 96 * k, *values)
    cur, fut = s.current_epoch_rates, s.future_epoch_rates
    rates = (
        cur.earning_rate_total_shared,
        cur.slashing_rate_per_client,
        fut.earning_rate_total_shared,
        fut.slashing_rate_per_client,
    )
    zc_pack(buf, _LEDGER_TAIL, 119_000, len(s.clients), s.next_active, *rates)


@dataclass(frozen=True, slots=True)
class CoordinatorAccount:
    """``CoordinatorAccount`` = version + ``CoordinatorInstanceState`` + nonce (the big zero-copy account).

    ``raw`` holds the bytes it was decoded from (not compared, not shown): ``encode`` writes over them."""

    version: int
    metadata: RunMetadata
    run_id: str
    run_state: RunState
    model: LLM
    config: CoordinatorConfig
    progress: CoordinatorProgress
    epoch_state: EpochState
    run_state_start_unix_timestamp: int
    pending_pause: bool
    clients_state: ClientsState
    is_warmup_first_tick: bool
    is_training_first_tick: bool
    client_version: str
    nonce: int
    raw: bytes | None = field(default=None, compare=False, repr=False)

    DISCRIMINATOR: ClassVar[bytes] = DISCRIMINATOR
    SIZE: ClassVar[int] = SIZE

    @classmethod
    def decode(cls, data: bytes) -> CoordinatorAccount:
        """Parse account data; any bad input raises AccountDecodeError("coordinator account: ...")."""
        data = bytes(data)
        _check_header(data)
        ts, pending = _COORD_TAIL.unpack_from(data, 94_408)
        warmup_tick, training_tick = _FLAGS.unpack_from(data, 119_048)
        return cls(
            version=VERSION,
            metadata=RunMetadata.read_zc(data),
            run_id=zc_str(data, 376, 32),
            run_state=_run_state(data[408]),
            model=LLM.read_zc(data),
            config=CoordinatorConfig.read_zc(data),
            progress=CoordinatorProgress.read_zc(data),
            epoch_state=_read_epoch_state(data),
            run_state_start_unix_timestamp=ts,
            pending_pause=pending != 0,
            clients_state=_read_clients_state(data),
            is_warmup_first_tick=warmup_tick != 0,
            is_training_first_tick=training_tick != 0,
            client_version=zc_str(data, 119_050, 96),
            nonce=int(_U64.unpack_from(data, 119_152)[0]),
            raw=data,
        )

    def encode(self) -> bytes:
        """The 119,160 account bytes; ValueError if a value does not fit its field."""
        buf = bytearray(self.raw) if self.raw is not None and len(self.raw) == SIZE else bytearray(SIZE)
        buf[0:8] = DISCRIMINATOR
        zc_pack(buf, _U64, 8, self.version)
        self.metadata.write_zc(buf)
        zc_put_str(buf, 376, 32, self.run_id)
        buf[408] = int(self.run_state)
        self.model.write_zc(buf)
        self.config.write_zc(buf)
        self.progress.write_zc(buf)
        _write_epoch_state(buf, self.epoch_state)
        zc_pack(buf, _COORD_TAIL, 94_408, self.run_state_start_unix_timestamp, int(self.pending_pause))
        _write_clients_state(buf, self.clients_state)
        buf[119_048] = int(self.is_warmup_first_tick)
        buf[119_049] = int(self.is_training_first_tick)
        zc_put_str(buf, 119_050, 96, self.client_version)
        zc_pack(buf, _U64, 119_152, self.nonce)
        return bytes(buf)

    @classmethod
    def initial(cls, run_id: str, client_version: str) -> CoordinatorAccount:
        """The account as ``init_coordinator`` leaves it: all zero but the discriminator, version 1, nonce 0,
        run_id cut to 32 bytes and client_version cut to 96 bytes."""
        return cls(
            version=VERSION,
            metadata=RunMetadata(),
            run_id=decode_fixed_str(encode_fixed_str(run_id, 32, truncate=True)),
            run_state=RunState.Uninitialized,
            model=LLM.zeroed(),
            config=CoordinatorConfig(),
            progress=CoordinatorProgress(),
            epoch_state=EpochState(),
            run_state_start_unix_timestamp=0,
            pending_pause=False,
            clients_state=ClientsState(),
            is_warmup_first_tick=False,
            is_training_first_tick=False,
            client_version=decode_fixed_str(encode_fixed_str(client_version, 96, truncate=True)),
            nonce=0,
        )


__all__ = [
    "DISCRIMINATOR",
    "SIZE",
    "Bloom",
    "ClientState",
    "ClientsState",
    "CoordinatorAccount",
    "EpochClient",
    "EpochRates",
    "EpochState",
    "LedgerClient",
    "NodeIdentity",
    "Round",
    "RunState",
    "Witness",
    "WitnessProof",
    "peek_client_version",
    "peek_nonce",
    "peek_run_state",
]
