"""The transport's errors, a branch of the project's tree (psyche.errors.RunManagerError).

RunManagerError
└── P2PError                 something about the peer-to-peer transport
    ├── PeerRefused          bytes from a peer were refused; ``reason`` is a short stable key for counting
    └── FetchFailed          no peer delivered a blob (or a model); the message says why, in one line
"""

from __future__ import annotations

from psyche.errors import RunManagerError


class P2PError(RunManagerError):
    """Base of every transport error."""


class PeerRefused(P2PError):
    """A message, record, manifest or blob from a peer was refused.

    ``reason`` is a short key ("bad-signature", "not-allowed", "too-large", "malformed", "hash-mismatch",
    ...) that the node counts in its stats; ``detail`` says more, never quoting the peer's bytes at length.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class FetchFailed(P2PError):
    """No peer delivered what was asked for; the message lists what each attempt got, in one line."""
