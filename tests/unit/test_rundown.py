"""Run-down requests (pure), the HTTP client over httpx.MockTransport, the display and the CLI's errors."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import httpx
import pytest
from click.testing import CliRunner, Result
from rich.console import Console
from solders.keypair import Keypair
from solders.signature import Signature

from psyche.errors import ConfigError, RunDownError
from psyche.manager import cli as cli_module
from psyche.manager import rundown
from psyche.manager.commands.rundown import TransferDisplay
from psyche.manager.rundown_client import (
    RunDownClient,
    TransferDone,
    TransferEvent,
    TransferProgress,
    TransferStarted,
    download_results,
)
from psyche.manager.ui import UI

KEYPAIR = Keypair.from_seed(bytes(range(7, 39)))
BASE = "https://run-down.example/v1"

# -- signing and request building ---------------------------------------------------------------------


def test_the_signed_message_is_the_references_format() -> None:
    assert rundown.signing_message("my-run", 3600, 12345678901234567890) == (
        b"nous-run-down-service:my-run:3600:12345678901234567890"
    )


def test_the_signature_is_base58_ed25519_of_the_message_by_the_wallet() -> None:
    encoded = rundown.sign(KEYPAIR, "my-run", 3600, 7)
    signature = Signature.from_string(encoded)
    assert signature.verify(KEYPAIR.pubkey(), b"nous-run-down-service:my-run:3600:7")
    assert not signature.verify(KEYPAIR.pubkey(), b"nous-run-down-service:my-run:3600:8")
    assert not signature.verify(Keypair().pubkey(), b"nous-run-down-service:my-run:3600:7")


def test_upload_request_url_header_and_body() -> None:
    request = rundown.upload_url_request(BASE + "/", KEYPAIR, "run/1", "dir/a.bin", 60, 99)
    assert request.url == "https://run-down.example/v1/upload/run%2F1"
    assert request.body == {"filename": "dir/a.bin", "expiresInSeconds": 60, "nonce": "99"}
    (name,) = request.headers
    assert name == "X-Solana-Signature"
    message = b"nous-run-down-service:run/1:60:99"
    assert Signature.from_string(request.headers[name]).verify(KEYPAIR.pubkey(), message)


def test_download_request_url_header_and_body() -> None:
    request = rundown.download_urls_request(BASE, KEYPAIR, "r", 3600, 5)
    assert request.url == "https://run-down.example/v1/download/r"
    assert request.body == {"expiresInSeconds": 3600, "nonce": "5"}
    assert request.headers == {"X-Solana-Signature": rundown.sign(KEYPAIR, "r", 3600, 5)}


def test_nonces_are_random_u64_and_never_repeat() -> None:
    nonces = rundown.Nonces()
    drawn = [nonces.new() for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    assert all(0 <= n < 2**64 for n in drawn)
    assert max(drawn) > 2**60  # drawn from the whole range, not a counter or a clock


def test_download_answer_parses_and_unsafe_paths_are_refused() -> None:
    answer = {"urls": [{"path": "a/b.bin", "url": "https://s/x"}], "expiresAt": "2026-01-01T00:00:00Z"}
    assert rundown.parse_download_urls(answer) == [
        rundown.RemoteFile(PurePosixPath("a/b.bin"), "https://s/x")
    ]
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "x.part", "a/.."):
        with pytest.raises(RunDownError, match="unsafe file path"):
            rundown.parse_download_urls({"urls": [{"path": bad, "url": "https://s/x"}]})
    with pytest.raises(RunDownError, match="listed 'a' twice"):
        rundown.parse_download_urls({"urls": [{"path": "a", "url": "u"}, {"path": "a", "url": "v"}]})
    with pytest.raises(RunDownError, match="no 'urls' list"):
        rundown.parse_download_urls({"files": []})
    with pytest.raises(RunDownError, match="no 'url' string"):
        rundown.parse_upload_url({"expiresAt": "x"})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 10-19/20", rundown.ContentRange(10, 19, 20)),
        ("bytes 0-0/*", rundown.ContentRange(0, 0, None)),
        ("bytes */20", rundown.ContentRange(None, None, 20)),
        ("bytes 10-9/20", None),
        ("bytes 10-20/20", None),
        ("items 0-1/2", None),
        ("bytes x-y/z", None),
        (None, None),
    ],
)
def test_content_range(header: str | None, expected: rundown.ContentRange | None) -> None:
    assert rundown.parse_content_range(header) == expected


def test_upload_plan_names_files_relative_to_the_directory(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "z.txt").write_text("zz")
    (tmp_path / "d" / "sub" / "a.txt").write_text("a")
    plan = rundown.upload_plan(tmp_path / "d")
    assert [(f.name, f.size) for f in plan] == [("sub/a.txt", 1), ("z.txt", 2)]
    assert [(f.name, f.path) for f in rundown.upload_plan(tmp_path / "d" / "z.txt")] == [
        ("z.txt", tmp_path / "d" / "z.txt")
    ]
    (tmp_path / "empty").mkdir()
    assert rundown.upload_plan(tmp_path / "empty") == []
    with pytest.raises(ConfigError) as missing:
        rundown.upload_plan(tmp_path / "nope")
    assert missing.value.message == (
        f"--path {tmp_path / 'nope'}: no such file or directory; pass an existing file or directory"
    )


# -- the client over MockTransport ---------------------------------------------------------------------


class Dropping(httpx.SyncByteStream):
    """A body that yields ``data`` and then fails like a connection closed by the peer."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, sleeps: list[float] | None = None) -> RunDownClient:
    recorded = sleeps if sleeps is not None else []
    return RunDownClient(BASE, KEYPAIR, transport=httpx.MockTransport(handler), sleep=recorded.append)


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def test_a_dropped_download_resumes_with_range_and_is_renamed_when_complete(tmp_path: Path) -> None:
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("range"))
        assert request.headers["accept-encoding"] == "identity"
        if len(ranges) == 1:
            headers = {"content-length": str(len(PAYLOAD))}
            return httpx.Response(200, headers=headers, stream=Dropping(PAYLOAD[:1000]))
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        headers = {"content-range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"}
        return httpx.Response(206, headers=headers, content=PAYLOAD[start:])

    events: list[TransferEvent] = []
    sleeps: list[float] = []
    target = tmp_path / "f.bin"
    done = client(handler, sleeps).download("https://s/f?sig=1", "f.bin", target, 1, 1, events.append)

    assert target.read_bytes() == PAYLOAD
    assert not rundown.part_path(target).exists()
    assert ranges == [None, "bytes=1000-"]
    assert sleeps == [0.5]
    assert done == TransferDone("f.bin", len(PAYLOAD), target, 1000)
    started = [e for e in events if isinstance(e, TransferStarted)]
    assert [(s.offset, s.total) for s in started] == [(0, len(PAYLOAD)), (1000, len(PAYLOAD))]
    assert [e for e in events if isinstance(e, TransferProgress)][-1].done == len(PAYLOAD)


