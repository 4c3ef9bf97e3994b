"""load_wallet: source order, key formats, consistency check, permission warning, and secrecy."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from solders.keypair import Keypair

from psyche.errors import WalletError
from psyche.manager import settings as settings_module
from psyche.manager.settings import Settings
from psyche.manager.wallet import Wallet, WalletSource, load_wallet, wallet_from_text

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def load_settings(env_file: Path | None, environ: dict[str, str]) -> Settings:
    """The real loader, with the RPC endpoint it requires set in the test's environment."""
    return settings_module.load_settings(env_file, {"RPC": "http://rpc.test:8899", **environ})


KEYPAIR = Keypair.from_seed(bytes(range(1, 33)))
KEY_BYTES = bytes(KEYPAIR)
KEY_JSON = json.dumps(list(KEY_BYTES))
KEY_B58 = b58encode(KEY_BYTES)
PUBKEY = str(KEYPAIR.pubkey())


def write_key(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def wallet_error(environ: dict[str, str]) -> WalletError:
    with pytest.raises(WalletError) as info:
        load_wallet(load_settings(None, environ))
    return info.value


def assert_secret_absent(text: str) -> None:
    assert KEY_JSON not in text
    assert KEY_B58 not in text
    assert json.dumps(list(KEY_BYTES), separators=(",", ":")) not in text
    assert ",".join(str(b) for b in KEY_BYTES[:32]) not in text


# --- sources and formats -----------------------------------------------------------------------


def test_raw_json_array() -> None:
    wallet = load_wallet(load_settings(None, {"RAW_WALLET_PRIVATE_KEY": KEY_JSON}))
    assert wallet.pubkey == PUBKEY
    assert wallet.source.description == "RAW_WALLET_PRIVATE_KEY in the environment"
    assert wallet.warnings == ()


def test_raw_base58() -> None:
    wallet = load_wallet(load_settings(None, {"RAW_WALLET_PRIVATE_KEY": KEY_B58}))
    assert wallet.pubkey == PUBKEY


def test_raw_key_wins_over_paths(tmp_path: Path) -> None:
    environ = {
        "RAW_WALLET_PRIVATE_KEY": KEY_JSON,
        "WALLET_PRIVATE_KEY_PATH": str(tmp_path / "missing.json"),
        "WALLET_PATH": str(tmp_path / "missing2.json"),
    }
    assert load_wallet(load_settings(None, environ)).pubkey == PUBKEY


def test_private_key_path_wins_over_wallet_path(tmp_path: Path) -> None:
    key = write_key(tmp_path / "a.json", KEY_JSON)
    environ = {"WALLET_PRIVATE_KEY_PATH": str(key), "WALLET_PATH": str(tmp_path / "missing.json")}
    wallet = load_wallet(load_settings(None, environ))
    assert wallet.pubkey == PUBKEY
    assert wallet.source.path == key


def test_wallet_path_is_supported(tmp_path: Path) -> None:
    key = write_key(tmp_path / "w.json", KEY_JSON)
    wallet = load_wallet(load_settings(None, {"WALLET_PATH": str(key)}))
    assert wallet.pubkey == PUBKEY
    assert wallet.source.description == "WALLET_PATH in the environment"


def test_key_file_may_hold_base58_text(tmp_path: Path) -> None:
    key = write_key(tmp_path / "k.txt", KEY_B58 + "\n")
    assert load_wallet(load_settings(None, {"WALLET_PRIVATE_KEY_PATH": str(key)})).pubkey == PUBKEY


def test_default_path_under_injected_home(tmp_path: Path) -> None:
    home = tmp_path / "somehome"
    write_key(home / ".config" / "solana" / "id.json", KEY_JSON)
    wallet = load_wallet(load_settings(None, {"HOME": str(home)}))
    assert wallet.pubkey == PUBKEY
    assert wallet.source.path == home / ".config/solana/id.json"


def test_tilde_in_path_uses_injected_home(tmp_path: Path) -> None:
    home = tmp_path / "h"
    write_key(home / "keys" / "me.json", KEY_JSON)
    settings = load_settings(None, {"HOME": str(home), "WALLET_PRIVATE_KEY_PATH": "~/keys/me.json"})
    assert load_wallet(settings).pubkey == PUBKEY


# --- errors ------------------------------------------------------------------------------------


def test_missing_default_file(tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    err = wallet_error({"HOME": str(home)})
    path = home / ".config/solana/id.json"
    assert err.message == (
        f"Failed to read wallet file from: {path} "
        "(no such file; path from the default ~/.config/solana/id.json)"
    )
    assert err.hint is not None and "solana-keygen new" in err.hint


def test_missing_named_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    err = wallet_error({"WALLET_PRIVATE_KEY_PATH": str(path)})
    assert err.message == (
        f"Failed to read wallet file from: {path} "
        "(no such file; path from WALLET_PRIVATE_KEY_PATH in the environment)"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    err = wallet_error({"WALLET_PATH": str(tmp_path)})
    assert err.message == (
        f"Failed to read wallet file from: {tmp_path} "
        "(Is a directory; path from WALLET_PATH in the environment)"
    )


def test_no_home_and_no_wallet() -> None:
    err = wallet_error({})
    assert err.message == "No wallet configured and no HOME for the default ~/.config/solana/id.json"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps(list(KEY_BYTES[:63])), "JSON key array has 63 numbers, expected 64"),
        (json.dumps([*KEY_BYTES[:63], 256]), "JSON key array item 63 is not a byte (an integer 0 to 255)"),
        (json.dumps([*KEY_BYTES[:63], -1]), "JSON key array item 63 is not a byte (an integer 0 to 255)"),
        (
            json.dumps(["1", *KEY_BYTES[1:]]),
            "JSON key array item 0 is not a byte (an integer 0 to 255)",
        ),
        (
            json.dumps([True, *KEY_BYTES[1:]]),
            "JSON key array item 0 is not a byte (an integer 0 to 255)",
        ),
        ("[1, 2,", "not a valid JSON array (Expecting value at char 6)"),
        (KEY_B58[:10] + "0" + KEY_B58[11:], "not valid base58 (character 11 is not in the base58 alphabet)"),
        (b58encode(KEY_BYTES[:32]), "base58 key decodes to 32 bytes, expected 64"),
    ],
)
def test_bad_raw_key(text: str, message: str) -> None:
    err = wallet_error({"RAW_WALLET_PRIVATE_KEY": text})
    assert err.message == f"RAW_WALLET_PRIVATE_KEY in the environment: {message}"
    assert_secret_absent(str(err) + repr(err) + str(err.hint))


