"""Training data: a sample index -> one sequence of max_seq_len + 1 tokens (Dummy, Http or Local source).

Token files are flat little-endian u16/u32 arrays. Sequence j of a file is tokens [j·S, j·S + S + 1) (inputs
plus the next token), so a file of T tokens holds (T - 1) // S sequences; indices past the end wrap around.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import numpy as np
import torch

from psyche.backoff import Backoff
from psyche.chain.accounts.model import (
    DataLocation,
    DataLocationKind,
    Gcp,
    HttpDataLocation,
    NumberedFiles,
    SingleUrl,
    TokenSize,
)
from psyche.errors import ConfigError, DataError

log = logging.getLogger("psyche.client")

FETCH_ATTEMPTS = 8  # the first try and 7 retries, as the real client does (contract 5.3)
# Before retry n: 2 s x n (2, 4, ... 14 s), as the real client does.
FETCH_BACKOFF = Backoff(2.0, growth="linear", attempts=FETCH_ATTEMPTS)


class DataSource(Protocol):
    """Where samples come from; ``fetch`` returns an int64 tensor of shape (len(indices), seq_len + 1)."""

    @property
    def seq_len(self) -> int: ...

    def fetch(self, indices: Sequence[int]) -> torch.Tensor:
        """The samples at ``indices``: int64, shape (len(indices), seq_len + 1).

        Raises:
            DataError: the data cannot be read after the retries, or holds a token outside the vocabulary.
        """


def _mix(*values: int) -> int:
    digest = hashlib.blake2b(b"".join(v.to_bytes(8, "little", signed=False) for v in values), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


@dataclass(frozen=True, slots=True)
class DummySource:
    """Deterministic synthetic data from the index alone: an arithmetic progression modulo the vocabulary
    with a start and a stride (1 to 3) hashed from (seed, index). It is learnable, so a training loss
    visibly falls, and every client computes the same tokens for the same index."""

    seq_len: int
    vocab_size: int
    seed: int = 0

    def fetch(self, indices: Sequence[int]) -> torch.Tensor:
        """The samples at ``indices``, computed from (seed, index) alone; raises nothing."""
        t = torch.arange(self.seq_len + 1, dtype=torch.int64)
        rows = []
        for index in indices:
            h = _mix(self.seed & (2**64 - 1), index & (2**64 - 1))
            start, stride = h % self.vocab_size, 1 + (h >> 32) % 3
            rows.append((start + stride * t) % self.vocab_size)
        return torch.stack(rows) if rows else torch.empty((0, self.seq_len + 1), dtype=torch.int64)


class TokenFiles(Protocol):
    """A list of token files: their sizes in tokens and ranged reads of raw bytes."""

    token_bytes: int

    def sizes(self) -> list[int]:
        """Each file's length in tokens."""

    def read(self, file: int, token_start: int, count: int) -> bytes:
        """``count`` tokens of file ``file`` from token ``token_start``, as raw little-endian bytes."""


