"""Pure decoders for the engine's log stream: Docker frames -> lines -> LogLine events."""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Literal

from psyche.errors import ContainerRuntimeError
from psyche.manager.events import LogLine

Stream = Literal["stdout", "stderr"]

# Text waiting this long for its newline is emitted as it is, so one endless line (say, a progress
# bar written without newlines) can neither hold output back nor grow the buffer without bound.
MAX_LINE_CHARS = 65536

_NEWLINE = re.compile(r"\r\n|\r|\n")
# Docker's RFC 3339 timestamps carry nanoseconds; datetime keeps microseconds.
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) ?")
# Docker's stream frame header: stream type (0 stdin, 1 stdout, 2 stderr, 3 engine error), 3 zero
# bytes, payload length (big-endian u32).
_FRAME = struct.Struct(">BxxxL")
_SYSTEM_ERROR = 3
# RFC 3339 with nanoseconds and a zone offset, plus the space after it.
_MAX_TIMESTAMP = 40

Frame = tuple[int, bytes]  # (stream type, payload as the engine sent it)


class Demuxer:
    """Docker's multiplexed stream (8-byte frame headers) -> ``(stream, payload)`` runs, fed piece by piece.

    Consecutive frames of one stream within a piece come out as one payload, so a flood of short lines
    costs one item per read, not one per line. Frames may straddle pieces. stdin frames count as stdout
    (as docker-py does); an engine error frame raises ContainerRuntimeError. With ``strip_timestamps``
    each payload loses the ``<RFC 3339 time> `` prefix the engine adds for ``timestamps=1``. ``last`` is
    the last complete frame as sent, the anchor for catching up (see frames_after).
    """

    def __init__(self, *, strip_timestamps: bool = False) -> None:
        self._strip = strip_timestamps
        self._pending = b""
        self.last: Frame | None = None

    def feed(self, piece: bytes) -> list[tuple[Stream, bytes]]:
        """The payload runs of every frame that ``piece`` completes, in order."""
        data = self._pending + piece if self._pending else piece
        end = len(data)
        pos = last = 0
        out: list[tuple[Stream, bytes]] = []
        current: Stream = "stdout"
        parts: list[bytes] = []
        while end - pos >= 8:
            kind, size = _FRAME.unpack_from(data, pos)
            start = pos + 8
            stop = start + size
            if stop > end:
                break
            if kind == _SYSTEM_ERROR:
                message = data[start:stop].decode(errors="replace").strip()
                raise ContainerRuntimeError(f"the engine reported a log error: {message}")
            stream: Stream = "stderr" if kind == 2 else "stdout"
            if stream != current:
                if parts:
                    out.append((current, b"".join(parts)))
                    parts = []
                current = stream
            if self._strip:
                space = data.find(b" ", start, min(stop, start + _MAX_TIMESTAMP))
                parts.append(data[space + 1 if space >= 0 else start : stop])
            else:
                parts.append(data[start:stop])
            last = pos
            pos = stop
        if pos:
            kind, size = _FRAME.unpack_from(data, last)
            self.last = (kind, data[last + 8 : last + 8 + size])
        if parts:
            out.append((current, b"".join(parts)))
        self._pending = data[pos:]
        return out

    def finish(self) -> None:
        """The stream ended: raises ContainerRuntimeError if it ended inside a frame."""
        if self._pending:
            raise ContainerRuntimeError(
                f"the engine's log stream ended inside a frame ({len(self._pending)} bytes)"
            )


def demux(body: Iterable[bytes], *, strip_timestamps: bool = False) -> Iterator[tuple[Stream, bytes]]:
    """Every ``(stream, payload)`` run of a multiplexed stream read in arbitrary pieces (see Demuxer)."""
    demuxer = Demuxer(strip_timestamps=strip_timestamps)
    for piece in body:
        yield from demuxer.feed(piece)
    demuxer.finish()


def frames(body: Iterable[bytes]) -> Iterator[Frame]:
    """Each frame of a multiplexed stream, one by one, as sent: ``(stream type, payload)``."""
    pending = b""
    for piece in body:
        data = pending + piece if pending else piece
        end = len(data)
        pos = 0
        while end - pos >= 8:
            kind, size = _FRAME.unpack_from(data, pos)
            if pos + 8 + size > end:
                break
            yield kind, data[pos + 8 : pos + 8 + size]
            pos += 8 + size
        pending = data[pos:]
    if pending:
        raise ContainerRuntimeError(f"the engine's log stream ended inside a frame ({len(pending)} bytes)")