def test_a_complete_part_file_is_finished_by_a_416(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    rundown.part_path(target).write_bytes(b"12345")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=5-"
        return httpx.Response(416, headers={"content-range": "bytes */5"}, content=b"<Error>nope</Error>")

    client(handler).download("https://s/f", "f.bin", target, 1, 1, lambda e: None)
    assert target.read_bytes() == b"12345"


def test_a_server_that_ignores_range_restarts_the_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    rundown.part_path(target).write_bytes(b"stale bytes")
    handler: Handler = lambda request: httpx.Response(200, content=b"fresh")  # noqa: E731
    done = client(handler).download("https://s/f", "f.bin", target, 1, 1, lambda e: None)
    assert (target.read_bytes(), done.resumed_from) == (b"fresh", 0)


def test_a_refused_download_leaves_nothing_and_hides_the_url_credential(tmp_path: Path) -> None:
    handler: Handler = lambda request: httpx.Response(403, text="SignatureDoesNotMatch")  # noqa: E731
    target = tmp_path / "f.bin"
    with pytest.raises(RunDownError) as refused:
        client(handler).download("https://s.example/f?X-Goog-Signature=secret", "f", target, 1, 1, print)
    assert refused.value.message == (
        "downloading f from https://s.example/f?X-Goog-Signature=*** was refused (HTTP 403: "
        "SignatureDoesNotMatch); the signed URL may have expired: run again, or raise --expires-in-seconds"
    )
    assert list(tmp_path.iterdir()) == []


def test_repeated_5xx_gives_up_after_the_attempts_with_nothing_written(tmp_path: Path) -> None:
    sleeps: list[float] = []
    handler: Handler = lambda request: httpx.Response(503, json={"error": "busy"})  # noqa: E731
    with pytest.raises(RunDownError, match=r"^downloading f failed after 3 attempts: HTTP 503: busy$"):
        client(handler, sleeps).download("https://s/f", "f", tmp_path / "f", 1, 1, lambda e: None)
    assert sleeps == [0.5, 1.0]
    assert list(tmp_path.iterdir()) == []


def test_upload_streams_the_exact_bytes_with_a_content_length(tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(PAYLOAD * 3)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200)

    events: list[TransferEvent] = []
    local = rundown.LocalFile(source, "a.bin", source.stat().st_size)
    client(handler).upload("https://s/put?sig=1", local, 1, 1, events.append)
    (request,) = seen
    assert request.method == "PUT"
    assert request.content == PAYLOAD * 3
    assert request.headers["content-length"] == str(3 * len(PAYLOAD))
    assert "transfer-encoding" not in request.headers
    assert [e.done for e in events if isinstance(e, TransferProgress)] == [
        0,
        *(n * len(PAYLOAD) for n in (1, 2, 3)),
    ]


def test_a_file_that_shrinks_during_the_upload_fails_instead_of_hanging(tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"abc")

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200)

    local = rundown.LocalFile(source, "a.bin", 10)
    with pytest.raises(
        RunDownError, match=r"a.bin shrank while it was uploaded \(3 of 10 bytes\); run again"
    ):
        client(handler).upload("https://s/put", local, 1, 1, lambda e: None)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(401, json={"error": "invalid signature"}),
            "the run-down service refused the signature for run 'r' (HTTP 401: invalid signature); sign with "
            "the wallet the service knows for this run (-w/--wallet-private-key-path); this one is {pubkey}",
        ),
        (
            httpx.Response(500, text="x" * 300),
            "the run-down service at {base} failed (HTTP 500: "
            + "x" * 200
            + "…); try again in a few minutes",
        ),
        (httpx.Response(200, text="<html>"), "the run-down service at {base} answered HTTP 200 but not JSON"),
        (httpx.Response(200, json={"url": 3}), "the run-down service's download answer has no 'urls' list"),
    ],
)
def test_service_answers_become_one_line_errors(response: httpx.Response, expected: str) -> None:
    with pytest.raises(RunDownError) as failed:
        client(lambda request: response).download_urls("r", 60)
    assert failed.value.message == expected.format(pubkey=KEYPAIR.pubkey(), base=BASE)


