"""Log byte chunks -> lines -> LogLine, fed with plain lists of bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from psyche.manager.events import LogLine
from psyche.manager.logs import parse_log_line, split_lines


def lines(*chunks: bytes, max_chars: int = 65536) -> list[str]:
    return list(split_lines(chunks, max_chars=max_chars))


def test_lines_split_across_chunks_are_joined() -> None:
    assert lines(b"hel", b"lo\nwor", b"ld\n") == ["hello", "world"]


def test_crlf_and_lone_cr_end_lines_even_split_between_chunks() -> None:
    assert lines(b"a\r\nb\r", b"\nc\rd\n") == ["a", "b", "c", "d"]


def test_a_cr_at_a_chunk_end_followed_by_text_is_one_break() -> None:
    assert lines(b"50%\r", b"100%\n") == ["50%", "100%"]


def test_a_utf8_character_split_between_chunks_survives() -> None:
    data = "wörld ✓\n".encode()
    assert lines(*(data[i : i + 1] for i in range(len(data)))) == ["wörld ✓"]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert lines(b"bad \xff\xfe byte\n") == ["bad \ufffd\ufffd byte"]


def test_a_final_unterminated_line_is_kept_and_empty_lines_are_lines() -> None:
    assert lines(b"a\n\nb") == ["a", "", "b"]
    assert lines(b"") == []
    assert lines(b"\xc3") == ["\ufffd"]  # a character cut off by the end of the stream


def test_an_endless_line_is_flushed_in_pieces_while_it_waits_for_its_end() -> None:
    # Only the part still waiting for a newline is cut; a newline ends the rest as usual.
    assert lines(b"x" * 10, b"y" * 5 + b"\n", max_chars=4) == ["xxxx", "xxxx", "xxyyyyy"]


def test_many_lines_none_lost() -> None:
    data = b"".join(f"line {i}\n".encode() for i in range(10000))
    chunks = [data[i : i + 4093] for i in range(0, len(data), 4093)]
    assert lines(*chunks) == [f"line {i}" for i in range(10000)]


def test_parse_without_timestamps_keeps_the_line() -> None:
    assert parse_log_line("2024-01-02T03:04:05Z looks like a stamp") == LogLine(
        "2024-01-02T03:04:05Z looks like a stamp"
    )
    assert parse_log_line("oops", stream="stderr") == LogLine("oops", "stderr")


@pytest.mark.parametrize(
    ("line", "text", "when"),
    [
        ("2024-01-02T03:04:05.123456789Z hello", "hello", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2024-01-02T03:04:05Z  two spaces", " two spaces", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T05:04:05.5+02:00 tz", "tz", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("2024-01-02T03:04:05.1Z", "", datetime(2024, 1, 2, 3, 4, 5, 100000, tzinfo=UTC)),
    ],
)
def test_parse_docker_timestamps(line: str, text: str, when: datetime) -> None:
    assert parse_log_line(line, timestamped=True) == LogLine(text, "stdout", when)


def test_a_line_without_a_stamp_when_stamps_were_asked_is_kept_whole() -> None:
    assert parse_log_line("no stamp here", timestamped=True) == LogLine("no stamp here")
    assert parse_log_line("2024-13-45T03:04:05Z bad date", timestamped=True) == LogLine(
        "2024-13-45T03:04:05Z bad date"
    )
