"""Read a file the user named (a .env, a key file) with limits: bounded size, bounded wait, bounded nesting.

A path from the user may be anything: a huge file, ``/dev/zero`` (endless), a FIFO nobody writes to
(an endless wait), a directory. ``read_bounded`` reads a regular file up to ``limit`` bytes and a pipe or
character device (``<(sops -d .env)``, ``/dev/null``) until end of file, at most ``limit`` bytes and
``wait_s`` seconds; anything else is refused. ``json_nesting`` measures how deep JSON text nests before a
recursive parser sees it. Callers turn ``InputRefused`` into their own one-line error.
"""

from __future__ import annotations

import errno
import os
import re
import select
import stat
import time
from pathlib import Path

ENV_FILE_MAX_BYTES = 1024 * 1024
KEY_FILE_MAX_BYTES = 64 * 1024
PIPE_WAIT_S = 5.0
_CHUNK = 64 * 1024
_JSON_SIGNIFICANT = re.compile(r'[][{}"\\]|(?<=\\).', re.DOTALL)


class InputRefused(ValueError):
    """A file was refused; ``str()`` is a short reason ("larger than 64 KiB"), never any content."""


def size_text(limit: int) -> str:
    """1048576 -> '1 MiB', 65536 -> '64 KiB'."""
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


def read_bounded(path: Path, limit: int, *, wait_s: float = PIPE_WAIT_S) -> bytes:
    """The bytes of ``path``; InputRefused when over ``limit``, not a file or pipe, or silent ``wait_s`` s.

    OSError (no such file, permission, a directory) passes through for the caller to word.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer turns up.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.set_blocking(fd, True)
            size = os.fstat(fd).st_size
            if size > limit:
                raise InputRefused(f"{size} bytes, larger than {size_text(limit)}")
            data = _read_file(fd, limit)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            data = _read_stream(fd, limit, wait_s, "a FIFO" if stat.S_ISFIFO(mode) else "a device")
        elif stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        else:
            raise InputRefused("not a regular file")
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputRefused(f"larger than {size_text(limit)}")
    return data


def _read_file(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got <= limit:
        chunk = os.read(fd, min(_CHUNK, limit + 1 - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_stream(fd: int, limit: int, wait_s: float, kind: str) -> bytes:
    # Read only when poll says so: a FIFO without a writer reads as end of file at once, and poll waits
    # until one has written or closed.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + wait_s
    chunks: list[bytes] = []
    got = 0
    while got <= limit:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise InputRefused(f"{kind} that did not reach its end within {wait_s:g} s")
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - got))
        except BlockingIOError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def json_nesting(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest (0 for a scalar); strings are skipped.

    One pass, non-recursive, so it is safe on any input (a regex skipping strings went quadratic on
    unterminated ones); text that is not JSON gets a best-effort count.
    """
    depth = deepest = 0
    in_string = escaped = False
    for match in _JSON_SIGNIFICANT.finditer(text):
        char = match.group()
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
