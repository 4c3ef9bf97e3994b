"""The bad-input corpus: every input that once gave a traceback, a hang or a leaked secret, as one table.

Each row is what a user may type or point at (a .env text, files, flags, environment) and the one
``Error:`` line it must give. Every row also asserts: non-zero exit, no traceback, nothing else on stderr
but usage and a hint, and its secret (an API key, a password) in neither stdout nor stderr. A new bad
input joins the table as one more row. Rows that need the local chain's server are in
tests/integration/test_bad_input_chain.py, in the same style.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from solders.keypair import Keypair

from psyche.boundedread import InputRefused, json_nesting, read_bounded
from psyche.manager import cli as cli_module

SECRET = "s3cretK3yVa1ue"  # short enough that no token rule hides it: only the URL rules can
TOKEN = "abcdef0123456789abcdef0123456789"  # a QuickNode/Ankr-style path key
FIFO = object()  # a files value: make a FIFO that nobody writes to
KEY_JSON = str(list(bytes(Keypair.from_seed(bytes(range(32))))))
DEEP = "[" * 100_000 + "]" * 100_000  # 200 kB
DEEP_SMALL = "[" * 30_000 + "]" * 30_000  # 60 kB: under the size limit, so the nesting check must say it
BIG_INT_KEY = "[1,2," + "9" * 5_000 + "," + ",".join(["1"] * 61) + "]"


@dataclass(frozen=True)
class Case:
    """One bad input: ``{dir}`` in any text stands for the test's directory."""

    id: str
    args: tuple[str, ...]
    error: str  # regex the single Error: line must match (re.search)
    env_file: str | None = None  # written to {dir}/.env and passed as the root --env-file
    files: Mapping[str, object] = field(default_factory=dict)  # name -> str | bytes | FIFO
    env: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = None


SHOW = ("show-config",)
SHOW_WALLET = ("show-config", "--wallet")

