"""RPC endpoint pairs and the redaction of API keys from endpoint URLs before they reach any message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "***"

# A path segment is treated as a key when it is long and token-shaped: Helius/QuickNode/Alchemy/Triton put
# 32-hex, base58 or UUID keys in the path, while real path parts ("v2", "rpc", "solana-mainnet") are short
# or contain no digit.
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_\-.~]+")
_MIN_TOKEN_WITH_DIGIT = 16
_MIN_TOKEN_ANY = 24


def _is_token(segment: str) -> bool:
    if not _TOKEN_SEGMENT.fullmatch(segment):
        return False
    if len(segment) >= _MIN_TOKEN_ANY:
        return True
    return len(segment) >= _MIN_TOKEN_WITH_DIGIT and any(c.isdigit() for c in segment)


def _redact_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        # Every query value is hidden: on RPC URLs the query string carries credentials, not settings.
        parts.append(f"{name}={MASK}" if sep and value else item)
    return "&".join(parts)


def redact(url: str) -> str:
    """Return ``url`` with credentials hidden: userinfo, every query value, token-like path segments.

    Rules (docs/rpc.md): ``user:pass@host`` -> ``***@host``; ``?api-key=abc&x=1`` -> ``?api-key=***&x=***``;
    a path segment of >= 24 URL-safe characters, or >= 16 with a digit, -> ``***``; a fragment -> ``***``.
    Scheme, host, port and short path parts stay, so endpoints remain recognisable. A string that does
    not parse as a URL is masked entirely.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    path = "/".join(MASK if _is_token(seg) else seg for seg in parts.path.split("/"))
    return urlunsplit(
        SplitResult(
            parts.scheme,
            netloc,
            path,
            _redact_query(parts.query),
            MASK if parts.fragment else "",
        )
    )


def redacted_labels(urls: Iterable[str]) -> list[str]:
    """Redact each URL, suffixing ``#n`` where two endpoints would otherwise read the same."""
    labels: list[str] = []
    for url in urls:
        label = redact(url)
        if label in labels:
            label = f"{label} #{len(labels) + 1}"
        labels.append(label)
    return labels


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One RPC endpoint: the HTTP JSON-RPC URL and, optionally, its WebSocket pubsub URL."""

    http: str
    ws: str | None = None

    def __repr__(self) -> str:
        # URLs may carry API keys; a repr ends up in logs and tracebacks, so it shows the redacted form.
        ws = "None" if self.ws is None else repr(redact(self.ws))
        return f"Endpoint(http={redact(self.http)!r}, ws={ws})"

    def __str__(self) -> str:
        return redact(self.http)
