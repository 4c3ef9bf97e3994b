"""Committee and witness selection exactly as the coordinator program computes it (spec 5.3)."""

from __future__ import annotations

import hashlib
import struct

SHUFFLE_ROUND_COUNT = 90
MAX_WITNESSES = 32
WITNESS_SALT = b"witness"
COMMITTEE_SALT = b"committee"
# Rust's WITNESS_QUORUM_RAIO; kept as the same f64 so truncation matches bit for bit.
_QUORUM_RATIO = 2.0 / 3.0


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def swap_or_not_shuffle(index: int, n: int, seed: bytes) -> int:
    """Position of ``index`` in the 90-round swap-or-not permutation of ``range(n)`` keyed by ``seed``.

    Raises ValueError when ``index >= n`` (the Rust code asserts, which fails the transaction).
    """
    if not 0 <= index < n:
        raise ValueError(f"swap_or_not_shuffle: index {index} not below count {n}")
    current = index
    for r in range(SHUFFLE_ROUND_COUNT):
        round_byte = bytes((r,))
        pivot = int.from_bytes(_sha256(seed, round_byte)[:8], "little") % n
        flip = (pivot + n - current) % n
        position = max(current, flip)
        # Rust takes the first 4 bytes of the u64's LE encoding: the low 32 bits.
        source = _sha256(seed, round_byte, struct.pack("<I", (position // 256) & 0xFFFFFFFF))
        bit = (source[(position % 256) // 8] >> (position % 8)) & 1
        if bit:
            current = flip
    return current


def round_seed(random_seed: int) -> bytes:
    """Base seed of a round's committee selection: sha256 of the round's u64 ``random_seed`` (LE)."""
    return _sha256(struct.pack("<Q", random_seed))


def purpose_seed(base: bytes, salt: bytes) -> bytes:
    """Seed for one purpose (``b"witness"`` or ``b"committee"``): sha256(base ‖ salt)."""
    return _sha256(base, salt)


def witness_position(index: int, clients_len: int, random_seed: int) -> int:
    """Shuffled witness position of epoch client ``index`` in a round with ``clients_len`` clients."""
    return swap_or_not_shuffle(index, clients_len, purpose_seed(round_seed(random_seed), WITNESS_SALT))


def committee_position(index: int, clients_len: int, random_seed: int) -> int:
    """Shuffled committee position of epoch client ``index`` in a round with ``clients_len`` clients."""
    return swap_or_not_shuffle(index, clients_len, purpose_seed(round_seed(random_seed), COMMITTEE_SALT))


def witness_threshold(config_witness_nodes: int) -> int:
    """Positions below this are witnesses: ``config.witness_nodes``, or 32 when it is 0."""
    return config_witness_nodes if config_witness_nodes else MAX_WITNESSES


def is_witness_position(position: int, config_witness_nodes: int) -> bool:
    """Whether a witness position elects its client (``position < witness_nodes or 32``)."""
    return position < witness_threshold(config_witness_nodes)


def is_witness(index: int, clients_len: int, random_seed: int, witness_nodes: int) -> bool:
    """Whether epoch client ``index`` is elected witness; ``witness_nodes`` = CONFIG value (0 = auto)."""
    return is_witness_position(witness_position(index, clients_len, random_seed), witness_nodes)


# Committee codes (Borsh u8 of `Committee`).
TIE_BREAKER = 0
VERIFIER = 1
TRAINER = 2


def committee_counts(clients_len: int, tie_breaker_tasks: int, verification_percent: int) -> tuple[int, int]:
    """(tie-breaker nodes, verifier nodes) of a round; the rest are trainers."""
    free = clients_len - tie_breaker_tasks
    return tie_breaker_tasks, (free * verification_percent) // 100


def committee_from_position(
    position: int, clients_len: int, tie_breaker_tasks: int = 0, verification_percent: int = 0
) -> int:
    """Committee code (0 TieBreaker, 1 Verifier, 2 Trainer) of a committee position."""
    tie_breakers, verifiers = committee_counts(clients_len, tie_breaker_tasks, verification_percent)
    if position < tie_breakers:
        return TIE_BREAKER
    if position < tie_breakers + verifiers:
        return VERIFIER
    return TRAINER


def selection_is_valid(
    clients_len: int, tie_breaker_tasks: int, config_witness_nodes: int, verification_percent: int
) -> bool:
    """The program's `CommitteeSelection::new` preconditions (else InvalidCommitteeSelection, 6020)."""
    if clients_len < tie_breaker_tasks:
        return False
    if config_witness_nodes != 0 and clients_len < config_witness_nodes:
        return False
    return verification_percent <= 100


def witness_quorum(num_witnesses: int, witness_nodes: int = 0) -> int:
    """Witnesses needed for consensus: w = ``witness_nodes`` or ``num_witnesses`` when it is 0.

    1 → 1, 2 → 2, 3 → 2, else max(1, trunc(w · 2/3)). w = 0 is unreachable in the program
    (a Rust panic); here it raises ValueError.
    """
    w = witness_nodes if witness_nodes else num_witnesses
    if w <= 0:
        raise ValueError("witness_quorum: no witnesses and witness_nodes = 0")
    if w == 1:
        return 1
    if w in (2, 3):
        return 2
    return max(1, int(w * _QUORUM_RATIO))


def effective_witness_nodes(config_witness_nodes: int, epoch_clients: int) -> int:
    """Witness count that completes a round early: config value, or min(epoch clients, 32) when 0."""
    if config_witness_nodes:
        return config_witness_nodes
    return min(epoch_clients, MAX_WITNESSES)


def tick_random_seed(unix_timestamp: int, slot: int) -> int:
    """Program-side per-instruction seed: first 8 bytes (LE u64) of sha256(i64 LE ts ‖ u64 LE slot)."""
    digest = _sha256(struct.pack("<q", unix_timestamp), struct.pack("<Q", slot))
    return int.from_bytes(digest[:8], "little")