CASES = [
    # -- 14.2: an endpoint value of any shape never shows its credential --------------------------------
    Case(
        "RPC no scheme",
        SHOW,
        r"RPC in .*\.env:1: not an http\(s\) URL: '127\.0\.0\.1:8899/\?api-key=\*\*\*'; use http://",
        env_file=f"RPC=127.0.0.1:8899/?api-key={SECRET}\n",
        secret=SECRET,
    ),
    Case(
        "RPC htp:/",
        SHOW,
        r"RPC in .*: not an http\(s\) URL: 'htp:/rpc\.example\.com/\?api-key=\*\*\*'",
        env_file=f"RPC=htp:/rpc.example.com/?api-key={SECRET}\n",
        secret=SECRET,
    ),
    Case(
        "RPC userinfo, no scheme",
        SHOW,
        r"RPC in .*: not an http\(s\) URL: '\*\*\*@rpc\.example\.com:8899'",
        env_file=f"RPC=user:{SECRET}@rpc.example.com:8899\n",
        secret=SECRET,
    ),
    Case(
        "RPC spaces",
        SHOW,
        r"RPC in .*: not an http\(s\) URL: '\*\*\*@rpc\.example\.com/'",
        env_file=f"RPC='ht tp://user:{SECRET}@rpc.example.com/'\n",
        secret=SECRET,
    ),
    Case(
        "RPC QuickNode path key, no scheme, from the environment",
        SHOW,
        r"RPC in the environment: not an http\(s\) URL: 'x\.solana-mainnet\.quiknode\.pro/\*\*\*/'",
        env={"RPC": f"x.solana-mainnet.quiknode.pro/{TOKEN}/"},
        secret=TOKEN,
    ),
    Case(
        "RPC unclosed IPv6 bracket",
        SHOW,
        r"RPC in .*: not an http\(s\) URL: 'http://\[::1/\?api-key=\*\*\*'",
        env_file=f"RPC=http://[::1/?api-key={SECRET}\n",
        secret=SECRET,
    ),
    Case(
        "RPC bad port",
        SHOW,
        r"RPC in .*: the port is not a number from 0 to 65535: 'http://h\.example:99999/\?api-key=\*\*\*'",
        env_file=f"RPC=http://h.example:99999/?api-key={SECRET}\n",
        secret=SECRET,
    ),
    Case(
        "RPC userinfo, no host",
        SHOW,
        r"RPC in .*: URL has no host: 'https://\*\*\*@/'",
        env_file=f"RPC=https://user:{SECRET}@/\n",
        secret=SECRET,
    ),
    Case(
        "WS_RPC no scheme",
        SHOW,
        r"WS_RPC in .*\.env:1: not a ws\(s\) URL: '127\.0\.0\.1:8900/\?api-key=\*\*\*'; use ws://",
        env_file=f"WS_RPC=127.0.0.1:8900/?api-key={SECRET}\n",
        secret=SECRET,
    ),
    Case(
        "RPC_2 no scheme",
        SHOW,
        r"RPC_2 in .*\.env:1: not an http\(s\) URL: 'rpc\.example\.com/\?api-key=\*\*\*'",
        env_file=f"RPC_2=rpc.example.com/?api-key={SECRET}\nWS_RPC_2=wss://rpc.example.com/\n",
        secret=SECRET,
    ),
    Case(
        "WS_RPC_2 no scheme",
        SHOW,
        r"WS_RPC_2 in .*\.env:2: not a ws\(s\) URL: 'rpc\.example\.com/\?api-key=\*\*\*'",
        env_file=f"RPC_2=https://rpc.example.com/\nWS_RPC_2=rpc.example.com/?api-key={SECRET}\n",
        secret=SECRET,
    ),
    Case(
        "--rpc not a URL",
        ("list-runs", "--rpc", f"notaurl?api-key={SECRET}"),
        r"RPC from --rpc: not an http\(s\) URL: 'notaurl\?api-key=\*\*\*'",
        secret=SECRET,
    ),
    Case(
        "--ws-rpc not a URL",
        ("list-runs", "--ws-rpc", f"wss:/h.example/{TOKEN}"),
        r"WS_RPC from --ws-rpc: URL has no host: 'wss:/h\.example/\*\*\*'; write it as ws://host",
        secret=TOKEN,
    ),
    # -- 14.6: a misspelt fallback name is named as such ----------------------------------------------
    Case(
        "RPC_02",
        SHOW,
        r"RPC_02 in .*\.env:1: not a fallback endpoint name; fallbacks are RPC_2, RPC_3, \.\.\. "
        r"and WS_RPC_2, WS_RPC_3, \.\.\. \(no leading zero\)",
        env_file=f"RPC_02=https://rpc.example.com/?api-key={SECRET}\n",
        secret=SECRET,
    ),
    Case(
        "WS_RPC_02 beside a good pair",
        SHOW,
        r"WS_RPC_02 in .*\.env:3: not a fallback endpoint name",
        env_file="RPC_2=https://a.example/\nWS_RPC_2=wss://a.example/\nWS_RPC_02=wss://b.example/\n",
    ),
    # -- 14.5: reads are bounded in size, nesting and time --------------------------------------------
    Case(
        "key file nested 100000 deep",
        SHOW_WALLET,
        r"Failed to read wallet file from: .*deep\.json \(200000 bytes, larger than 64 KiB; "
        r"path from WALLET_PRIVATE_KEY_PATH in .*\.env:1\)",
        env_file="WALLET_PRIVATE_KEY_PATH={dir}/deep.json\n",
        files={"deep.json": DEEP},
    ),
    Case(
        "key file nested 30000 deep",
        SHOW_WALLET,
        r"wallet file .*deep\.json: a JSON array nested 30000 levels deep; expected a flat JSON array",
        env_file="WALLET_PRIVATE_KEY_PATH={dir}/deep.json\n",
        files={"deep.json": DEEP_SMALL},
    ),
    Case(
        "key file: an unterminated string of escapes",
        SHOW_WALLET,
        r"wallet file .*esc\.json: not a valid JSON array \(Unterminated string starting at at char 1\)",
        env_file="WALLET_PRIVATE_KEY_PATH={dir}/esc.json\n",
        files={"esc.json": '["' + '\\"' * 20_000},
    ),
    Case(
        "RAW_WALLET_PRIVATE_KEY nested 100000 deep",
        SHOW_WALLET,
        r"RAW_WALLET_PRIVATE_KEY in .*\.env:1: 200000 characters, too long for a key",
        env_file=f"RAW_WALLET_PRIVATE_KEY={DEEP}\n",
    ),
    Case(
        "RAW_WALLET_PRIVATE_KEY nested 30000 deep",
        SHOW_WALLET,
        r"RAW_WALLET_PRIVATE_KEY in .*\.env:1: a JSON array nested 30000 levels deep",
        env_file=f"RAW_WALLET_PRIVATE_KEY={DEEP_SMALL}\n",
    ),
    Case(
        "key file with a 5000-digit number",
        SHOW_WALLET,
        r"wallet file .*big\.json: JSON key array item 2 is not a byte",
        env_file="WALLET_PRIVATE_KEY_PATH={dir}/big.json\n",
        files={"big.json": BIG_INT_KEY},
    ),
    Case(
        "RAW_WALLET_PRIVATE_KEY with a 5000-digit number",
        SHOW_WALLET,
        r"RAW_WALLET_PRIVATE_KEY in .*: JSON key array item 2 is not a byte",
        env_file=f"RAW_WALLET_PRIVATE_KEY={BIG_INT_KEY}\n",
    ),
    Case(
        "base58 key of 60 kB",
        SHOW_WALLET,
        r"RAW_WALLET_PRIVATE_KEY in .*: base58 key of 60000 characters; a 64-byte keypair is at most 88",
        env_file="RAW_WALLET_PRIVATE_KEY=" + "5" * 60_000 + "\n",
    ),
    Case(
        "base58 key of 300 kB",
        SHOW_WALLET,
        r"RAW_WALLET_PRIVATE_KEY in .*: 300000 characters, too long for a key",
        env_file="RAW_WALLET_PRIVATE_KEY=" + "5" * 300_000 + "\n",
    ),
    Case(
        "--env-file /dev/zero",
        ("--env-file", "/dev/zero", "show-config"),
        r"^Error: --env-file /dev/zero: larger than 1 MiB; pass a \.env text file of at most 1 MiB$",
    ),
    Case(
        "--env-file over 1 MiB",
        ("--env-file", "{dir}/huge.env", "show-config"),
        r"--env-file .*huge\.env: 1048577 bytes, larger than 1 MiB",
        files={"huge.env": "#" * (1024 * 1024) + "\n"},
    ),
    Case(
        "--env-file a FIFO without a writer",
        ("--env-file", "{dir}/fifo", "show-config"),
        r"--env-file .*fifo: a FIFO that did not reach its end within 5 s",
        files={"fifo": FIFO},
    ),
    Case(
        "key path with a NUL byte",
        SHOW_WALLET,
        r"WALLET_PRIVATE_KEY_PATH in .*\.env:1: not a path \(it holds a NUL character\); "
        r"write the path as plain text",
        env_file="WALLET_PRIVATE_KEY_PATH=/tmp/a\0b\n",
    ),
    Case(
        "key path /dev/zero",
        SHOW_WALLET,
        r"Failed to read wallet file from: /dev/zero \(larger than 64 KiB; path from WALLET_PRIVATE_KEY_PATH",
        env_file="WALLET_PRIVATE_KEY_PATH=/dev/zero\n",
    ),
    Case(
        "key path a FIFO without a writer",
        SHOW_WALLET,
        r"Failed to read wallet file from: .*fifo \(a FIFO that did not reach its end within 5 s;",
        env={"WALLET_PRIVATE_KEY_PATH": "{dir}/fifo"},
        files={"fifo": FIFO},
    ),
    Case(
        "localnet --ledger /dev/null",
        ("localnet", "--ledger", "/dev/null", "--rpc-port", "0", "--ws-port", "0"),
        r"--ledger /dev/null: not a directory; pass a directory the localnet may create and write",
    ),
    Case(
        "localnet --ledger under a file",
        ("localnet", "--ledger", "{dir}/plain/ledger", "--rpc-port", "0", "--ws-port", "0"),
        r"--ledger .*plain/ledger: not a directory",
        files={"plain": "x"},
    ),
    Case(
        "localnet --ledger holding a damaged ledger",
        ("localnet", "--ledger", "{dir}/led", "--rpc-port", "0", "--ws-port", "0"),
        r"--ledger .*led: cannot open the ledger in it \(file is not a database\);.* --reset",
        files={"led/ledger.sqlite3": "not sqlite"},
    ),
    Case(
        "tick --ms-interval past a day",
        ("tick", "-r", "run", "--ms-interval", "99999999999999999999"),
        r"Invalid value for '--ms-interval'.*99999999999999999999 is not in the range 0<=x<=86400000",
    ),
    Case(
        "MS_INTERVAL past a day",
        ("tick", "-r", "run"),
        r"MS_INTERVAL in the environment: 99999999999999999999 is not in the range 0<=x<=86400000",
        env={"MS_INTERVAL": "99999999999999999999"},
    ),
    Case(
        "doctor --timeout 1e300",
        ("doctor", "--timeout", "1e300"),
        r"Invalid value for '--timeout': 1e\+300 is not in the range 0\.1<=x<=600",
    ),
    Case("doctor --timeout nan", ("doctor", "--timeout", "nan"), r"'--timeout': 'nan' is not a number"),
    Case(
        "doctor --image-size nan", ("doctor", "--image-size", "nan"), r"'--image-size': 'nan' is not a number"
    ),
]


