"""load_settings: .env parsing with line numbers, precedence, endpoints and every validation message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from psyche.chain.endpoints import Endpoint
from psyche.errors import ConfigError
from psyche.manager.constants import DEFAULT_COORDINATOR_PROGRAM_ID
from psyche.manager.settings import Secret, load_settings, require_rpc, require_ws

PUBKEY = "PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw"
OTHER_PUBKEY = "EnU7DRx5az5YWxaxgqEGbXSYtudcfnjXewyBRRZCjJPw"
# RPC is required; tests about other variables take their endpoints from this shell environment.
CHAIN = {"RPC": "http://rpc.test:8899", "WS_RPC": "ws://rpc.test:8900"}


@pytest.fixture
def envdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path so messages show the short relative name `.env.local`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str, name: str = ".env.local") -> Path:
    Path(name).write_text(text, encoding="utf-8")
    return Path(name)


def error_of(env_file: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env_file, {**CHAIN, **(environ or {})})
    return str(info.value)


# --- defaults and parsing ---------------------------------------------------------------------------


def test_defaults_without_file_with_endpoints_from_the_environment() -> None:
    settings = load_settings(None, CHAIN)
    assert settings.endpoints == (Endpoint(CHAIN["RPC"], CHAIN["WS_RPC"]),)
    assert settings.coordinator_program_id == DEFAULT_COORDINATOR_PROGRAM_ID
    assert settings.run_id is None
    assert settings.sources == {"RPC": "environment", "WS_RPC": "environment"}
    assert settings.passthrough == {}
    assert settings.default_wallet_path is None


def test_rpc_is_required_with_the_reference_words_and_no_local_default() -> None:
    settings = load_settings(None, {"WS_RPC": "ws://x"})
    assert settings.endpoints == ()  # no 127.0.0.1 default: commands that need the chain stop at require_rpc
    with pytest.raises(ConfigError) as info:
        require_rpc(settings)
    assert info.value.message == "Missing required environment variable: RPC"
    assert info.value.hint is not None and "localnet --demo" in info.value.hint
    with pytest.raises(ConfigError) as info:  # backups without the primary
        load_settings(None, {"RPC_2": "http://y", "WS_RPC_2": "ws://y"})
    assert info.value.message == "Missing required environment variable: RPC"
    assert info.value.hint is not None and "localnet --demo" in info.value.hint


def test_ws_rpc_is_optional_for_settings_but_required_by_the_main_job() -> None:
    settings = load_settings(None, {"RPC": "http://x"})
    assert settings.endpoints == (Endpoint("http://x", None),)
    assert ("WS_RPC", "(unset)", "default") in settings.describe()
    with pytest.raises(ConfigError, match=r"^Missing required environment variable: WS_RPC$"):
        require_ws(settings)
    require_ws(load_settings(None, CHAIN))


def test_values_and_sources_from_file(envdir: Path) -> None:
    env = write(
        "# comment\n"
        "\n"
        'RPC="https://rpc.example.com"\n'
        "WS_RPC='wss://rpc.example.com'\n"
        "export RUN_ID=my-run\n"
        "DATA_PARALLELISM=2   # trailing comment\n"
        "PARALLELISM_AUTO=True\n"
        "SCRATCH_DIR=~/scratch\n"
        "WALLET_PATH=~/keys/id.json\n"
        f"AUTHORIZER={PUBKEY}\n"
        "HF_TOKEN=hf_secret\n"
    )
    settings = load_settings(env, {**CHAIN, "HOME": "/home/u"})
    assert settings.endpoints == (Endpoint("https://rpc.example.com", "wss://rpc.example.com"),)
    assert settings.run_id == "my-run"
    assert settings.data_parallelism == 2
    assert settings.parallelism_auto is True
    assert settings.scratch_dir == Path("/home/u/scratch")
    assert settings.wallet_path == Path("/home/u/keys/id.json")
    assert settings.authorizer == PUBKEY
    assert settings.sources["RPC"] == ".env.local:3"
    assert settings.sources["RUN_ID"] == ".env.local:5"
    assert settings.sources["HF_TOKEN"] == ".env.local:11"
    assert settings.where("RUN_ID") == "in .env.local:5"
    assert settings.default_wallet_path == Path("/home/u/.config/solana/id.json")


def test_quotes_are_removed_once(envdir: Path) -> None:
    env = write('RUN_ID=\'"quoted"\'\nNVIDIA_DRIVER_CAPABILITIES="all"\n')
    settings = load_settings(env, CHAIN)
    assert settings.run_id == '"quoted"'
    assert settings.nvidia_driver_capabilities == "all"


def test_file_is_never_written_into_os_environ(envdir: Path) -> None:
    env = write("PSYCHE_TEST_ONLY_VAR=1\nRUN_ID=x\n")
    load_settings(env, CHAIN)
    assert "PSYCHE_TEST_ONLY_VAR" not in os.environ
    assert "RUN_ID" not in os.environ


def test_passthrough_holds_every_file_variable_with_effective_values(envdir: Path) -> None:
    env = write("RPC=http://a:1\nWS_RPC=ws://a:2\nHF_TOKEN=t\nCUSTOM_THING=1\nRUN_ID=r\n")
    settings = load_settings(env, {"RUN_ID": "from-shell", "PATH": "/bin", "UNRELATED": "x"})
    assert dict(settings.passthrough) == {
        "RPC": "http://a:1",
        "WS_RPC": "ws://a:2",
        "HF_TOKEN": "t",
        "CUSTOM_THING": "1",
        "RUN_ID": "r",  # the file wins
    }


# --- precedence ---------------------------------------------------------------------------------


def test_file_wins_over_the_process_environment_and_the_override_is_noted(envdir: Path) -> None:
    env = write("RUN_ID=from-file\nMICRO_BATCH_SIZE=4\nRPC=http://file:1\n")
    shell = {**CHAIN, "RUN_ID": "from-env-secretish", "MICRO_BATCH_SIZE": "4", "DATA_PARALLELISM": "2"}
    settings = load_settings(env, shell)
    assert settings.run_id == "from-file"
    assert settings.endpoints[0].http == "http://file:1"
    assert settings.data_parallelism == 2  # only in the shell: still read
    assert settings.sources["RUN_ID"] == ".env.local:1"
    assert settings.sources["DATA_PARALLELISM"] == "environment"
    # One note per shell variable the file replaced with another value; same value: no note. Names only.
    assert settings.notes == (
        "RUN_ID from the shell environment is overridden by .env.local:1",
        "RPC from the shell environment is overridden by .env.local:3",
    )
    assert not any("from-env-secretish" in note or "http://" in note for note in settings.notes)


def test_override_flag_wins_over_environment(envdir: Path) -> None:
    environ = {**CHAIN, "COORDINATOR_PROGRAM_ID": PUBKEY}
    settings = load_settings(
        None, environ, overrides={"COORDINATOR_PROGRAM_ID": (OTHER_PUBKEY, "--coordinator-program-id")}
    )
    assert settings.coordinator_program_id == OTHER_PUBKEY
    assert settings.where("COORDINATOR_PROGRAM_ID") == "from --coordinator-program-id"


def test_program_ids_are_configurable(envdir: Path) -> None:
    env = write(f"AUTHORIZER_PROGRAM_ID={OTHER_PUBKEY}\nTREASURER_PROGRAM_ID={PUBKEY}\n")
    settings = load_settings(env, CHAIN)
    assert settings.authorizer_program_id == OTHER_PUBKEY
    assert settings.treasurer_program_id == PUBKEY


def test_duplicate_key_keeps_the_last(envdir: Path) -> None:
    settings = load_settings(write("RUN_ID=a\nRUN_ID=b\n"), CHAIN)
    assert settings.run_id == "b"
    assert settings.sources["RUN_ID"] == ".env.local:2"


# --- endpoints ---------------------------------------------------------------------------------


def test_backup_endpoints_in_order_and_duplicate_of_primary_dropped() -> None:
    environ = {
        "RPC": "http://one",
        "WS_RPC": "ws://one",
        "RPC_2": "http://one",
        "WS_RPC_2": "ws://other",
        "RPC_3": "https://three",
        "WS_RPC_3": "wss://three",
    }
    settings = load_settings(None, environ)
    assert settings.endpoints == (
        Endpoint("http://one", "ws://one"),
        Endpoint("https://three", "wss://three"),
    )


def test_empty_backup_pair_is_unset() -> None:
    settings = load_settings(None, {**CHAIN, "RPC_2": "", "WS_RPC_2": ""})
    assert len(settings.endpoints) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "RPC_2=htp://x\nWS_RPC_2=ws://x\n",
            "RPC_2 in .env.local:1: not an http(s) URL: 'htp://x'; use http:// or https://",
        ),
        (
            "RPC=http://x\nWS_RPC=http://x\n",
            "WS_RPC in .env.local:2: not a ws(s) URL: 'http://x'; use ws:// or wss://",
        ),
        (
            "RPC=http://\n",
            "RPC in .env.local:1: URL has no host: 'http://'; write it as http://host[:port][/path]",
        ),
        ("RPC=\n", "RPC in .env.local:1: empty; set it to the endpoint's http(s) URL"),
        ("RPC_2=http://b\n", "RPC_2 in .env.local:1: set without WS_RPC_2; set both RPC_2 and WS_RPC_2"),
        ("\nWS_RPC_2=ws://b\n", "WS_RPC_2 in .env.local:2: set without RPC_2; set both RPC_2 and WS_RPC_2"),
        (
            "RPC_3=http://c\nWS_RPC_3=ws://c\n",
            "RPC_3 in .env.local:1: ignored because RPC_2/WS_RPC_2 is not set; "
            "number backups from 2 without gaps",
        ),
        (
            "RPC_1=http://c\nWS_RPC_1=ws://c\n",
            "RPC_1 in .env.local:1: not a backup name; backups are numbered from 2 (RPC is the first)",
        ),
    ],
)
def test_endpoint_errors(envdir: Path, text: str, message: str) -> None:
    assert error_of(write(text)) == message


def test_url_credentials_are_redacted_in_messages(envdir: Path) -> None:
    key = "0123456789abcdef0123456789abcdef"
    message = error_of(write(f"RPC=htps://rpc.example.com/{key}\n"))
    assert key not in message
    assert message.startswith("RPC in .env.local:1: not an http(s) URL: 'htps://rpc.example.com/***'")


def test_environment_source_is_named() -> None:
    message = error_of(None, {"RPC": "ftp://x"})
    assert message == "RPC in the environment: not an http(s) URL: 'ftp://x'; use http:// or https://"


# --- other variables ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "RUN_ID=\n",
            "RUN_ID in .env.local:1: empty; "
            "remove the line to discover runs automatically, or set the run's id",
        ),
        (
            "RUN_ID=" + "x" * 33 + "\n",
            "RUN_ID in .env.local:1: 33 bytes long, the limit is 32: '"
            + "x" * 33
            + "'; use the run id exactly as it was created",
        ),
        (
            "AUTHORIZER=notakey\n",
            "AUTHORIZER in .env.local:1: not a 32-byte base58 public key: 'notakey'; "
            "paste the address as printed by solana address",
        ),
        (
            "COORDINATOR_PROGRAM_ID=0OIl\n",
            "COORDINATOR_PROGRAM_ID in .env.local:1: not a 32-byte base58 public key: '0OIl'; "
            "paste the address as printed by solana address",
        ),
        (
            "DATA_PARALLELISM=0\n",
            "DATA_PARALLELISM in .env.local:1: not a positive integer: '0'; use a whole number such as 1",
        ),
        (
            "TENSOR_PARALLELISM=two\n",
            "TENSOR_PARALLELISM in .env.local:1: not a positive integer: 'two'; use a whole number such as 1",
        ),
        (
            "MICRO_BATCH_SIZE=-4\n",
            "MICRO_BATCH_SIZE in .env.local:1: not a positive integer: '-4'; use a whole number such as 1",
        ),
        (
            "PARALLELISM_AUTO=maybe\n",
            "PARALLELISM_AUTO in .env.local:1: not a boolean: 'maybe'; use true or false",
        ),
        (
            "SCRATCH_DIR=scratch\n",
            "SCRATCH_DIR in .env.local:1: not an absolute path: 'scratch'; "
            "Docker bind mounts need a path starting with /",
        ),
    ],
)
def test_variable_errors(envdir: Path, text: str, message: str) -> None:
    assert error_of(write(text)) == message


def test_run_id_of_exactly_32_bytes_is_accepted() -> None:
    assert load_settings(None, {**CHAIN, "RUN_ID": "é" * 16}).run_id == "é" * 16
    assert "33 bytes" in error_of(None, {"RUN_ID": "é" * 16 + "x"})


def test_parallelism_auto_spellings() -> None:
    assert load_settings(None, {**CHAIN, "PARALLELISM_AUTO": "false"}).parallelism_auto is False
    assert load_settings(None, {**CHAIN, "PARALLELISM_AUTO": "1"}).parallelism_auto is True
    assert load_settings(None, CHAIN).parallelism_auto is None


# --- file-level errors ---------------------------------------------------------------------------


def test_missing_file(envdir: Path) -> None:
    assert error_of(Path(".env.missing")) == (
        "--env-file .env.missing: no such file; pass the path of an existing .env file"
    )


def test_unreadable_file(envdir: Path) -> None:
    Path("adir").mkdir()
    assert (
        error_of(Path("adir"))
        == "--env-file adir: cannot read it (Is a directory); check the path and its permissions"
    )


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_file_without_read_permission(envdir: Path) -> None:
    env = write("RUN_ID=x\n")
    env.chmod(0)
    assert error_of(env) == (
        "--env-file .env.local: cannot read it (Permission denied); check the path and its permissions"
    )


def test_not_utf8(envdir: Path) -> None:
    Path(".env.local").write_bytes(b"RUN_ID=\xff\n")
    assert error_of(Path(".env.local")) == "--env-file .env.local: not UTF-8 text (byte 7); save it as UTF-8"


def test_line_without_equals(envdir: Path) -> None:
    env = write("RUN_ID=x\n\nFOO\n")
    assert (
        error_of(env)
        == "FOO in .env.local:3: no '=' on this line; write FOO=<value> or comment it out with #"
    )


def test_line_without_equals_that_may_be_a_key_is_not_echoed(envdir: Path) -> None:
    secretish = "4" * 87
    message = error_of(write(f"{secretish}\n"))
    assert message == ".env.local:1: a line without '='; write NAME=<value> or comment it out with #"


@pytest.mark.parametrize(
    "text",
    ['RAW_WALLET_PRIVATE_KEY="[1,2,3]\nRUN_ID=x\n', "RAW_WALLET_PRIVATE_KEY='abc' junk\n"],
)
def test_unbalanced_quoting(envdir: Path, text: str) -> None:
    message = error_of(write(text))
    assert message == (
        "RAW_WALLET_PRIVATE_KEY in .env.local:1: unknown or unbalanced quoting; "
        "use matching \"double\" or 'single' quotes around the whole value, or none"
    )
    assert "abc" not in message and "1,2,3" not in message


def test_stray_closing_quote(envdir: Path) -> None:
    assert error_of(write('RUN_ID=x\nRPC=http://a"\n')) == (
        "RPC in .env.local:2: unbalanced quote at the end of the value; "
        "wrap the whole value in matching quotes or remove the stray quote"
    )


def test_backtick_quoting_is_unknown(envdir: Path) -> None:
    assert error_of(write("HF_TOKEN=`abc`\n")) == (
        "HF_TOKEN in .env.local:1: unknown quoting (backticks); use \"double\" or 'single' quotes, or none"
    )


def test_invalid_variable_name(envdir: Path) -> None:
    assert error_of(write("RPC-2=http://a\n")) == (
        "'RPC-2' in .env.local:1: not a valid variable name; use letters, digits and _ (no leading digit)"
    )


# --- secrets -----------------------------------------------------------------------------------


def test_raw_key_never_in_repr_or_describe(envdir: Path) -> None:
    secret = "5" * 80
    settings = load_settings(write(f"RAW_WALLET_PRIVATE_KEY={secret}\nHF_TOKEN=hf_abc123\n"), CHAIN)
    assert settings.raw_wallet_private_key == Secret(secret)
    assert settings.raw_wallet_private_key is not None
    assert settings.raw_wallet_private_key.reveal() == secret
    for text in (
        repr(settings),
        str(settings),
        repr(settings.raw_wallet_private_key),
        str(settings.describe()),
    ):
        assert secret not in text
        assert "hf_abc123" not in text
    described = {name: value for name, value, _ in settings.describe()}
    assert described["RAW_WALLET_PRIVATE_KEY"] == "***"
    assert described["HF_TOKEN"] == "***"


def test_describe_lists_backups_and_extra_variables(envdir: Path) -> None:
    env = write("RPC_2=http://b\nWS_RPC_2=ws://b\nCUSTOM=1\n")
    rows = load_settings(env, CHAIN).describe()
    assert ("RPC_2", "http://b", ".env.local:1") in rows
    assert ("CUSTOM", "1", ".env.local:3") in rows
    assert ("RPC", CHAIN["RPC"], "environment") in rows


# --- the client's P2P variables ---------------------------------------------------------------------


def test_p2p_defaults_are_the_clients_own() -> None:
    p2p = load_settings(None, CHAIN).p2p
    assert (p2p.port, p2p.bind, p2p.advertise, p2p.bootstrap) == (0, "0.0.0.0", None, ())
    assert p2p.container_env() == {"P2P_PORT": "0", "P2P_BIND": "0.0.0.0"}


def test_p2p_values_are_parsed_and_normalised(envdir: Path) -> None:
    text = (
        "P2P_PORT=4100\nP2P_BIND=::\nP2P_ADVERTISE=[2001:db8::5]:4200\n"
        "P2P_BOOTSTRAP= 10.0.0.2:4100, peer-1.example.org:4100,10.0.0.2:4100,\n"
    )
    settings = load_settings(write(text), CHAIN)
    assert settings.p2p.container_env() == {
        "P2P_PORT": "4100",
        "P2P_BIND": "::",
        "P2P_ADVERTISE": "[2001:db8::5]:4200",
        "P2P_BOOTSTRAP": "10.0.0.2:4100,peer-1.example.org:4100",  # blanks and the duplicate dropped
    }
    assert settings.p2p.advertise is not None and settings.p2p.advertise.port == 4200
    shown = {name: value for name, value, _ in settings.describe()}
    assert shown["P2P_BOOTSTRAP"] == "10.0.0.2:4100,peer-1.example.org:4100"
    assert load_settings(None, {**CHAIN, "P2P_ADVERTISE": "203.0.113.5"}).p2p.container_env()[
        "P2P_ADVERTISE"
    ] == ("203.0.113.5")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "P2P_PORT=65536\n",
            "P2P_PORT in .env.local:1: not a port number from 0 to 65535: '65536'; "
            "use a whole number, or 0 for a free port picked at each start",
        ),
        (
            "P2P_PORT=-1\n",
            "P2P_PORT in .env.local:1: not a port number from 0 to 65535: '-1'; "
            "use a whole number, or 0 for a free port picked at each start",
        ),
        (
            "P2P_BIND=localhost\n",
            "P2P_BIND in .env.local:1: not an IP address: 'localhost'; "
            "use 0.0.0.0 (every interface) or one IP address of this host",
        ),
        (
            "P2P_ADVERTISE=my host\n",
            "P2P_ADVERTISE in .env.local:1: not a host name or IP address: 'my host'; "
            "write the address peers should dial: host or host:port, such as 203.0.113.5:4100",
        ),
        (
            "P2P_ADVERTISE=1.2.3.4:0\n",
            "P2P_ADVERTISE in .env.local:1: not a port number from 1 to 65535: '1.2.3.4:0'; "
            "write the address peers should dial: host or host:port, such as 203.0.113.5:4100",
        ),
        (
            "P2P_BOOTSTRAP=10.0.0.2:4100,10.0.0.3\n",
            "P2P_BOOTSTRAP in .env.local:1: entry 2 '10.0.0.3': no port; "
            "write peers of the run as host:port, separated by commas",
        ),
        (
            "P2P_BOOTSTRAP=10.0.0.2:http\n",
            "P2P_BOOTSTRAP in .env.local:1: entry 1 '10.0.0.2:http': not a port number from 1 to 65535; "
            "write peers of the run as host:port, separated by commas",
        ),
        (
            "P2P_BOOTSTRAP=[10.0.0.2]:4100\n",
            "P2P_BOOTSTRAP in .env.local:1: entry 1 '[10.0.0.2]:4100': brackets are only for IPv6 addresses; "
            "write peers of the run as host:port, separated by commas",
        ),
    ],
)
def test_p2p_errors_name_the_variable_and_the_fix(envdir: Path, text: str, message: str) -> None:
    assert error_of(write(text)) == message
