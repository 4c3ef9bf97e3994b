"""Data sources: Dummy determinism, Local files, and Http range reads against a real loopback server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numpy")

import numpy as np  # noqa: E402

from psyche.chain.accounts.model import (  # noqa: E402
    DataLocation,
    DataLocationKind,
    Gcp,
    HttpDataLocation,
    NumberedFiles,
    SingleUrl,
    TokenSize,
)
from psyche.client.data import DummySource, TokenFileSource, data_source, http_urls  # noqa: E402
from psyche.errors import ConfigError, DataError  # noqa: E402

SEQ = 8


class _Files:
    """What the loopback server serves, and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.fail_next = 0
        self.honour_range = True


def _handler(state: _Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _serve(self, body: bool) -> None:
            if state.fail_next > 0:
                state.fail_next -= 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = state.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            rng = self.headers.get("Range")
            if body:
                state.ranges.append(rng)
            status, payload = 200, data
            if rng and state.honour_range:
                first, last = (int(x) for x in rng.removeprefix("bytes=").split("-"))
                status, payload = 206, data[first : last + 1]
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve(True)

        def do_HEAD(self) -> None:
            self._serve(False)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, _Files]]:
    state = _Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _tokens(n: int, vocab: int = 500, dtype: str = "<u2") -> np.ndarray:
    return (np.arange(n, dtype=np.int64) * 7 % vocab).astype(dtype)


def _http(url: str, width: TokenSize = TokenSize.TwoBytes, shuffle: bytes | None = None) -> DataLocation:
    return DataLocation(DataLocationKind.Http, HttpDataLocation(SingleUrl(url), width, shuffle))


def test_dummy_is_deterministic_per_index_and_inside_the_vocabulary() -> None:
    a = DummySource(SEQ, 100, seed=3).fetch([5, 6, 5])
    b = DummySource(SEQ, 100, seed=3).fetch([5])
    assert a.shape == (3, SEQ + 1) and a.dtype == torch.int64
    assert torch.equal(a[0], b[0]) and torch.equal(a[0], a[2])
    assert not torch.equal(a[0], a[1])
    assert int(a.max()) < 100 and int(a.min()) >= 0
    assert not torch.equal(DummySource(SEQ, 100, seed=4).fetch([5])[0], b[0])


def test_http_source_reads_sequences_with_one_range_request_per_contiguous_run(
    server: tuple[str, _Files],
) -> None:
    base, state = server
    tokens = _tokens(10 * SEQ + 1)
    state.files["/data.bin"] = tokens.tobytes()
    source = data_source(_http(f"{base}/data.bin"), seq_len=SEQ, vocab_size=500)
    batch = source.fetch([2, 3, 4, 7])
    expected = np.stack([tokens[i * SEQ : i * SEQ + SEQ + 1] for i in (2, 3, 4, 7)]).astype(np.int64)
    assert np.array_equal(batch.numpy(), expected)
    # 2..4 are one run: bytes of tokens [16, 41) in one request; 7 is another.
    assert state.ranges == [
        f"bytes={2 * SEQ * 2}-{(5 * SEQ + 1) * 2 - 1}",
        f"bytes={7 * SEQ * 2}-{(8 * SEQ + 1) * 2 - 1}",
    ]


def test_http_source_four_byte_tokens_and_wraparound(server: tuple[str, _Files]) -> None:
    base, state = server
    tokens = _tokens(3 * SEQ + 1, vocab=70000, dtype="<u4")
    state.files["/wide.bin"] = tokens.tobytes()
    source = data_source(_http(f"{base}/wide.bin", TokenSize.FourBytes), seq_len=SEQ, vocab_size=70000)
    batch = source.fetch([4])  # 3 sequences in the file: index 4 wraps to 1
    assert np.array_equal(batch.numpy()[0], tokens[SEQ : 2 * SEQ + 1].astype(np.int64))


def test_http_source_slices_a_full_body_when_the_server_ignores_range(server: tuple[str, _Files]) -> None:
    base, state = server
    state.honour_range = False
    tokens = _tokens(4 * SEQ + 1)
    state.files["/plain.bin"] = tokens.tobytes()
    batch = data_source(_http(f"{base}/plain.bin"), seq_len=SEQ, vocab_size=500).fetch([1])
    assert np.array_equal(batch.numpy()[0], tokens[SEQ : 2 * SEQ + 1].astype(np.int64))


