"""The client's P2P identity key: given (hex or file) or derived from sha256(run_id ‖ wallet secret)."""

from __future__ import annotations

import hashlib

from solders.keypair import Keypair


class P2PIdentity:
    """An ed25519 identity; only ``public`` (the 32 bytes sent in join_run) is ever shown."""

    __slots__ = ("_keypair", "public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"an identity seed is 32 bytes, got {len(seed)}")
        self._keypair = Keypair.from_seed(seed)
        self.public = bytes(self._keypair.pubkey())

    def sign(self, message: bytes) -> bytes:
        """ed25519 signature of ``message`` (the commitment signature of a training result)."""
        return bytes(self._keypair.sign_message(message))

    def __repr__(self) -> str:
        return f"P2PIdentity(public={self.public.hex()[:16]}...)"

    def __reduce__(self) -> str:
        raise TypeError("a P2PIdentity cannot be pickled")


def derive_identity(run_id: str, wallet: Keypair, given: bytes | None = None) -> P2PIdentity:
    """``given`` when set, else the seed sha256(run_id ‖ wallet secret seed).

    The reference feeds that digest to ChaCha20 to draw the key; we use the digest as the ed25519 seed
    directly. Both are deterministic per (run, wallet); the bytes differ, which only matters between
    our clients and the Rust ones, which never share a P2P network with ours.
    """
    if given is not None:
        return P2PIdentity(given)
    return P2PIdentity(hashlib.sha256(run_id.encode() + wallet.secret()).digest())
