"""Load the wallet keypair (raw JSON/base58 text, a key file, or the Solana CLI default) and check it."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psyche.base58 import b58decode
from psyche.boundedread import KEY_FILE_MAX_BYTES, InputRefused, json_nesting, read_bounded
from psyche.errors import WalletError
from psyche.manager.constants import EnvVars
from psyche.manager.settings import Settings

if TYPE_CHECKING:
    from solders.keypair import Keypair

_KEYPAIR_BYTES = 64
_SEED_BYTES = 32
_B58_KEYPAIR_MAX_CHARS = 88  # ceil(64 * log(256) / log(58))
_MAX_INT_DIGITS = 8


@dataclass(frozen=True, slots=True)
class WalletSource:
    """Where the key came from, in words safe to print: 'RAW_WALLET_PRIVATE_KEY in .env:4', a file path."""

    description: str
    path: Path | None = None


class Wallet:
    """A checked Solana keypair; repr and str show the public key only."""

    __slots__ = ("_keypair", "pubkey", "source", "warnings")

    def __init__(self, keypair: Keypair, source: WalletSource, warnings: tuple[str, ...] = ()) -> None:
        self._keypair = keypair
        self.pubkey = str(keypair.pubkey())
        self.source = source
        self.warnings = warnings

    def keypair(self) -> Keypair:
        """The solders Keypair, for signing transactions."""
        return self._keypair

    def secret_for_env(self) -> str:
        """The key as the Solana JSON byte array text, for the client container's RAW_WALLET_PRIVATE_KEY."""
        return json.dumps(list(bytes(self._keypair)), separators=(",", ":"))

    def __repr__(self) -> str:
        return f"Wallet(pubkey={self.pubkey!r}, source={self.source.description!r})"

    def __str__(self) -> str:
        return self.pubkey

    def __reduce__(self) -> str | tuple[Any, ...]:
        # Pickling would write the secret somewhere we do not control.
        raise TypeError("a Wallet cannot be pickled")


def load_wallet(settings: Settings) -> Wallet:
    """Load the first key given: RAW_WALLET_PRIVATE_KEY, WALLET_PRIVATE_KEY_PATH, WALLET_PATH, or the default.

    The default is ~/.config/solana/id.json under the HOME of the injected environment.

    Raises:
        WalletError: no key is configured, or the one given cannot be read or does not hold together.
    """
    if settings.raw_wallet_private_key is not None:
        origin = f"{EnvVars.RAW_WALLET_PRIVATE_KEY} {settings.where(EnvVars.RAW_WALLET_PRIVATE_KEY)}"
        return wallet_from_text(settings.raw_wallet_private_key.reveal(), WalletSource(origin))
    for name, path in (
        (EnvVars.WALLET_PRIVATE_KEY_PATH, settings.wallet_private_key_path),
        (EnvVars.WALLET_PATH, settings.wallet_path),
    ):
        if path is not None:
            return wallet_from_file(path, WalletSource(f"{name} {settings.where(name)}", path))
    default = settings.default_wallet_path
    if default is None:
        raise WalletError(
            "No wallet configured and no HOME for the default ~/.config/solana/id.json",
            hint=f"set {EnvVars.WALLET_PRIVATE_KEY_PATH} or {EnvVars.RAW_WALLET_PRIVATE_KEY} in your .env",
        )
    return wallet_from_file(default, WalletSource("the default ~/.config/solana/id.json", default))