def test_http_source_retries_server_errors_with_growing_pauses(server: tuple[str, _Files]) -> None:
    base, state = server
    state.files["/d.bin"] = _tokens(2 * SEQ + 1).tobytes()
    state.fail_next = 2
    pauses: list[float] = []
    source = data_source(_http(f"{base}/d.bin"), seq_len=SEQ, vocab_size=500, sleep=pauses.append)
    assert source.fetch([0]).shape == (1, SEQ + 1)
    assert pauses == [2.0, 4.0]


def test_http_source_gives_up_after_eight_attempts(server: tuple[str, _Files]) -> None:
    base, state = server
    state.fail_next = 100
    source = data_source(_http(f"{base}/d.bin"), seq_len=SEQ, vocab_size=500, sleep=lambda s: None)
    with pytest.raises(DataError, match="failed after 8 attempts: HTTP 503"):
        source.fetch([0])


def test_http_source_missing_file_is_a_data_error(server: tuple[str, _Files]) -> None:
    base, _ = server
    source = data_source(_http(f"{base}/nope.bin"), seq_len=SEQ, vocab_size=500)
    with pytest.raises(DataError, match="HTTP 404"):
        source.fetch([0])


def test_seeded_shuffle_is_a_deterministic_permutation(server: tuple[str, _Files]) -> None:
    base, state = server
    tokens = _tokens(20 * SEQ + 1, vocab=20 * SEQ + 1)
    state.files["/s.bin"] = tokens.tobytes()
    loc = _http(f"{base}/s.bin", shuffle=bytes(range(32)))
    first = data_source(loc, seq_len=SEQ, vocab_size=1000).fetch(list(range(20)))
    again = data_source(loc, seq_len=SEQ, vocab_size=1000).fetch(list(range(20)))
    assert torch.equal(first, again)
    starts = sorted(int(row[0]) for row in first)
    assert starts == sorted(int(tokens[i * SEQ]) for i in range(20))  # every sequence exactly once
    assert [int(r[0]) for r in first] != [int(tokens[i * SEQ]) for i in range(20)]


def test_token_outside_the_vocabulary_is_a_data_error(server: tuple[str, _Files]) -> None:
    base, state = server
    state.files["/big.bin"] = _tokens(2 * SEQ + 1, vocab=500).tobytes()
    with pytest.raises(DataError, match="outside the model's vocabulary of 10"):
        data_source(_http(f"{base}/big.bin"), seq_len=SEQ, vocab_size=10).fetch([0])


def test_local_source_reads_a_directory_of_files_in_name_order(tmp_path: Path) -> None:
    a, b = _tokens(2 * SEQ + 1), _tokens(3 * SEQ + 1)[::-1].copy()
    (tmp_path / "b.bin").write_bytes(b.tobytes())
    (tmp_path / "a.bin").write_bytes(a.tobytes())
    source = data_source(DataLocation(DataLocationKind.Local, str(tmp_path)), seq_len=SEQ, vocab_size=500)
    assert isinstance(source, TokenFileSource)
    batch = source.fetch([1, 2])  # a holds sequences 0-1, b holds 2-4
    assert np.array_equal(batch.numpy()[0], a[SEQ : 2 * SEQ + 1].astype(np.int64))
    assert np.array_equal(batch.numpy()[1], b[: SEQ + 1].astype(np.int64))


def test_local_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        data_source(DataLocation(DataLocationKind.Local, str(tmp_path / "x")), seq_len=SEQ, vocab_size=5)


def test_numbered_files_expand_with_padding() -> None:
    loc = HttpDataLocation(NumberedFiles("http://h/f_{}.ds", 8, 3, 3))
    assert http_urls(loc) == ["http://h/f_008.ds", "http://h/f_009.ds", "http://h/f_010.ds"]


def test_unsupported_locations_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="Server data is not supported"):
        data_source(DataLocation(DataLocationKind.Server, "127.0.0.1:9"), seq_len=SEQ, vocab_size=5)
    with pytest.raises(ConfigError, match="Gcp buckets are not supported"):
        data_source(
            DataLocation(DataLocationKind.Http, HttpDataLocation(Gcp("b"))), seq_len=SEQ, vocab_size=5
        )
