"""Token amounts between base units and the UI units users type and read (exact, in decimal)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from psyche.errors import ConfigError


def ui_amount(base_units: int, decimals: int) -> float:
    """Base units as the token's UI amount (``base / 10**decimals``), as the reference prints it."""
    return float(base_units) / float(10**decimals)


def format_ui(base_units: int, decimals: int) -> str:
    """An exact decimal rendering of ``base_units`` in UI units (no float rounding)."""
    text = str(Decimal(base_units).scaleb(-decimals))
    return text if "E" not in text else f"{Decimal(base_units).scaleb(-decimals):f}"


def to_base_units(text: str, decimals: int, what: str) -> int:
    """A UI amount (``"1.5"``) in base units: ``round(ui * 10**decimals)`` computed exactly in decimal.

    Raises:
        ConfigError: ``text`` is not a number, is negative or not finite, or overflows a u64 (names ``what``).
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"{what}: not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{what}: must be a finite amount of zero or more, got {text!r}")
    base = int(value.scaleb(decimals).to_integral_value(rounding=ROUND_HALF_EVEN))
    if base >= 2**64:
        raise ConfigError(f"{what}: {text} is too large for a u64 in base units (decimals {decimals})")
    return base
