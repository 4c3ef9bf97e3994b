"""Bitcoin-alphabet base58, the text form of Solana keys, signatures and memcmp bytes (the one copy).

Pure and dependency-free, so the run-manager's settings can check a key without importing solders.
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


class Base58Error(ValueError):
    """Text that is not base58: ``position`` (1-based) is the first character outside the alphabet.

    The message names the position only, never the character: the text may be a secret key.
    """

    def __init__(self, position: int) -> None:
        super().__init__(f"character {position} is not in the base58 alphabet")
        self.position = position


def b58encode(data: bytes) -> str:
    """``data`` as base58; each leading zero byte becomes a leading ``1``."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """The bytes ``text`` encodes; each leading ``1`` becomes a leading zero byte.

    Decoding is quadratic in the length: callers that read untrusted text bound its length first.

    Raises:
        Base58Error: a character outside the alphabet (a ValueError).
    """
    number = 0
    for position, char in enumerate(text, start=1):
        digit = _INDEX.get(char)
        if digit is None:
            raise Base58Error(position)
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def is_pubkey(text: str) -> bool:
    """True when ``text`` is base58 for exactly 32 bytes (a public key)."""
    try:
        return len(text) <= 44 and len(b58decode(text)) == 32
    except Base58Error:
        return False