def frames_after(log: Iterable[Frame], anchor: Frame | None) -> list[Frame] | None:
    """The frames of ``log`` after the last one equal to ``anchor``; None when ``anchor`` is not in it.

    With timestamps on, a frame carries its nanosecond time, so equal frames are the same log entry.
    No anchor (nothing was read yet) means the whole log is new.
    """
    found = anchor is None
    after: list[Frame] = []
    for frame in log:
        if frame == anchor:
            found = True
            after.clear()
        elif found:
            after.append(frame)
    return after if found else None


def stream_of(kind: int) -> Stream:
    """The output stream a frame's type byte names (stdin, 0, is shown as stdout)."""
    return "stderr" if kind == 2 else "stdout"


def strip_timestamp(payload: bytes) -> bytes:
    """A timestamped payload (``timestamps=1``) without its ``<RFC 3339 time> `` prefix."""
    space = payload.find(b" ", 0, _MAX_TIMESTAMP)
    return payload[space + 1 :] if space >= 0 else payload


class LineSplitter:
    """Complete text lines from arbitrary byte chunks, fed one chunk at a time (see split_lines)."""

    def __init__(self, *, max_chars: int = MAX_LINE_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max = max_chars
        self._buffer = ""
        self._skip_lf = False  # the previous chunk ended with '\r'; a leading '\n' belongs to it

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that ``chunk`` completes, oldest first."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        parts = _NEWLINE.split(self._buffer + text if self._buffer else text)
        buffer = parts.pop()
        while len(buffer) >= self._max:
            parts.append(buffer[: self._max])
            buffer = buffer[self._max :]
        self._buffer = buffer
        return parts

    def finish(self) -> list[str]:
        """The final unterminated line, if any (the stream ended)."""
        buffer = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        return [buffer] if buffer else []


def split_lines(chunks: Iterable[bytes], *, max_chars: int = MAX_LINE_CHARS) -> Iterator[str]:
    """Yield complete text lines from arbitrary byte chunks.

    Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (progress-bar redraws), even when the two bytes
    of ``\\r\\n`` or the bytes of one UTF-8 character fall in different chunks. Invalid UTF-8 becomes
    U+FFFD. A final unterminated line is yielded when the chunks end.
    """
    splitter = LineSplitter(max_chars=max_chars)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


class OutputDecoder:
    """Both streams' byte chunks -> LogLine batches: one LineSplitter per stream, then parse_log_line."""

    def __init__(self, *, timestamped: bool = False, max_chars: int = MAX_LINE_CHARS) -> None:
        self._timestamped = timestamped
        self._splitters = {stream: LineSplitter(max_chars=max_chars) for stream in ("stdout", "stderr")}

    def feed(self, stream: Stream, chunk: bytes) -> tuple[LogLine, ...]:
        """The lines ``chunk`` completes on ``stream``."""
        return self._parse(stream, self._splitters[stream].feed(chunk))

    def feed_all(self, chunks: Iterable[tuple[Stream, bytes]]) -> tuple[LogLine, ...]:
        """The lines a run of ``(stream, chunk)`` completes, in order (one batch)."""
        lines: list[LogLine] = []
        for stream, chunk in chunks:
            lines += self._parse(stream, self._splitters[stream].feed(chunk))
        return tuple(lines)

    def finish(self) -> tuple[LogLine, ...]:
        """Both streams ended: their unterminated last lines (stdout's first)."""
        return tuple(
            line for stream, s in self._splitters.items() for line in self._parse(stream, s.finish())
        )

    def _parse(self, stream: str, texts: list[str]) -> tuple[LogLine, ...]:
        if not self._timestamped:  # the common case, kept free of a call per line
            return tuple([LogLine(text, stream) for text in texts])
        return tuple([parse_log_line(text, stream=stream, timestamped=True) for text in texts])


def parse_log_line(line: str, *, stream: str = "stdout", timestamped: bool = False) -> LogLine:
    """A LogLine for one container line; with ``timestamped`` the Docker timestamp prefix is parsed off.

    A line that was requested with timestamps but does not start with one is kept whole.
    """
    if timestamped:
        match = _TIMESTAMP.match(line)
        if match:
            date, fraction, zone = match.groups()
            micros = (fraction or "0")[:6].ljust(6, "0")
            offset = "+00:00" if zone == "Z" else zone
            try:
                when = datetime.fromisoformat(f"{date}.{micros}{offset}").astimezone(UTC)
            except ValueError:
                return LogLine(text=line, stream=stream)
            return LogLine(text=line[match.end() :], stream=stream, timestamp=when)
    return LogLine(text=line, stream=stream)