def wallet_from_file(path: Path, source: WalletSource) -> Wallet:
    """Read a key file (Solana JSON array, or base58 text) and warn when others may read it.

    Raises:
        WalletError: the file cannot be read, is not text, or does not hold a keypair.
    """
    try:
        mode = path.stat().st_mode
        data = read_bounded(path, KEY_FILE_MAX_BYTES)
    except InputRefused as exc:
        raise WalletError(
            f"Failed to read wallet file from: {path} ({exc}; path from {source.description})",
            hint=f"point {EnvVars.WALLET_PRIVATE_KEY_PATH} at a keypair file made by solana-keygen "
            "(a JSON array of 64 numbers)",
        ) from None
    except OSError as exc:
        reason = (
            "no such file" if isinstance(exc, FileNotFoundError) else (exc.strerror or type(exc).__name__)
        )
        raise WalletError(
            f"Failed to read wallet file from: {path} ({reason}; path from {source.description})",
            hint=f"check the path and permissions (chmod 600), set {EnvVars.WALLET_PRIVATE_KEY_PATH}, "
            "or create a key with solana-keygen new",
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WalletError(
            f"wallet file {path}: not text; expected a Solana keypair file (a JSON array)"
        ) from None
    warnings: tuple[str, ...] = ()
    if stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO):
        warnings = (
            f"wallet file {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run chmod 600 {path}",
        )
    wallet = wallet_from_text(text, WalletSource(f"wallet file {path}", path))
    return Wallet(wallet._keypair, source, warnings)


def wallet_from_text(text: str, source: WalletSource) -> Wallet:
    """Parse key text: a JSON byte array when it starts with '[', otherwise base58 of the 64 keypair bytes.

    Raises:
        WalletError: the text is not a keypair, or its public half does not match its secret half.
    """
    if len(text) > KEY_FILE_MAX_BYTES:
        raise WalletError(
            f"{source.description}: {len(text)} characters, too long for a key",
            hint="a keypair is a JSON array of 64 numbers or at most 88 base58 characters",
        )
    raw = (
        _json_bytes(text.strip(), source)
        if text.strip().startswith("[")
        else _b58_bytes(text.strip(), source)
    )
    # Check ourselves that the public half belongs to the secret half, with our own message.
    from solders.keypair import Keypair

    derived = Keypair.from_seed(raw[:_SEED_BYTES])
    if bytes(derived.pubkey()) != raw[_SEED_BYTES:]:
        raise WalletError(
            f"{source.description}: the public half of the keypair does not match its secret half",
            hint="the key text is damaged or assembled from two keys; export it again with solana-keygen",
        )
    return Wallet(derived, source)


def _json_bytes(text: str, source: WalletSource) -> bytes:
    depth = json_nesting(text)
    if depth > 1:
        raise WalletError(
            f"{source.description}: a JSON array nested {depth} levels deep; "
            "expected a flat JSON array of 64 numbers"
        )
    try:
        # Long numbers become None (so "not a byte") before int() meets its 4300-digit limit.
        values = json.loads(text, parse_int=_small_int)
    except json.JSONDecodeError as exc:
        # The decoder's message holds only a position, never the text.
        raise WalletError(
            f"{source.description}: not a valid JSON array ({exc.msg} at char {exc.pos})"
        ) from None
    if not isinstance(values, list):
        raise WalletError(f"{source.description}: expected a JSON array of 64 numbers")
    if len(values) != _KEYPAIR_BYTES:
        raise WalletError(
            f"{source.description}: JSON key array has {len(values)} numbers, expected 64",
            hint="a Solana keypair file holds the 32-byte secret followed by the 32-byte public key",
        )
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise WalletError(
                f"{source.description}: JSON key array item {index} is not a byte (an integer 0 to 255)"
            )
    return bytes(values)


def _small_int(digits: str) -> int | None:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else None


def _b58_bytes(text: str, source: WalletSource) -> bytes:
    if not text:
        raise WalletError(f"{source.description}: empty; expected a JSON byte array or a base58 keypair")
    if len(text) > _B58_KEYPAIR_MAX_CHARS:
        # Checked before decoding: base58 decoding is quadratic (300 kB took 23 s).
        raise WalletError(
            f"{source.description}: base58 key of {len(text)} characters; "
            f"a 64-byte keypair is at most {_B58_KEYPAIR_MAX_CHARS}",
            hint="use the whole keypair (secret and public halves) as exported by solana-keygen or Phantom",
        )
    try:
        raw = b58decode(text)
    except ValueError as exc:
        raise WalletError(f"{source.description}: not valid base58 ({exc})") from None
    if len(raw) != _KEYPAIR_BYTES:
        raise WalletError(
            f"{source.description}: base58 key decodes to {len(raw)} bytes, expected 64",
            hint="use the whole keypair (secret and public halves) as exported by solana-keygen or Phantom",
        )
    return raw