def _materialise(case: Case, directory: Path) -> tuple[list[str], dict[str, str]]:
    for name, content in case.files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is FIFO:
            os.mkfifo(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            assert isinstance(content, str)
            path.write_text(content)
    args = [arg.replace("{dir}", str(directory)) for arg in case.args]
    if case.env_file is not None:
        (directory / ".env").write_text(case.env_file.replace("{dir}", str(directory)))
        args = ["--env-file", str(directory / ".env"), *args]
    env = {name: value.replace("{dir}", str(directory)) for name, value in case.env.items()}
    return args, env


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_line(case: Case, isolation: Path, tmp_path: Path) -> None:
    args, env = _materialise(case, tmp_path)
    # RPC is required: a harmless shell value, so each row reaches the input it is about (.env values win).
    environ = {"HOME": str(isolation), "NO_COLOR": "1", "COLUMNS": "500", "RPC": "http://127.0.0.1:1", **env}
    result = CliRunner().invoke(cli_module.cli, args, obj=environ)
    # An exception escaping the group is what main() shows as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert re.search(case.error, errors[0]), errors[0]
    others = [line for line in result.stderr.splitlines() if line and not line.startswith("Error:")]
    assert all(line.startswith(("hint:", "Usage:", "Try ")) for line in others), others
    assert len(errors[0]) < 400
    if case.secret is not None:
        assert case.secret not in output


# -- the bounded reader on its own --------------------------------------------------------------------


def test_a_pipe_with_a_writer_is_read_to_its_end(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("wb") as pipe:
            pipe.write(b"RUN_ID=a\n")
            pipe.flush()
            time.sleep(0.05)  # a writer that pauses mid-file is still read to the end
            pipe.write(b"RPC=http://h/\n")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert read_bounded(fifo, 1024, wait_s=10) == b"RUN_ID=a\nRPC=http://h/\n"
    finally:
        writer.join()


def test_limits_of_the_bounded_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputRefused, match=r"^a FIFO that did not reach its end within 0\.1 s$"):
        read_bounded(fifo, 10, wait_s=0.1)
    assert read_bounded(Path("/dev/null"), 10) == b""
    with pytest.raises(InputRefused, match=r"^larger than 10 bytes$"):
        read_bounded(Path("/dev/zero"), 10)
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 1024)
    assert read_bounded(exact, 1024) == b"x" * 1024
    with pytest.raises(InputRefused, match=r"^1024 bytes, larger than 1023 bytes$"):
        read_bounded(exact, 1023)
    with pytest.raises(IsADirectoryError):
        read_bounded(tmp_path, 10)
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "nope", 10)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[1, 2]", 1),
        ('[[1], {"a": [2]}]', 3),
        ('["[[[[", "\\"]]"]', 1),
        ('["\\n", [1]]', 2),
        ('["\\\\", [1]]', 2),
        ('["\\"]", [[1]]]', 3),
        (DEEP, 100_000),
        # Unterminated strings full of escapes: a regex that skips strings retries from every quote.
        ('"\\' * 30_000, 0),
        ('\\"' * 30_000, 0),
    ],
)
def test_json_nesting(text: str, depth: int) -> None:
    assert json_nesting(text) == depth


