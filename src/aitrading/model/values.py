"""Exact prices, volumes and money.

Prices are integers of 1e-9 ("raw prices") and volumes integers of 1e-8 lots, so market data moves through
the hot path as plain ints with no float drift (NautilusTrader stores prices the same way). Money is
`Decimal`, quantized to the account currency's digits when booked. See docs/adr/0002-exact-values.md.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

__all__ = [
    "PRICE_DECIMALS",
    "PRICE_SCALE",
    "VOLUME_DECIMALS",
    "VOLUME_SCALE",
    "money",
    "price_decimal",
    "price_float",
    "price_raw",
    "round_price_raw",
    "volume_decimal",
    "volume_float",
    "volume_raw",
]

PRICE_DECIMALS = 9
PRICE_SCALE: int = 1_000_000_000
VOLUME_DECIMALS = 8
VOLUME_SCALE: int = 100_000_000
# Decimal's default context keeps 28 digits and would round silently; these conversions must be exact.
_EXACT = Context(prec=400, Emax=10**6, Emin=-(10**6))
_MAX_EXACT_FLOAT_PRICE = 2**53 / PRICE_SCALE  # ~9.0e6: below it a float of ≤9 decimals round-trips exactly


def _to_raw(value: float | int | str | Decimal, scale: int, decimals: int, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} cannot be a bool")
    if isinstance(value, int):
        return value * scale
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value!r}")
        if abs(value) < _MAX_EXACT_FLOAT_PRICE:
            return round(value * scale)
        value = repr(value)
    try:
        dec = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not dec.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    scaled = dec.scaleb(decimals, context=_EXACT)
    if scaled != scaled.to_integral_value(context=_EXACT):
        raise ValueError(f"{what} {value} has more than {decimals} decimals")
    return int(scaled)


def price_raw(value: float | int | str | Decimal) -> int:
    """Return the raw (1e-9) integer price of `value`; floats from MT5 convert exactly."""
    return _to_raw(value, PRICE_SCALE, PRICE_DECIMALS, "price")


def round_price_raw(raw: int, digits: int) -> int:
    """Round a raw price to a symbol's `digits`, half away from zero (MT5's NormalizeDouble)."""
    step = int(10 ** (PRICE_DECIMALS - digits))
    q, r = divmod(abs(raw), step)
    if 2 * r >= step:
        q += 1
    return q * step if raw >= 0 else -q * step


def price_decimal(raw: int) -> Decimal:
    """Return the exact `Decimal` of a raw price."""
    return Decimal(raw).scaleb(-PRICE_DECIMALS, context=_EXACT).normalize(context=_EXACT)


def price_float(raw: int) -> float:
    """Return the nearest float of a raw price (for display and numeric libraries, never for booking)."""
    return raw / PRICE_SCALE


def volume_raw(value: float | int | str | Decimal) -> int:
    """Return the raw (1e-8 lot) integer volume of `value`."""
    return _to_raw(value, VOLUME_SCALE, VOLUME_DECIMALS, "volume")


def volume_decimal(raw: int) -> Decimal:
    """Return the exact `Decimal` of a raw volume."""
    return Decimal(raw).scaleb(-VOLUME_DECIMALS, context=_EXACT).normalize(context=_EXACT)


def volume_float(raw: int) -> float:
    """Return the nearest float of a raw volume."""
    return raw / VOLUME_SCALE


_QUANTA = tuple(Decimal(1).scaleb(-d) for d in range(19))
"""10^-digits for every currency's digits: `money` runs several times per quote in a backtest."""


def money(value: Decimal | int | str, digits: int = 2) -> Decimal:
    """Quantize an amount of money to `digits` decimals, half away from zero as brokers book it."""
    quantum = _QUANTA[digits] if 0 <= digits < len(_QUANTA) else Decimal(1).scaleb(-digits)
    return Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)
