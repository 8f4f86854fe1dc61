"""Exact conversions between scaled integers, `Decimal` and `Fraction` (no context rounding anywhere).

`Decimal` arithmetic rounds silently to the context precision (28 digits by default), so booking code does
its sums on Python ints and converts at the edges with these helpers, which never round unless asked to.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from aitrading.model.values import PRICE_DECIMALS, PRICE_SCALE, VOLUME_DECIMALS, VOLUME_SCALE

__all__ = [
    "EXACT_UNITS",
    "NOTIONAL_DECIMALS",
    "NOTIONAL_SCALE",
    "decimal_from_scaled",
    "div_half_away",
    "div_half_even",
    "fraction_to_decimal",
    "fraction_to_money",
    "notional_decimal",
    "notional_from_decimal",
    "notional_raw",
    "scaled_from_decimal",
    "units_of",
]

NOTIONAL_DECIMALS = PRICE_DECIMALS + VOLUME_DECIMALS
"""A raw price times a raw volume is a notional in units of 1e-17 price × lots."""
NOTIONAL_SCALE = PRICE_SCALE * VOLUME_SCALE
_FALLBACK_PLACES = 30


def decimal_from_scaled(n: int, decimals: int) -> Decimal:
    """Return n × 10^-decimals exactly, however many digits `n` has."""
    return Decimal(f"{n}E{-decimals}")


def scaled_from_decimal(value: Decimal, decimals: int) -> int:
    """Return `value` × 10^decimals as an int; raise `ValueError` if that is not a whole number."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    # Exact: a finite Decimal is num / den with den = 2^a × 5^b (in C, not a str per digit: every fill and
    # position reads its exact cost back this way).
    num, den = value.as_integer_ratio()
    if decimals >= 0:
        num *= 10**decimals
    else:
        den *= 10 ** (-decimals)
    n, rest = divmod(num, den)
    if rest:
        raise ValueError(f"{value} has more than {decimals} decimals")
    return n


EXACT_UNITS = 10**25
"""Whole amounts below it (in units of 10^-digits) sum exactly in `Decimal`'s default 28-digit context, so
integer sums of them equal the `Decimal` sums: the valuations on integers take the `Decimal` path above it."""


def div_half_away(n: int, d: int) -> int:
    """Return n / d rounded to the nearest int, ties away from zero (d > 0), as money is rounded: the
    remainder is compared with the divisor, so an unreduced ratio rounds as its reduced form."""
    if n < 0:
        q, r = divmod(-n, d)
        return -q - 1 if 2 * r >= d else -q
    q, r = divmod(n, d)
    return q + 1 if 2 * r >= d else q


def units_of(value: Decimal, scale: int) -> int | None:
    """Return `value` × `scale` when that is a whole number below `EXACT_UNITS` in size, else None."""
    if not value.is_finite():
        return None
    if not value:  # a new position's profit and swap
        return 0
    num, den = value.as_integer_ratio()
    whole, rest = divmod(num * scale, den)
    return None if rest or abs(whole) >= EXACT_UNITS else whole


def div_half_even(n: int, d: int) -> int:
    """Return n / d rounded to the nearest int, ties to even (d > 0)."""
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q % 2):
        q += 1
    return q


def fraction_to_decimal(value: Fraction, places: int = _FALLBACK_PLACES) -> Decimal:
    """Return `value` as a `Decimal`: exactly when it terminates, else rounded half-even to `places`."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den == 1:
        k = max(twos, fives)
        return decimal_from_scaled(value.numerator * (10**k // value.denominator), k)
    return decimal_from_scaled(div_half_even(value.numerator * 10**places, value.denominator), places)


def fraction_to_money(value: Fraction, digits: int) -> Decimal:
    """Round `value` to `digits` decimals half away from zero, as `values.money` does, without a detour."""
    scaled = abs(value) * 10**digits
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r >= scaled.denominator:
        q += 1
    return decimal_from_scaled(-q if value < 0 else q, digits)


def notional_raw(price_raw: int, volume_raw: int) -> int:
    """Return price × volume in notional units (1e-17 price × lots)."""
    return price_raw * volume_raw


def notional_decimal(raw: int) -> Decimal:
    """Return a raw notional as an exact `Decimal` of price × lots."""
    return decimal_from_scaled(raw, NOTIONAL_DECIMALS)


def notional_from_decimal(value: Decimal) -> int:
    """Return the raw notional of an exact `Decimal` of price × lots."""
    return scaled_from_decimal(value, NOTIONAL_DECIMALS)