def test_a_good_key_still_loads_through_every_bounded_path(isolation: Path, tmp_path: Path) -> None:
    key = tmp_path / "id.json"
    key.write_text(KEY_JSON)
    key.chmod(0o600)
    (tmp_path / ".env").write_text(f"RPC=http://127.0.0.1:1\nWALLET_PRIVATE_KEY_PATH={key}\n")
    environ = {"HOME": str(isolation), "NO_COLOR": "1", "COLUMNS": "500"}
    result = CliRunner().invoke(
        cli_module.cli, ["--env-file", str(tmp_path / ".env"), "show-config", "--wallet"], obj=environ
    )
    assert result.exit_code == 0, result.output
    assert str(Keypair.from_seed(bytes(range(32))).pubkey()) in result.stdout


# -- the client's own environment (inside the container): the same limits, its own messages ----------

CLIENT_CASES = [
    Case(
        "client key path /dev/zero",
        (),
        r"^WALLET_PRIVATE_KEY_PATH: cannot read /dev/zero: larger than 64 KiB$",
        env={"WALLET_PRIVATE_KEY_PATH": "/dev/zero"},
    ),
    Case(
        "client key path a FIFO without a writer",
        (),
        r"^WALLET_PRIVATE_KEY_PATH: cannot read .*fifo: a FIFO that did not reach its end within 5 s$",
        env={"WALLET_PRIVATE_KEY_PATH": "{dir}/fifo"},
        files={"fifo": FIFO},
    ),
    Case(
        "client RAW_WALLET_PRIVATE_KEY nested 100000 deep",
        (),
        r"^RAW_WALLET_PRIVATE_KEY: not a valid keypair \(JSON byte array or base58\)$",
        env={"RAW_WALLET_PRIVATE_KEY": DEEP},
    ),
    Case(
        "client RPC with an unclosed IPv6 bracket",
        (),
        r"^RPC: not an http\(s\) URL: 'http://\[::1/\?api-key=\*\*\*'$",
        env={"RPC": f"http://[::1/?api-key={SECRET}"},
        secret=SECRET,
    ),
    Case(
        "client RPC without a scheme",
        (),
        r"^RPC: not an http\(s\) URL: '127\.0\.0\.1:8899/\?api-key=\*\*\*'$",
        env={"RPC": f"127.0.0.1:8899/?api-key={SECRET}"},
        secret=SECRET,
    ),
]


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[case.id for case in CLIENT_CASES])
def test_client_bad_input_gives_one_line(case: Case, tmp_path: Path) -> None:
    from psyche.client.env import load_client_env
    from psyche.errors import RunManagerError

    _, env = _materialise(case, tmp_path)
    with pytest.raises(RunManagerError) as caught:
        load_client_env({"RUN_ID": "run", **env})
    assert re.search(case.error, caught.value.message), caught.value.message
    assert "\n" not in caught.value.message
    if case.secret is not None:
        assert case.secret not in caught.value.message