def test_mismatched_halves_are_rejected() -> None:
    other = Keypair.from_seed(bytes(range(2, 34)))
    spliced = KEY_BYTES[:32] + bytes(other.pubkey())
    err = wallet_error({"RAW_WALLET_PRIVATE_KEY": json.dumps(list(spliced))})
    assert err.message == (
        "RAW_WALLET_PRIVATE_KEY in the environment: "
        "the public half of the keypair does not match its secret half"
    )


def test_bad_json_in_file_names_the_file(tmp_path: Path) -> None:
    key = write_key(tmp_path / "k.json", "[1,2,3]")
    err = wallet_error({"WALLET_PRIVATE_KEY_PATH": str(key)})
    assert err.message == f"wallet file {key}: JSON key array has 3 numbers, expected 64"


# --- permissions and secrecy -------------------------------------------------------------------


def test_group_readable_file_warns_but_loads(tmp_path: Path) -> None:
    key = write_key(tmp_path / "k.json", KEY_JSON, mode=0o644)
    wallet = load_wallet(load_settings(None, {"WALLET_PRIVATE_KEY_PATH": str(key)}))
    assert wallet.pubkey == PUBKEY
    assert wallet.warnings == (
        f"wallet file {key} is accessible by group or others (mode 0644); run chmod 600 {key}",
    )


def test_private_file_has_no_warning(tmp_path: Path) -> None:
    key = write_key(tmp_path / "k.json", KEY_JSON, mode=0o600)
    assert load_wallet(load_settings(None, {"WALLET_PRIVATE_KEY_PATH": str(key)})).warnings == ()


def test_secret_for_env_round_trips_and_repr_hides_it() -> None:
    wallet = wallet_from_text(KEY_B58, WalletSource("test"))
    assert json.loads(wallet.secret_for_env()) == list(KEY_BYTES)
    assert repr(wallet) == f"Wallet(pubkey={PUBKEY!r}, source='test')"
    assert str(wallet) == PUBKEY
    assert bytes(wallet.keypair()) == KEY_BYTES
    assert_secret_absent(repr(wallet) + str(wallet))
    assert not hasattr(wallet, "__dict__")


def test_wallet_cannot_be_pickled() -> None:
    wallet = wallet_from_text(KEY_JSON, WalletSource("test"))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(wallet)


def test_wallet_type_is_exported() -> None:
    assert isinstance(wallet_from_text(KEY_JSON, WalletSource("x")), Wallet)
