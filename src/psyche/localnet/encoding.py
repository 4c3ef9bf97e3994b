"""Account and data encodings of Solana's RPC: base58, base64, base64+zstd, jsonParsed (SPL Token), slices."""

from __future__ import annotations

import base64
from typing import Any

from psyche import base58
from psyche.base58 import b58encode
from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.programs import TOKEN_PROGRAM_ID
from psyche.errors import AccountDecodeError
from psyche.localnet.records import Account

RENT_EPOCH = 2**64 - 1
MAX_BASE58_BYTES = 128


class EncodingError(ValueError):
    """The request asks for an encoding this data cannot have (answered as an invalid-params error)."""


def b58decode(text: str) -> bytes:
    """psyche.base58.b58decode, failing as an EncodingError (the RPC answers it as invalid params)."""
    try:
        return base58.b58decode(text)
    except base58.Base58Error as exc:
        raise EncodingError(f"invalid base58 character {text[exc.position - 1]!r}") from None


def zstd_compress(data: bytes) -> bytes:
    """``data`` as one zstd frame (the account encoding ``base64+zstd``)."""
    import zstandard  # imported lazily: only clients asking for base64+zstd pay for it

    return bytes(zstandard.ZstdCompressor().compress(data))


def encode_data(data: bytes, encoding: str) -> Any:
    """``data`` as the RPC's ``[payload, encoding]`` pair (a bare base58 string for legacy ``binary``)."""
    if encoding in ("base58", "binary"):
        if len(data) > MAX_BASE58_BYTES:
            raise EncodingError(
                f"Encoded binary (base 58) data should be less than {MAX_BASE58_BYTES} bytes, "
                "please use Base64 encoding."
            )
        text = b58encode(data)
        return text if encoding == "binary" else [text, "base58"]
    if encoding == "base64":
        return [base64.b64encode(data).decode(), "base64"]
    if encoding == "base64+zstd":
        return [base64.b64encode(zstd_compress(data)).decode(), "base64+zstd"]
    raise EncodingError(f"unsupported encoding: {encoding}")


def _ui_amount(amount: int, decimals: int) -> dict[str, Any]:
    ui = amount / 10**decimals
    text = str(amount) if decimals == 0 else f"{amount / 10**decimals:.{decimals}f}".rstrip("0").rstrip(".")
    return {"amount": str(amount), "decimals": decimals, "uiAmount": ui, "uiAmountString": text}


def token_amount(account: TokenAccount, decimals: int) -> dict[str, Any]:
    """The ``uiTokenAmount`` object Solana's jsonParsed encoding gives for a token account's balance."""
    return _ui_amount(account.amount, decimals)


def _parsed_token(account: Account, mints: dict[bytes, int]) -> dict[str, Any] | None:
    data = bytes(account.data)
    try:
        if len(data) == TokenAccount.SIZE:
            tok = TokenAccount.decode(data)
            info: dict[str, Any] = {
                "isNative": tok.is_native is not None,
                "mint": str(tok.mint),
                "owner": str(tok.owner),
                "state": {0: "uninitialized", 1: "initialized", 2: "frozen"}[int(tok.state)],
                "tokenAmount": _ui_amount(tok.amount, mints.get(bytes(tok.mint), 0)),
            }
            if tok.delegate is not None:
                info["delegate"] = str(tok.delegate)
            return {"program": "spl-token", "parsed": {"info": info, "type": "account"}, "space": len(data)}
        if len(data) == Mint.SIZE:
            mint = Mint.decode(data)
            info = {
                "decimals": mint.decimals,
                "freezeAuthority": str(mint.freeze_authority) if mint.freeze_authority else None,
                "isInitialized": mint.is_initialized,
                "mintAuthority": str(mint.mint_authority) if mint.mint_authority else None,
                "supply": str(mint.supply),
            }
            return {"program": "spl-token", "parsed": {"info": info, "type": "mint"}, "space": len(data)}
    except AccountDecodeError:
        return None
    return None


def account_json(
    account: Account,
    encoding: str = "base64",
    data_slice: dict[str, int] | None = None,
    mint_decimals: dict[bytes, int] | None = None,
) -> dict[str, Any]:
    """The RPC ``UiAccount`` object."""
    data = bytes(account.data)
    encoded: Any = None
    if encoding == "jsonParsed":
        if account.owner == TOKEN_PROGRAM_ID:
            encoded = _parsed_token(account, mint_decimals or {})
        # Solana falls back to base64 when it has no parser for the account.
        encoding = "base64"
    if encoded is None:
        if data_slice is not None:
            offset, length = int(data_slice.get("offset", 0)), int(data_slice.get("length", len(data)))
            data = data[offset : offset + length]
        encoded = encode_data(data, encoding)
    return {
        "data": encoded,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": RENT_EPOCH,
        "space": len(account.data),
    }


def matches_filters(account: Account, filters: list[dict[str, Any]]) -> bool:
    """getProgramAccounts/programSubscribe filters: ``dataSize`` and ``memcmp`` (base58 or base64 bytes)."""
    data = account.data
    for f in filters:
        if "dataSize" in f:
            if len(data) != int(f["dataSize"]):
                return False
        elif "memcmp" in f:
            m = f["memcmp"]
            raw = m["bytes"]
            wanted = base64.b64decode(raw) if m.get("encoding") == "base64" else b58decode(raw)
            offset = int(m.get("offset", 0))
            if bytes(data[offset : offset + len(wanted)]) != wanted:
                return False
        else:
            raise EncodingError(f"unsupported filter: {sorted(f)}")
    return True
