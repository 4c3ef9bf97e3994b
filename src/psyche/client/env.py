"""The client's protocol settings: the container environment parsed into a frozen ClientEnv (contract 3.2)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.boundedread import KEY_FILE_MAX_BYTES, InputRefused, read_bounded
from psyche.chain.endpoints import Endpoint, redact
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, PERMISSIONLESS_GRANTEE, ProgramIds
from psyche.env_contract import ClientEnvVars
from psyche.errors import ConfigError, WalletError

DEFAULT_RPC: Final = "http://127.0.0.1:8899"
DEFAULT_WS_RPC: Final = "ws://127.0.0.1:8900"
BACKUP_NUMBERS: Final = (2, 3)  # contract 2.4: (RPC_2, WS_RPC_2) and (RPC_3, WS_RPC_3)
_KEYPAIR_BYTES = 64
_IDENTITY_BYTES = 32


@dataclass(frozen=True, slots=True)
class ClientEnv:
    """What the environment says about following and joining the run; parse with ``load_client_env``."""

    endpoints: tuple[Endpoint, ...]
    run_id: str
    keypair: Keypair = field(repr=False)
    authorizer: Pubkey = PERMISSIONLESS_GRANTEE  # the grantee of the join authorization
    client_version: str | None = None
    identity_secret: bytes | None = field(default=None, repr=False)
    programs: ProgramIds = DEFAULT_PROGRAM_IDS

    @property
    def rpc_urls(self) -> list[str]:
        return [e.http for e in self.endpoints]

    @property
    def ws_urls(self) -> list[str]:
        return [e.ws for e in self.endpoints if e.ws]


def _trimmed(raw: str) -> str:
    return raw.strip().strip('"').strip("'").strip()


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(raw)
    except ValueError:  # "http://[::1" (an unclosed IPv6 bracket)
        parts = urlsplit("")
    if parts.scheme not in schemes or not parts.netloc:
        kind = "an http(s)" if schemes[0] == "http" else "a ws(s)"
        raise ConfigError(f"{name}: not {kind} URL: {redact(raw)!r}")
    return raw


def _endpoints(env: Mapping[str, str]) -> tuple[Endpoint, ...]:
    http = _url(ClientEnvVars.RPC, _trimmed(env.get(ClientEnvVars.RPC, "")) or DEFAULT_RPC, ("http", "https"))
    ws = _url(
        ClientEnvVars.WS_RPC, _trimmed(env.get(ClientEnvVars.WS_RPC, "")) or DEFAULT_WS_RPC, ("ws", "wss")
    )
    out = [Endpoint(http, ws)]
    for n in BACKUP_NUMBERS:
        http_name, ws_name = ClientEnvVars.backup_rpc(n), ClientEnvVars.backup_ws_rpc(n)
        # Contract 2.4: a backup counts only when both halves are set; one equal to the primary is dropped.
        backup_http, backup_ws = env.get(http_name, "").strip(), env.get(ws_name, "").strip()
        if not backup_http or not backup_ws or backup_http == http:
            continue
        out.append(
            Endpoint(_url(http_name, backup_http, ("http", "https")), _url(ws_name, backup_ws, ("ws", "wss")))
        )
    return tuple(out)


def _pubkey(name: str, raw: str) -> Pubkey:
    try:
        return Pubkey.from_string(raw)
    except ValueError:
        raise ConfigError(f"{name}: not a base58 public key: {raw!r}") from None


def _keypair_from_text(text: str, where: str) -> Keypair:
    # Messages name where the key came from, never any of its characters.
    text = text.strip()
    try:
        if text.startswith("["):
            values = json.loads(text)
            if not isinstance(values, list) or not all(isinstance(v, int) and 0 <= v < 256 for v in values):
                raise WalletError(f"{where}: not a JSON array of bytes")
            raw = bytes(values)
            if len(raw) != _KEYPAIR_BYTES:
                raise WalletError(f"{where}: a keypair is {_KEYPAIR_BYTES} bytes, got {len(raw)}")
            return Keypair.from_bytes(raw)
        return Keypair.from_base58_string(text)
    except WalletError:
        raise
    except (ValueError, TypeError, OverflowError):
        raise WalletError(f"{where}: not a valid keypair (JSON byte array or base58)") from None
    except BaseException as exc:  # solders panics (pyo3 PanicException) on some bad base58 input
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise WalletError(f"{where}: not a valid keypair (JSON byte array or base58)") from None


def load_keypair(env: Mapping[str, str]) -> Keypair:
    """The wallet: ``RAW_WALLET_PRIVATE_KEY`` (JSON array or base58) wins over ``WALLET_PRIVATE_KEY_PATH``."""
    raw = _trimmed(env.get(ClientEnvVars.RAW_WALLET_PRIVATE_KEY, ""))
    if raw:
        return _keypair_from_text(raw, ClientEnvVars.RAW_WALLET_PRIVATE_KEY)
    path_text = env.get(ClientEnvVars.WALLET_PRIVATE_KEY_PATH, "").strip()
    if not path_text:
        raise ConfigError(
            f"no wallet: set {ClientEnvVars.RAW_WALLET_PRIVATE_KEY} "
            f"or {ClientEnvVars.WALLET_PRIVATE_KEY_PATH}"
        )
    path = Path(path_text)
    try:
        text = read_bounded(path, KEY_FILE_MAX_BYTES).decode()
    except InputRefused as exc:
        raise WalletError(f"{ClientEnvVars.WALLET_PRIVATE_KEY_PATH}: cannot read {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WalletError(
            f"{ClientEnvVars.WALLET_PRIVATE_KEY_PATH}: cannot read {path}: {type(exc).__name__}"
        ) from None
    return _keypair_from_text(text, f"{ClientEnvVars.WALLET_PRIVATE_KEY_PATH} {path}")


def _identity_secret(env: Mapping[str, str]) -> bytes | None:
    raw = env.get(ClientEnvVars.RAW_IDENTITY_SECRET_KEY, "").strip()
    name = ClientEnvVars.RAW_IDENTITY_SECRET_KEY
    if not raw:
        path_text = env.get(ClientEnvVars.IDENTITY_SECRET_KEY_PATH, "").strip()
        if not path_text:
            return None
        name = ClientEnvVars.IDENTITY_SECRET_KEY_PATH
        try:
            data = read_bounded(Path(path_text), KEY_FILE_MAX_BYTES)
        except InputRefused as exc:
            raise ConfigError(f"{name}: cannot read {path_text}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path_text}: {type(exc).__name__}") from None
        if len(data) == _IDENTITY_BYTES:
            return data
        raw = data.decode("ascii", "replace").strip()
    try:
        secret = bytes.fromhex(raw)
    except ValueError:
        raise ConfigError(f"{name}: not {_IDENTITY_BYTES} bytes of hex") from None
    if len(secret) != _IDENTITY_BYTES:
        raise ConfigError(f"{name}: expected {_IDENTITY_BYTES} bytes of hex, got {len(secret)} bytes")
    return secret


def _programs(env: Mapping[str, str]) -> ProgramIds:
    def pick(name: str, default: Pubkey) -> Pubkey:
        raw = _trimmed(env.get(name, ""))
        return _pubkey(name, raw) if raw else default

    d = DEFAULT_PROGRAM_IDS
    return ProgramIds(
        pick(ClientEnvVars.COORDINATOR_PROGRAM_ID, d.coordinator),
        pick(ClientEnvVars.AUTHORIZER_PROGRAM_ID, d.authorizer),
        pick(ClientEnvVars.TREASURER_PROGRAM_ID, d.treasurer),
    )


def load_client_env(environ: Mapping[str, str] | None = None) -> ClientEnv:
    """Parse the protocol variables; a missing or bad value is a one-line ConfigError or WalletError."""
    env = os.environ if environ is None else environ
    run_id = _trimmed(env.get(ClientEnvVars.RUN_ID, ""))
    if not run_id:
        raise ConfigError(f"{ClientEnvVars.RUN_ID}: not set (the run to train)")
    if len(run_id.encode()) > 32:
        raise ConfigError(f"{ClientEnvVars.RUN_ID}: at most 32 bytes, got {len(run_id.encode())}")
    authorizer_raw = _trimmed(env.get(ClientEnvVars.AUTHORIZER, ""))
    version = _trimmed(env.get(ClientEnvVars.CLIENT_VERSION, ""))
    return ClientEnv(
        endpoints=_endpoints(env),
        run_id=run_id,
        keypair=load_keypair(env),
        authorizer=_pubkey(ClientEnvVars.AUTHORIZER, authorizer_raw)
        if authorizer_raw
        else PERMISSIONLESS_GRANTEE,
        client_version=version or None,
        identity_secret=_identity_secret(env),
        programs=_programs(env),
    )
