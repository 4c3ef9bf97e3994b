"""``python -m psyche.localnet``: the localnet command without the run-manager CLI around it."""

from __future__ import annotations

from psyche.localnet.cli import localnet

if __name__ == "__main__":
    localnet()
