"""RPC endpoint pairs and the redaction of credentials from endpoint URLs before they reach any message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MASK = "***"
# A redacted value longer than this is cut (a pasted file in RPC= must not flood the terminal).
MAX_SHOWN = 200

# Runs of URL-safe characters are what a key is made of: Helius/QuickNode/Alchemy/Triton/Ankr put 32-hex,
# base58, base64url or UUID keys in the path. A run is a key when it is long and token-shaped; real path
# parts ("v2", "rpc", "solana-mainnet") are short or contain no digit. '.' and '/' end a run, so host
# labels and file names are judged piece by piece.
_RUN = re.compile(r"[A-Za-z0-9_\-~+=%]+")
_MIN_TOKEN_WITH_DIGIT = 16
_MIN_TOKEN_ANY = 24
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}\.?|{_LABEL}|\[[0-9A-Fa-f:.]+\]")

_Piece = tuple[str, bool]  # (text, is it a secret)


def _is_token(run: str) -> bool:
    if len(run) >= _MIN_TOKEN_ANY:
        return True
    return len(run) >= _MIN_TOKEN_WITH_DIGIT and any(c.isdigit() for c in run)


def _tokens(text: str) -> list[_Piece]:
    """``text`` cut into pieces, each token-shaped run of characters marked secret."""
    pieces: list[_Piece] = []
    end = 0
    for match in _RUN.finditer(text):
        if _is_token(match.group()):
            pieces += [(text[end : match.start()], False), (match.group(), True)]
            end = match.end()
    pieces.append((text[end:], False))
    return pieces


def _host_port(authority: str) -> list[_Piece]:
    if authority.startswith("["):  # an IPv6 literal, closed or not
        end = authority.index("]") + 1 if "]" in authority else len(authority)
    else:
        end = authority.find(":") if ":" in authority else len(authority)
    host, rest = authority[:end], authority[end:]
    # A dotted name or an IP literal is a host, never a key; one bare label is judged like a path part.
    named = bool(_HOST.fullmatch(host)) and ("." in host or host.startswith("["))
    pieces: list[_Piece] = [(host, False)] if named else _tokens(host)
    if rest.startswith(":"):
        pieces += [(":", False), (rest[1:], not rest[1:].isdigit())]
    elif rest:
        pieces.append((rest, True))
    return pieces


def _query(query: str) -> list[_Piece]:
    # Every query value is hidden: on RPC URLs the query string carries credentials, not settings.
    pieces: list[_Piece] = []
    for index, item in enumerate(query.split("&")):
        if index:
            pieces.append(("&", False))
        name, equals, value = item.partition("=")
        pieces += _tokens(name)
        if equals:
            pieces += [("=", False), (value, bool(value))]
    return pieces


def _pieces(url: str) -> list[_Piece]:
    """Cut ``url`` (any text: a URL, a malformed one, garbage) into kept and secret pieces."""
    head, hash_mark, fragment = url.partition("#")
    head, question_mark, query = head.partition("?")
    pieces: list[_Piece] = []
    scheme = _SCHEME.match(head)
    if scheme:
        pieces.append((scheme.group(), False))
        head = head[scheme.end() :]
    # Userinfo is everything before the last '@' (a password may hold '/' or ':'); without a scheme
    # nothing is known about the shape, so the same rule still hides `user:pass@host`.
    userinfo, at, after = head.rpartition("@")
    if at:
        pieces += [(userinfo, True), ("@", False)]
        head = after
    if scheme:
        authority, slash, path = head.partition("/")
        pieces += _host_port(authority)
        head = slash + path
    pieces += _tokens(head)
    if question_mark:
        pieces += [("?", False), *_query(query)]
    if hash_mark:
        pieces += [("#", False), (fragment, bool(fragment))]
    return pieces


def redact(url: str) -> str:
    """Return ``url`` with every credential hidden, whatever its shape (docs/rpc.md, "Redaction rules").

    ``user:pass@host`` -> ``***@host``; ``?api-key=abc&x=1`` -> ``?api-key=***&x=***``; a run of URL-safe
    characters of >= 24, or >= 16 with a digit, -> ``***`` (QuickNode/Alchemy/Triton path keys); a
    non-numeric port and a fragment -> ``***``. The scheme, a dotted host or IP, a numeric port and short
    path parts stay, so endpoints remain recognisable. Malformed text (no ``://``, spaces, a bad port)
    gets the same rules, except that nothing in it is trusted to be a host. Long results are cut.
    """
    shown = "".join(MASK if secret and text else text for text, secret in _pieces(url))
    return shown if len(shown) <= MAX_SHOWN else shown[: MAX_SHOWN - 1] + "…"


def secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` that :func:`redact` hides, longest first."""
    return sorted({text for text, secret in _pieces(url) if secret and text}, key=len, reverse=True)


def scrub(text: str, urls: Iterable[str]) -> str:
    """``text`` (a library's error message) with each of ``urls``, and each secret part of it, redacted.

    Libraries quote the URL they were given, sometimes normalised; replacing the secret parts one by one
    also catches a key quoted on its own.
    """
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact(url))
        for part in secret_parts(url):
            text = text.replace(part, MASK)
    return text


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
