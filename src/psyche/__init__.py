"""Psyche decentralized training, seen from a GPU owner's machine."""

__version__ = "0.2.0"