def test_an_unreachable_service_names_the_variable_to_check() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(RunDownError) as failed:
        client(handler).upload_url("r", "a", 60)
    assert failed.value.message == (
        f"cannot reach the run-down service at {BASE} (ConnectError: connection refused); "
        "check RUN_DOWN_SERVICE_URL and your network"
    )


def test_download_results_checks_every_target_before_fetching_anything(tmp_path: Path) -> None:
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            urls = [{"path": p, "url": f"https://s/{p}"} for p in ("a", "b")]
            return httpx.Response(200, json={"urls": urls, "expiresAt": "later"})
        fetched.append(request.url.path)
        return httpx.Response(200, content=b"data")

    (tmp_path / "b").write_text("mine")
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        download_results(client(handler), "r", tmp_path, 60, False, lambda e: None)
    assert fetched == []
    download_results(client(handler), "r", tmp_path, 60, True, lambda e: None)
    assert (fetched, (tmp_path / "b").read_text()) == (["/a", "/b"], "data")


# -- the display ----------------------------------------------------------------------------------------


def test_the_display_prints_lines_when_not_on_a_terminal() -> None:
    ui, _, err = UI.for_tests()
    now = [0.0]
    display = TransferDisplay(ui, monotonic=lambda: now[0], every=5.0)
    display(TransferStarted("Downloading", 1, 2, "a.bin", 0, 4_000_000))
    display(TransferProgress("a.bin", 1_000_000, 4_000_000))
    now[0] = 6.0
    display(TransferProgress("a.bin", 2_000_000, 4_000_000))
    display(TransferStarted("Downloading", 1, 2, "a.bin", 2_000_000, 4_000_000))
    display(TransferDone("a.bin", 4_000_000))
    display.close()
    assert err.getvalue().splitlines() == [
        "Downloading 1/2: a.bin (4.0 MB)",
        "  a.bin: 2.0 MB of 4.0 MB",
        "Resuming 1/2: a.bin at 2.0 MB (4.0 MB)",
        "✓ a.bin (4000000 bytes)",
    ]


