"""Pure generators that turn Docker log byte chunks into lines and lines into LogLine events."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from psyche.manager.events import LogLine

# Text waiting this long for its newline is emitted as it is, so one endless line (say, a progress
# bar written without newlines) can neither hold output back nor grow the buffer without bound.
MAX_LINE_CHARS = 65536

_NEWLINE = re.compile(r"\r\n|\r|\n")
# Docker's RFC 3339 timestamps carry nanoseconds; datetime keeps microseconds.
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) ?")


def split_lines(chunks: Iterable[bytes], *, max_chars: int = MAX_LINE_CHARS) -> Iterator[str]:
    """Yield complete text lines from arbitrary byte chunks.

    Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (progress-bar redraws), even when the two bytes
    of ``\\r\\n`` or the bytes of one UTF-8 character fall in different chunks. Invalid UTF-8 becomes
    U+FFFD. A final unterminated line is yielded when the chunks end.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buffer = ""
    skip_lf = False  # the previous chunk ended with '\r'; a leading '\n' belongs to it
    for chunk in chunks:
        text = decoder.decode(chunk)
        if not text:
            continue
        if skip_lf and text.startswith("\n"):
            text = text[1:]
        skip_lf = text.endswith("\r")
        buffer += text
        parts = _NEWLINE.split(buffer)
        buffer = parts.pop()
        yield from parts
        while len(buffer) >= max_chars:
            yield buffer[:max_chars]
            buffer = buffer[max_chars:]
    buffer += decoder.decode(b"", final=True)
    if buffer:
        yield buffer


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
