"""What the protocol asks of the runner (chain sends, trainer work, exit) and what training answers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from solders.pubkey import Pubkey

from psyche.chain.accounts.state import Bloom, NodeIdentity, WitnessProof
from psyche.chain.instructions.args import WitnessMetadata

RoundKey = tuple[int, int]  # (epoch, round height): unique within a run


# ------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendJoin:
    """Send join_run with our identity and the authorization PDA."""


@dataclass(frozen=True, slots=True)
class SendTick:
    """Send tick: the simulated state machine would move now."""


@dataclass(frozen=True, slots=True)
class SendWarmupWitness:
    """Send warmup_witness: our model is ready."""

    epoch: int
    proof: WitnessProof


@dataclass(frozen=True, slots=True)
class SendWitness:
    """Send witness for the round ``key``."""

    key: RoundKey
    proof: WitnessProof
    participant_bloom: Bloom
    broadcast_bloom: Bloom
    broadcast_merkle: bytes
    metadata: WitnessMetadata


@dataclass(frozen=True, slots=True)
class SendHealthCheck:
    """Send health_check: ``accused`` was a trainer of the previous round that too few witnesses saw."""

    key: RoundKey
    accused: NodeIdentity
    committee: int
    position: int
    index: int


@dataclass(frozen=True, slots=True)
class AnnounceWarmup:
    """DisTrO runs: tell the epoch's peers (signed P2P broadcast) that our model is ready for ``epoch``."""

    epoch: int


@dataclass(frozen=True, slots=True)
class ApplyResults:
    """DisTrO runs: apply the results of round ``source`` its next round's witnesses agreed on; the runner
    answers with ``on_applied``."""

    source: RoundKey


@dataclass(frozen=True, slots=True)
class PrepareModel:
    """Load or keep the model for ``epoch`` (warmup init); the runner answers with ``on_prepared``."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Train:
    """Train one step on samples ``start..end`` (inclusive); the runner answers with ``on_trained``."""

    key: RoundKey
    step: int
    start: int
    end: int

    @property
    def indices(self) -> range:
        return range(self.start, self.end + 1)


@dataclass(frozen=True, slots=True)
class SaveCheckpoint:
    """Cooldown: save the model for the epoch that ends at ``step``."""

    epoch: int
    step: int


@dataclass(frozen=True, slots=True)
class ReadVersion:
    """Re-read the run's client_version over RPC (its change bumps no nonce, so no update announces it)."""


@dataclass(frozen=True, slots=True)
class Exit:
    """Stop the client with ``code`` (0 finished, 1 unrecoverable, 10 version mismatch)."""

    code: int
    reason: str


Send = SendJoin | SendTick | SendWarmupWitness | SendWitness | SendHealthCheck
Action = Send | PrepareModel | Train | ApplyResults | AnnounceWarmup | SaveCheckpoint | ReadVersion | Exit


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    """What a training step produced: its loss and speed, and the commitment (hash) of its result."""

    loss: float
    tokens: int
    tokens_per_second: float
    commitment: bytes
    efficiency: float = 0.0


class SharingView(Protocol):
    """What the protocol reads of the P2P result exchange (DisTrO runs); the runner owns the exchange and
    calls ``ClientProtocol.on_sharing`` whenever it changes."""

    def verified_batches(self, key: RoundKey) -> set[tuple[int, int]]:
        """The batches of round ``key`` whose payload we downloaded and verified (our own included)."""

    def witness_content(self, key: RoundKey, seed: bytes) -> tuple[Bloom, Bloom, bytes]:
        """(participant bloom, broadcast bloom, broadcast merkle root) over round ``key``'s results."""

    def warmup_ready(self, epoch: int) -> set[bytes]:
        """The P2P identities that announced their model ready for ``epoch`` (ours included)."""


# ------------------------------------------------------------------------------------------- helpers


def participant_hash(signer: Pubkey) -> bytes:
    """What a participant bloom holds for a trainer: sha256 of its signer key."""
    return hashlib.sha256(bytes(signer)).digest()


def send_name(sent: Send) -> str:
    """The instruction a send action carries, for log lines."""
    names = {
        SendJoin: "join_run",
        SendTick: "tick",
        SendWarmupWitness: "warmup_witness",
        SendWitness: "witness",
        SendHealthCheck: "health_check",
    }
    return names[type(sent)]