class LocalFiles:
    """Token files on a local disk (a file, or every regular file in a directory, sorted by name)."""

    def __init__(self, path: Path, token_bytes: int = 2) -> None:
        self.token_bytes = token_bytes
        if path.is_dir():
            self.paths = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            self.paths = [path]
        else:
            raise ConfigError(f"model.data_location: Local path {path} does not exist")
        if not self.paths:
            raise ConfigError(f"model.data_location: Local directory {path} has no token files")

    def sizes(self) -> list[int]:
        """Each file's length in tokens (its size over ``token_bytes``)."""
        return [p.stat().st_size // self.token_bytes for p in self.paths]

    def read(self, file: int, token_start: int, count: int) -> bytes:
        """``count`` tokens of file ``file`` from token ``token_start``, read from disk."""
        with self.paths[file].open("rb") as f:
            f.seek(token_start * self.token_bytes)
            return f.read(count * self.token_bytes)


class HttpFiles:
    """Token files behind URLs, read with HTTP range requests; transport failures, 429 and 5xx are retried
    with a growing pause (2 s x (attempt - 1))."""

    def __init__(
        self,
        urls: list[str],
        token_bytes: int,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.urls = urls
        self.token_bytes = token_bytes
        self.client = client or httpx.Client(timeout=60.0, follow_redirects=True)
        self.sleep = sleep
        self._sizes: list[int] | None = None

    def _request(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        last = ""
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            if attempt > 1:
                self.sleep(FETCH_BACKOFF.delay(attempt - 1))
            try:
                response = self.client.request(method, url, headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise DataError(f"data: {method} {url}: HTTP {response.status_code}")
            return response
        raise DataError(f"data: {method} {url} failed after {FETCH_ATTEMPTS} attempts: {last}")

    def sizes(self) -> list[int]:
        """Each file's length in tokens, from a HEAD's Content-Length (asked once, then kept).

        Raises:
            DataError: a server failed after the retries, or sent no Content-Length.
        """
        if self._sizes is None:
            sizes = []
            for url in self.urls:
                length = self._request("HEAD", url, {}).headers.get("content-length")
                if length is None or not length.isdigit():
                    raise DataError(f"data: {url}: the server sent no Content-Length")
                sizes.append(int(length) // self.token_bytes)
            self._sizes = sizes
        return self._sizes

    def read(self, file: int, token_start: int, count: int) -> bytes:
        """``count`` tokens of file ``file`` from token ``token_start``, by a ranged GET.

        Raises:
            DataError: the server failed after the retries (a 4xx at once).
        """
        first = token_start * self.token_bytes
        last = first + count * self.token_bytes - 1
        response = self._request("GET", self.urls[file], {"Range": f"bytes={first}-{last}"})
        body = response.content
        # A server that ignores Range answers 200 with the whole file: slice it rather than fail.
        return body[first : last + 1] if response.status_code == 200 else body


class TokenFileSource:
    """Sequences over TokenFiles, optionally shuffled with a seeded permutation of all sequence indices."""

    def __init__(
        self, files: TokenFiles, seq_len: int, vocab_size: int, shuffle_seed: bytes | None = None
    ) -> None:
        self.files = files
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.shuffle_seed = shuffle_seed
        self._starts: np.ndarray | None = None  # cumulative sequence counts per file
        self._perm: np.ndarray | None = None

    def _index(self) -> np.ndarray:
        if self._starts is None:
            counts = [max(0, (n - 1) // self.seq_len) for n in self.files.sizes()]
            if sum(counts) == 0:
                raise DataError(f"data: the token files hold no full sequence of {self.seq_len + 1} tokens")
            self._starts = np.cumsum([0, *counts])
            if self.shuffle_seed is not None:
                rng = np.random.default_rng(int.from_bytes(self.shuffle_seed, "little"))
                self._perm = rng.permutation(int(self._starts[-1]))
        return self._starts

    def locate(self, index: int) -> tuple[int, int]:
        """(file, sequence within the file) of a sample index."""
        starts = self._index()
        k = index % int(starts[-1])
        if self._perm is not None:
            k = int(self._perm[k])
        file = int(np.searchsorted(starts, k, side="right")) - 1
        return file, k - int(starts[file])

    def fetch(self, indices: Sequence[int]) -> torch.Tensor:
        """The samples at ``indices``, each ``seq_len + 1`` tokens read from the place ``locate`` gives it.

        Raises:
            DataError: a read failed after the retries, or a token is outside the model's vocabulary.
        """
        width = self.seq_len + 1
        dtype = np.dtype("<u2" if self.files.token_bytes == 2 else "<u4")
        out = np.empty((len(indices), width), dtype=np.int64)
        places = [self.locate(i) for i in indices]
        row = 0
        while row < len(places):
            # Assigned batches are contiguous intervals: read consecutive sequences of a file in one go.
            file, seq = places[row]
            run = 1
            while row + run < len(places) and places[row + run] == (file, seq + run):
                run += 1
            count = run * self.seq_len + 1
            raw = self.files.read(file, seq * self.seq_len, count)
            tokens = np.frombuffer(raw, dtype=dtype)
            if tokens.size != count:
                raise DataError(f"data: file {file} returned {tokens.size} tokens, expected {count}")
            for r in range(run):
                out[row + r] = tokens[r * self.seq_len : r * self.seq_len + width]
            row += run
        if out.size and int(out.max()) >= self.vocab_size:
            raise DataError(
                f"data: token id {int(out.max())} is outside the model's vocabulary of {self.vocab_size}"
            )
        return torch.from_numpy(out)


def http_urls(location: HttpDataLocation) -> list[str]:
    """The file URLs of an Http data location (SingleUrl, or NumberedFiles with '{}' for the padded index)."""
    target = location.location
    if isinstance(target, SingleUrl):
        return [target.url]
    if isinstance(target, NumberedFiles):
        if "{}" not in target.url_template:
            raise ConfigError(
                "model.data_location: NumberedFiles url_template needs a '{}' for the file number"
            )
        return [
            target.url_template.replace("{}", str(i).zfill(target.n_left_pad_zeros))
            for i in range(target.start_index, target.start_index + target.num_files)
        ]
    assert isinstance(target, Gcp)
    raise ConfigError("model.data_location: Http Gcp buckets are not supported by the reference client")


def data_source(
    location: DataLocation,
    *,
    seq_len: int,
    vocab_size: int,
    seed: int = 0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DataSource:
    """The DataSource for the run's data location (Dummy, Http or Local); others are a ConfigError."""
    if location.kind is DataLocationKind.Dummy:
        return DummySource(seq_len, vocab_size, seed)
    if location.kind is DataLocationKind.Http and isinstance(location.value, HttpDataLocation):
        http = location.value
        width = 2 if http.token_size_in_bytes is TokenSize.TwoBytes else 4
        files = HttpFiles(http_urls(http), width, client, sleep)
        return TokenFileSource(files, seq_len, vocab_size, http.shuffle)
    if location.kind is DataLocationKind.Local and isinstance(location.value, str):
        path = Path(location.value)
        width = 4 if path.suffix == ".u32" else 2
        return TokenFileSource(LocalFiles(path, width), seq_len, vocab_size)
    raise ConfigError(
        f"model.data_location: {location.kind.name} data is not supported by the reference client "
        "(use Dummy, Http or Local)"
    )
