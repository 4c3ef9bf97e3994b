"""The value types inside the coordinator account: rounds, witnesses, Bloom filters, epoch and ledger clients.

Witness, WitnessProof, Bloom and NodeIdentity also have the Borsh forms that witness/warmup_witness/join_run/
health_check instructions carry (spec onchain.md 4.3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from solders.pubkey import Pubkey

from psyche.chain.accounts.zerocopy import zc_pack
from psyche.chain.layout import Reader

NUM_ROUNDS = 4
WITNESS_ZC = struct.Struct("<QQB7x8Q16Q8Q16Q32s")
_PROOF_BORSH = struct.Struct("<QQB")
_BLOOM = struct.Struct("<8Q16Q")


class ClientState(IntEnum):
    """An epoch client's standing (``ClientState``); only Healthy clients train and witness."""

    Healthy = 0
    Dropped = 1
    Withdrawn = 2
    Ejected = 3


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """A client's id: its signer and p2p key (Borsh 64 bytes, as join_run and health_check send it)."""

    signer: Pubkey
    p2p_identity: Pubkey

    def to_borsh(self) -> bytes:
        return bytes(self.signer) + bytes(self.p2p_identity)


@dataclass(frozen=True, slots=True)
class Bloom:
    """A Bloom filter: 8 u64 keys, 16 u64 words of bits (192 bytes in both codecs)."""

    keys: tuple[int, ...] = (0,) * 8
    bits: tuple[int, ...] = (0,) * 16

    def to_borsh(self) -> bytes:
        if len(self.keys) != 8 or len(self.bits) != 16:
            raise ValueError("a Bloom has exactly 8 keys and 16 bit words")
        try:
            return _BLOOM.pack(*self.keys, *self.bits)
        except struct.error as exc:
            raise ValueError(f"bloom value out of range: {exc}") from exc

    @classmethod
    def from_borsh(cls, r: Reader) -> Bloom:
        v = _BLOOM.unpack(r.raw(_BLOOM.size))
        return cls(v[:8], v[8:])


@dataclass(frozen=True, slots=True)
class WitnessProof:
    """Where a witness sits in the committee: ``position`` in the shuffle, ``index`` into the epoch's
    clients."""

    position: int = 0
    index: int = 0  # into the epoch's clients
    witness: bool = False

    def to_borsh(self) -> bytes:
        try:
            return _PROOF_BORSH.pack(self.position, self.index, int(self.witness))
        except struct.error as exc:
            raise ValueError(f"witness proof value out of range: {exc}") from exc

    @classmethod
    def from_borsh(cls, r: Reader) -> WitnessProof:
        return cls(r.u64(), r.u64(), r.boolean())


@dataclass(frozen=True, slots=True)
class Witness:
    """What a witness saw in a round: who took part, whose results arrived, and their merkle root."""

    proof: WitnessProof = field(default_factory=WitnessProof)
    participant_bloom: Bloom = field(default_factory=Bloom)
    broadcast_bloom: Bloom = field(default_factory=Bloom)
    broadcast_merkle: bytes = bytes(32)

    def to_borsh(self) -> bytes:
        """The four Borsh args of warmup_witness (433 bytes); witness appends its metadata."""
        if len(self.broadcast_merkle) != 32:
            raise ValueError("broadcast_merkle must be 32 bytes")
        p, b1, b2 = self.proof, self.participant_bloom, self.broadcast_bloom
        return p.to_borsh() + b1.to_borsh() + b2.to_borsh() + bytes(self.broadcast_merkle)

    @classmethod
    def from_borsh(cls, r: Reader) -> Witness:
        return cls(WitnessProof.from_borsh(r), Bloom.from_borsh(r), Bloom.from_borsh(r), r.raw(32))

    @classmethod
    def _unpack(cls, data: bytes, off: int) -> Witness:
        v = WITNESS_ZC.unpack_from(data, off)
        proof = WitnessProof(v[0], v[1], v[2] != 0)
        return cls(proof, Bloom(v[3:11], v[11:27]), Bloom(v[27:35], v[35:51]), v[51])

    def _pack(self, buf: bytearray, off: int) -> None:
        p, b1, b2 = self.proof, self.participant_bloom, self.broadcast_bloom
        if len(b1.keys) + len(b2.keys) != 16 or len(b1.bits) + len(b2.bits) != 32:
            raise ValueError("a Bloom has exactly 8 keys and 16 bit words")
        values = (p.position, p.index, int(p.witness), *b1.keys, *b1.bits, *b2.keys, *b2.bits)
        zc_pack(buf, WITNESS_ZC, off, *values, bytes(self.broadcast_merkle))


@dataclass(frozen=True, slots=True)
class Round:
    """One training round (``Round``): its witnesses, data index, seed and height."""

    witnesses: tuple[Witness, ...] = ()
    data_index: int = 0
    random_seed: int = 0
    height: int = 0
    clients_len: int = 0
    tie_breaker_tasks: int = 0


@dataclass(frozen=True, slots=True)
class EpochClient:
    """A client selected for the epoch (72 bytes); its identity compares by signer only on chain."""

    signer: Pubkey
    p2p_identity: Pubkey
    state: ClientState = ClientState.Healthy
    exited_height: int = 0


@dataclass(frozen=True, slots=True)
class EpochState:
    """The current epoch: its rounds (a ring of NUM_ROUNDS, ``rounds_head`` the newest), clients and
    timing."""

    rounds: tuple[Round, ...] = (Round(),) * NUM_ROUNDS
    clients: tuple[EpochClient, ...] = ()
    exited_clients: tuple[EpochClient, ...] = ()
    rounds_head: int = 0
    start_step: int = 0
    last_step: int = 0  # 0 = not set
    start_timestamp: int = 0
    first_round: bool = False
    cold_start_epoch: bool = False


@dataclass(frozen=True, slots=True)
class LedgerClient:
    """A key that ever joined (the Solana ``Client``, 96 bytes) with its points."""

    signer: Pubkey
    p2p_identity: Pubkey
    earned: int = 0
    slashed: int = 0
    active: int = 0  # == next_active means "joined for the next epoch"


@dataclass(frozen=True, slots=True)
class EpochRates:
    """The reward and penalty rates of an epoch, in points."""

    earning_rate_total_shared: int = 0
    slashing_rate_per_client: int = 0


@dataclass(frozen=True, slots=True)
class ClientsState:
    """The ledger of every client that ever joined, with the rates for this epoch and the next."""

    clients: tuple[LedgerClient, ...] = ()
    next_active: int = 0
    current_epoch_rates: EpochRates = field(default_factory=EpochRates)
    future_epoch_rates: EpochRates = field(default_factory=EpochRates)
