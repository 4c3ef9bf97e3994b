"""The log stream decoders (HTTP chunks -> frames -> lines -> LogLine), fed with plain lists of bytes."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from psyche.errors import ContainerRuntimeError
from psyche.manager.events import LogLine
from psyche.manager.logs import (
    Demuxer,
    LineSplitter,
    OutputDecoder,
    demux,
    frames,
    frames_after,
    parse_log_line,
    split_lines,
    stream_of,
    strip_timestamp,
)

STDOUT, STDERR = 1, 2


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", kind, len(payload)) + payload


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in consecutive blocks of the given sizes (the last block takes the rest)."""
    blocks, pos = [], 0
    for size in sizes:
        blocks.append(data[pos : pos + size])
        pos += size
    return [*blocks, data[pos:]] if pos < len(data) else blocks


def every_split(data: bytes) -> Iterator[list[bytes]]:
    """``data`` as two blocks, cut at every position (a header, a size line or a CRLF cut in two)."""
    for at in range(1, len(data)):
        yield [data[:at], data[at:]]


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


# -- Docker stream frames ------------------------------------------------------------------------


def test_demux_keeps_streams_apart_in_order_and_merges_runs_of_one_stream() -> None:
    data = frame(STDOUT, b"a\n") + frame(STDOUT, b"b\n") + frame(STDERR, b"e\n") + frame(STDOUT, b"c")
    assert list(demux([data])) == [("stdout", b"a\nb\n"), ("stderr", b"e\n"), ("stdout", b"c")]
    for blocks in every_split(data):
        pieces = list(demux(blocks))
        assert b"".join(p for s, p in pieces if s == "stdout") == b"a\nb\nc"
        assert b"".join(p for s, p in pieces if s == "stderr") == b"e\n"


def test_demux_treats_stdin_as_stdout_skips_empty_frames_and_raises_engine_errors() -> None:
    assert list(demux([frame(0, b"in") + frame(STDOUT, b"") + frame(STDOUT, b"out")])) == [
        ("stdout", b"inout")
    ]
    with pytest.raises(ContainerRuntimeError, match="the engine reported a log error: boom"):
        list(demux([frame(STDOUT, b"ok") + frame(3, b"boom\n")]))
    with pytest.raises(ContainerRuntimeError, match="ended inside a frame"):
        list(demux([frame(STDOUT, b"abc")[:-1]]))


def test_a_flood_of_numbered_lines_on_both_streams_survives_random_reads() -> None:
    # What DockerRuntime.logs does to the unchunked body, over 100,000 lines and random read sizes.
    rng = random.Random(7)
    body = b"".join(frame(STDERR if i % 7 == 0 else STDOUT, f"{i}\n".encode()) for i in range(100_000))
    blocks = cut(body, [rng.randint(1, 70_000) for _ in range(len(body) // 20_000)])
    decoder = OutputDecoder()
    got: list[LogLine] = []
    for stream, piece in demux(blocks):
        got += decoder.feed(stream, piece)
    got += decoder.finish()
    assert [line.text for line in got if line.stream == "stdout"] == [str(i) for i in range(100_000) if i % 7]
    assert [line.text for line in got if line.stream == "stderr"] == [str(i) for i in range(0, 100_000, 7)]


def test_demux_strips_the_engines_timestamps_when_asked_and_keeps_the_last_frame_as_sent() -> None:
    stamped = [
        frame(STDOUT, b"2024-01-02T03:04:05.123456789Z a\n"),
        frame(STDERR, b"2024-01-02T03:04:05Z b c\n"),
    ]
    demuxer = Demuxer(strip_timestamps=True)
    assert demuxer.feed(b"".join(stamped)) == [("stdout", b"a\n"), ("stderr", b"b c\n")]
    assert demuxer.last == (STDERR, b"2024-01-02T03:04:05Z b c\n")
    assert demuxer.feed(stamped[0][:5]) == []
    assert demuxer.last == (STDERR, b"2024-01-02T03:04:05Z b c\n")  # only complete frames count
    with pytest.raises(ContainerRuntimeError, match="ended inside a frame"):
        demuxer.finish()
    assert strip_timestamp(b"2024-01-02T03:04:05Z x y") == b"x y"
    assert strip_timestamp(b"nospace") == b"nospace"
    assert [stream_of(kind) for kind in (0, 1, 2)] == ["stdout", "stdout", "stderr"]


def test_frames_come_one_by_one_as_sent_across_pieces() -> None:
    data = frame(STDOUT, b"a\n") + frame(STDOUT, b"b\n") + frame(STDERR, b"c\n")
    for blocks in every_split(data):
        assert list(frames(blocks)) == [(STDOUT, b"a\n"), (STDOUT, b"b\n"), (STDERR, b"c\n")]
    with pytest.raises(ContainerRuntimeError, match="ended inside a frame"):
        list(frames([data[:-1]]))


def test_frames_after_the_anchor_are_what_a_cut_follow_missed() -> None:
    log = [(STDOUT, b"t1 a"), (STDERR, b"t2 b"), (STDOUT, b"t3 c"), (STDOUT, b"t4 d")]
    assert frames_after(log, (STDERR, b"t2 b")) == log[2:]
    assert frames_after(log, (STDOUT, b"t4 d")) == []  # the follow got everything
    assert frames_after(log, None) == log  # it got nothing: all of it is new
    assert frames_after(log, (STDOUT, b"t2 b")) is None  # same bytes, other stream: not the anchor
    assert frames_after([*log, (STDERR, b"t2 b"), (STDOUT, b"t5 e")], (STDERR, b"t2 b")) == [
        (STDOUT, b"t5 e")
    ]


# -- incremental lines ---------------------------------------------------------------------------


def test_line_splitter_returns_what_each_chunk_completes_and_the_rest_at_the_end() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\r") == ["two"]
    assert splitter.feed(b"\nthree \xe2\x9c") == []
    assert splitter.finish() == ["three \ufffd"]
    assert splitter.finish() == []


def test_output_decoder_keeps_each_streams_partial_line_apart() -> None:
    decoder = OutputDecoder()
    assert decoder.feed("stdout", b"out 1") == ()
    assert decoder.feed("stderr", b"err 1\nerr") == (LogLine("err 1", "stderr"),)
    assert decoder.feed("stdout", b" more\nout 2\n") == (LogLine("out 1 more"), LogLine("out 2"))
    assert decoder.feed("stdout", b"tail") == ()
    assert decoder.finish() == (LogLine("tail"), LogLine("err", "stderr"))


def test_output_decoder_parses_timestamps_when_asked() -> None:
    decoder = OutputDecoder(timestamped=True)
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert decoder.feed("stderr", b"2024-01-02T03:04:05Z hi\n") == (LogLine("hi", "stderr", when),)
