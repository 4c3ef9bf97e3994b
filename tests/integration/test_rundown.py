"""download-results and upload-data end to end: the real CLI against a loopback run-down service on 127.0.0.1.

The service verifies every ed25519 signature with solders against the run's key, refuses replayed nonces,
hands out signed URLs on itself, stores what is PUT and serves files with Range, dropping connections
mid-download on request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from solders.keypair import Keypair

from psyche.manager import cli as cli_module
from psyche.manager import rundown
from tests.support.rundown_service import RunDownService, rundown_service

RUN = "results-run"
MB = 1 << 20


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunDownService]:
    with rundown_service(tmp_path / "service") as running:
        yield running


@pytest.fixture
def wallet(tmp_path: Path) -> Keypair:
    return Keypair()


@pytest.fixture
def env_file(tmp_path: Path, wallet: Keypair, service: RunDownService) -> Path:
    key = tmp_path / "id.json"
    key.write_text(json.dumps(list(bytes(wallet))))
    key.chmod(0o600)
    path = tmp_path / "run.env"
    path.write_text(f"RUN_ID={RUN}\nWALLET_PRIVATE_KEY_PATH={key}\nRUN_DOWN_SERVICE_URL={service.url}\n")
    return path


Invoke = Callable[..., Result]


@pytest.fixture
def cli(isolation: Path, tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Result:
        environ = {"HOME": str(isolation), "NO_COLOR": "1", "COLUMNS": "100"}
        command = [args[0], "--env-file", str(env_file), *args[1:]]
        return CliRunner().invoke(cli_module.cli, command, obj=environ, catch_exceptions=False)

    return invoke


def errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error: ")]


def files_under(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def seed(service: RunDownService, wallet: Keypair, files: dict[str, bytes]) -> None:
    directory = service.add_run(RUN, wallet.pubkey())
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)


def test_upload_then_download_round_trip(
    cli: Invoke, service: RunDownService, wallet: Keypair, tmp_path: Path
) -> None:
    service.add_run(RUN, wallet.pubkey())
    data = tmp_path / "data"
    (data / "shards" / "b").mkdir(parents=True)
    big = os.urandom(6 * MB + 123)
    (data / "big.bin").write_bytes(big)
    (data / "shards" / "b" / "0.json").write_text('{"shard": 0}')
    (data / "shards" / "1.txt").write_bytes(b"one\n")

    uploaded = cli("upload-data", "--path", str(data))
    assert uploaded.exit_code == 0, uploaded.output
    assert service.stored(RUN) == files_under(data)
    assert uploaded.stdout.splitlines() == [
        "✓ Uploaded 3 file(s) (6.3 MB) to run results-run",
        f"  big.bin ({len(big)} bytes)",
        "  shards/1.txt (4 bytes)",
        "  shards/b/0.json (12 bytes)",
    ]
    assert "Uploading 1/3: big.bin (6.3 MB)" in uploaded.stderr
    # One signed request per file, each with its own nonce, each verified by the service.
    assert service.accepted_signatures == len(service.nonces) == 3
    puts = service.requests("PUT")
    assert [p.status for p in puts] == [200, 200, 200]

    out = tmp_path / "out" / "nested"
    downloaded = cli("download-results", "--output-dir", str(out), "--json")
    assert downloaded.exit_code == 0, downloaded.output
    assert files_under(out) == files_under(data)
    report = json.loads(downloaded.stdout)
    assert [(f["path"], f["bytes"], f["resumed_from"]) for f in report["files"]] == [
        ("big.bin", len(big), 0),
        ("shards/1.txt", 4, 0),
        ("shards/b/0.json", 12, 0),
    ]
    assert service.accepted_signatures == len(service.nonces) == 4
    # The signed URLs carry a credential in their query: it never reaches the output.
    assert "X-Goog-Signature" not in downloaded.output + uploaded.output


def test_a_dropped_connection_is_resumed_with_range_in_the_same_run(
    cli: Invoke, service: RunDownService, wallet: Keypair, tmp_path: Path
) -> None:
    payload = os.urandom(5 * MB)
    seed(service, wallet, {"model.safetensors": payload})
    service.drop_after, service.drops_left = 2 * MB, 1

    result = cli("download-results", "-o", str(tmp_path / "out"))

    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == payload
    assert [g.range for g in service.requests("GET")] == [None, f"bytes={2 * MB}-"]
    assert "Resuming 1/1: model.safetensors at 2.1 MB (5.2 MB)" in result.stderr
    assert f"(5242880 bytes, resumed at {2 * MB})" in result.stdout
    assert not list((tmp_path / "out").glob("*.part"))


def _real_cli(env_file: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from psyche.manager.cli import main; main()", *args]
    environ = {"PATH": os.environ["PATH"], "HOME": str(home), "NO_COLOR": "1", "COLUMNS": "100"}
    return subprocess.run(
        [*command, "--env-file", str(env_file)], env=environ, capture_output=True, text=True, timeout=120
    )


def test_a_download_that_keeps_failing_leaves_only_the_part_file_and_the_next_run_resumes_it(
    env_file: Path, service: RunDownService, wallet: Keypair, tmp_path: Path, isolation: Path
) -> None:
    payload = os.urandom(8 * MB)
    seed(service, wallet, {"ckpt/weights.bin": payload})
    service.drop_after, service.drops_left = MB, -1
    out = tmp_path / "out"
    target, part = out / "ckpt" / "weights.bin", out / "ckpt" / "weights.bin.part"

    failed = _real_cli(env_file, isolation, "download-results", "--output-dir", str(out))

    assert failed.returncode == 1, failed.stderr
    (line,) = errors(failed.stderr)
    assert line.startswith("Error: downloading ckpt/weights.bin failed after 3 attempts: RemoteProtocolError")
    assert line.endswith(f"; run the same command again to resume from {part}")
    assert not target.exists()
    assert part.read_bytes() == payload[: 3 * MB]  # one MB per attempt, each resumed where the last stopped
    assert [g.range for g in service.requests("GET")] == [None, f"bytes={MB}-", f"bytes={2 * MB}-"]

    service.drops_left = 0
    resumed = _real_cli(env_file, isolation, "download-results", "--output-dir", str(out))

    assert resumed.returncode == 0, resumed.stderr
    assert target.read_bytes() == payload
    assert not part.exists()
    assert service.requests("GET")[-1].range == f"bytes={3 * MB}-"
    assert f"resumed at {3 * MB}" in resumed.stdout


def test_existing_files_are_kept_unless_overwrite(
    cli: Invoke, service: RunDownService, wallet: Keypair, tmp_path: Path
) -> None:
    seed(service, wallet, {"a.txt": b"new a", "b.txt": b"new b"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.txt").write_bytes(b"mine")

    refused = cli("download-results", "-o", str(out))

    assert refused.exit_code == 1
    assert errors(refused.stderr) == [
        f"Error: {out / 'b.txt'} already exists; "
        "pass --overwrite to replace it, or choose another --output-dir"
    ]
    assert files_under(out) == {"b.txt": b"mine"}  # a.txt was not fetched either: checks come first
    assert service.requests("GET") == []

    replaced = cli("download-results", "-o", str(out), "--overwrite")

    assert replaced.exit_code == 0, replaced.output
    assert files_under(out) == {"a.txt": b"new a", "b.txt": b"new b"}


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            lambda s, w: s.add_run(RUN, Keypair().pubkey()),
            "Error: the run-down service refused the signature for run 'results-run' "
            "(HTTP 401: invalid signature); sign with the wallet the service knows for this run "
            "(-w/--wallet-private-key-path); this one is {pubkey}",
        ),
        (
            lambda s, w: setattr(s, "api_status", 503),
            "Error: the run-down service at {url} failed (HTTP 503: switched to answer 503); "
            "try again in a few minutes",
        ),
        (
            lambda s, w: None,
            "Error: the run-down service at {url} has no run 'results-run' "
            "(HTTP 404: unknown run results-run); check --run-id / RUN_ID",
        ),
    ],
    ids=["wrong-key", "503", "unknown-run"],
)
def test_a_refusing_service_is_one_line_and_leaves_nothing_behind(
    cli: Invoke,
    service: RunDownService,
    wallet: Keypair,
    tmp_path: Path,
    setup: Callable[[RunDownService, Keypair], object],
    expected: str,
) -> None:
    setup(service, wallet)
    out = tmp_path / "new" / "out"

    result = cli("download-results", "-o", str(out))

    assert result.exit_code == 1
    assert errors(result.stderr) == [expected.format(pubkey=wallet.pubkey(), url=service.url)]
    assert not (tmp_path / "new").exists()  # the directories it made are gone again


def test_an_expired_signed_url_fails_without_leaving_a_file(
    cli: Invoke, service: RunDownService, wallet: Keypair, tmp_path: Path
) -> None:
    seed(service, wallet, {"sub/x.bin": b"x" * 1000})
    service.expired_urls = True

    result = cli("download-results", "-o", str(tmp_path / "out"))

    assert result.exit_code == 1
    (line,) = errors(result.stderr)
    assert line.startswith("Error: downloading sub/x.bin from http://127.0.0.1:")
    assert "X-Goog-Signature=***" in line  # redacted, not the credential
    assert line.endswith(
        "was refused (HTTP 403: <Error><Code>ExpiredToken</Code></Error>); the signed URL may have expired: "
        "run again, or raise --expires-in-seconds"
    )
    assert not (tmp_path / "out").exists()


def test_a_failed_upload_stores_nothing_and_writes_nothing_locally(
    cli: Invoke, service: RunDownService, wallet: Keypair, tmp_path: Path
) -> None:
    service.add_run(RUN, wallet.pubkey())
    service.put_status = 500
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.bin").write_bytes(os.urandom(MB))

    def local() -> list[str]:
        return sorted(str(p) for p in tmp_path.rglob("*") if service.root not in p.parents)

    before = local()

    result = cli("upload-data", "-p", str(data / "x.bin"))

    assert result.exit_code == 1
    assert errors(result.stderr) == [
        "Error: uploading x.bin failed after 3 attempts: HTTP 500: <Error><Code>Refused</Code></Error>"
    ]
    assert service.stored(RUN) == {}
    assert local() == before


def test_the_service_double_refuses_replays_bad_nonces_and_bad_signatures(
    service: RunDownService, wallet: Keypair
) -> None:
    """The checks the end-to-end tests rely on are real: a replay, a bad nonce or a forged signature fail."""
    service.add_run(RUN, wallet.pubkey())
    request = rundown.download_urls_request(service.url, wallet, RUN, 60, 42)

    def post(r: rundown.SignedRequest) -> httpx.Response:
        return httpx.post(r.url, headers=dict(r.headers), json=dict(r.body), trust_env=False)

    assert post(request).status_code == 200
    replay = post(request)
    assert (replay.status_code, replay.json()["error"]) == (401, "nonce already used")
    forged = rundown.download_urls_request(service.url, Keypair(), RUN, 60, 43)
    assert post(forged).json()["error"] == "invalid signature"
    other_message = rundown.download_urls_request(service.url, wallet, RUN, 61, 44)
    tampered = rundown.SignedRequest(
        other_message.url, other_message.headers, {**other_message.body, "nonce": "45"}
    )
    assert post(tampered).json()["error"] == "invalid signature"
    bad_nonce = rundown.SignedRequest(request.url, request.headers, {**request.body, "nonce": "-1"})
    assert post(bad_nonce).status_code == 400
