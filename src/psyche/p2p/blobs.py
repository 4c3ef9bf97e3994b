"""A content-addressed, thread-safe, in-memory blob store: sha256 -> bytes, tagged for dropping.

A blob carries one or more tags (a round height, or a name such as "model"); it leaves the store when
its last tag is dropped. ``drop_before(n)`` drops every integer tag below ``n`` (old rounds) and leaves
named tags alone.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import TypeAlias

Tag: TypeAlias = int | str


class BlobStore:
    """sha256 -> bytes; ``put`` under a tag, ``get`` by hash, drop by tag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[bytes, bytes] = {}
        self._tags: dict[bytes, set[Tag]] = {}

    def put(self, data: bytes, tag: Tag) -> bytes:
        """Store ``data`` under ``tag``; its sha256."""
        digest = hashlib.sha256(data).digest()
        with self._lock:
            self._blobs.setdefault(digest, bytes(data))
            self._tags.setdefault(digest, set()).add(tag)
        return digest

    def get(self, digest: bytes) -> bytes | None:
        """The blob whose sha256 is ``digest``, or None."""
        with self._lock:
            return self._blobs.get(digest)

    def __contains__(self, digest: object) -> bool:
        with self._lock:
            return digest in self._blobs

    def __len__(self) -> int:
        with self._lock:
            return len(self._blobs)

    def total_bytes(self) -> int:
        """The bytes held, all blobs together."""
        with self._lock:
            return sum(len(b) for b in self._blobs.values())

    def drop_tag(self, tag: Tag) -> int:
        """Remove ``tag`` from every blob; the number of blobs that left the store."""
        return self._drop(lambda t: t == tag)

    def drop_before(self, height: int) -> int:
        """Remove every integer tag below ``height``; the number of blobs that left the store."""
        return self._drop(lambda t: isinstance(t, int) and t < height)

    def _drop(self, match: Callable[[Tag], bool]) -> int:
        gone = 0
        with self._lock:
            for digest in list(self._tags):
                tags = {t for t in self._tags[digest] if not match(t)}
                if tags:
                    self._tags[digest] = tags
                else:
                    del self._tags[digest], self._blobs[digest]
                    gone += 1
        return gone