def test_the_display_draws_a_bar_per_file_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    display = TransferDisplay(UI(console, console, interactive=True))
    display(TransferStarted("Uploading", 1, 1, "big.bin", 0, 2_000_000))
    display(TransferProgress("big.bin", 2_000_000, 2_000_000))
    display(TransferDone("big.bin", 2_000_000))
    display.close()
    assert "big.bin" in buffer.getvalue()
    assert "2.0/2.0 MB" in buffer.getvalue()


# -- the CLI's own checks (no service needed) ------------------------------------------------------------


@pytest.fixture
def invoke(isolation: Path, tmp_path: Path) -> Callable[..., Result]:
    key = tmp_path / "id.json"
    key.write_text(json.dumps(list(bytes(KEYPAIR))))
    key.chmod(0o600)

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        environ = {
            "HOME": str(isolation),
            "NO_COLOR": "1",
            "WALLET_PRIVATE_KEY_PATH": str(key),
            "RPC": "http://127.0.0.1:1",  # required by the settings every command loads; never contacted
            **(env or {}),
        }
        return CliRunner().invoke(cli_module.cli, list(args), obj=environ, catch_exceptions=False)

    return run


def _errors(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def test_a_missing_path_is_one_line(invoke: Callable[..., Result], tmp_path: Path) -> None:
    result = invoke("upload-data", "-r", "r", "--path", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert _errors(result) == [
        f"Error: --path {tmp_path / 'nope'}: no such file or directory; pass an existing file or directory"
    ]


def test_an_empty_directory_uploads_nothing_and_says_so(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("upload-data", "-r", "r", "-p", str(tmp_path / "empty"), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"run_id": "r", "files": []}
    assert f"No files found to upload under {tmp_path / 'empty'}" in result.stderr


def test_an_output_dir_that_cannot_be_a_directory_is_one_line(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    result = invoke("download-results", "-r", "r", "-o", str(tmp_path / "file" / "out"))
    assert result.exit_code == 1
    assert _errors(result) == [
        f"Error: --output-dir {tmp_path / 'file' / 'out'}: cannot create {tmp_path / 'file' / 'out'} "
        "(Not a directory); choose a directory you can write to"
    ]


def test_the_service_url_must_be_https_unless_loopback(invoke: Callable[..., Result], tmp_path: Path) -> None:
    env_file = tmp_path / "run.env"
    env_file.write_text("RUN_DOWN_SERVICE_URL=http://run-down.example/v1\n")
    result = invoke("download-results", "--env-file", str(env_file), "-r", "r")
    assert result.exit_code == 1
    assert _errors(result) == [
        f"Error: RUN_DOWN_SERVICE_URL in {env_file}:1: plain http to run-down.example would expose the "
        "signed URLs; use https://"
    ]
    flag = invoke("upload-data", "-r", "r", "-p", ".", "--service-url", "ftp://x")
    assert flag.exit_code == 2
    assert (
        "Invalid value for '--service-url' (or set RUN_DOWN_SERVICE_URL): not an http(s) URL: 'ftp://x'"
        in flag.stderr
    )


def test_the_reference_flags_and_variables_are_there(invoke: Callable[..., Result]) -> None:
    download = invoke("download-results", "--help").stdout
    for text in ("-r, --run-id", "-o, --output-dir", "--expires-in-seconds", "--overwrite", "OUTPUT_DIR"):
        assert text in download
    assert "EXPIRES_IN_SECONDS" in download and "RUN_DOWN_SERVICE_URL" in download
    upload = invoke("upload-data", "--help").stdout
    assert "-p, --path" in upload and "--expires-in-seconds" in upload
