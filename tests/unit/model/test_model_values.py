"""Raw price/volume round trips, money quantization and the exact conversion helpers."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.model._exact import (
    decimal_from_scaled,
    div_half_even,
    fraction_to_decimal,
    fraction_to_money,
    scaled_from_decimal,
)
from aitrading.model.values import (
    money,
    price_decimal,
    price_float,
    price_raw,
    round_price_raw,
    volume_decimal,
    volume_raw,
)

raws = st.integers(min_value=-(10**18), max_value=10**18)


@given(raws)
def test_raw_price_round_trips_through_decimal_and_string(raw: int) -> None:
    assert price_raw(price_decimal(raw)) == raw
    assert price_raw(str(price_decimal(raw))) == raw


@given(st.integers(min_value=0, max_value=10**15))
def test_raw_price_below_float_limit_round_trips_through_float(raw: int) -> None:
    assert price_raw(price_float(raw)) == raw


@given(raws)
def test_raw_volume_round_trips_through_decimal(raw: int) -> None:
    assert volume_raw(volume_decimal(raw)) == raw


def test_mt5_floats_convert_to_the_raw_price_they_print_as() -> None:
    assert price_raw(1.10001) == 1_100_010_000
    assert volume_raw(0.01) == 1_000_000


@given(st.integers(min_value=-(10**15), max_value=10**15), st.integers(min_value=0, max_value=9))
def test_round_price_raw_lands_on_the_digits_grid_within_half_a_step(raw: int, digits: int) -> None:
    step = 10 ** (9 - digits)
    rounded = round_price_raw(raw, digits)
    assert rounded % step == 0
    assert 2 * abs(rounded - raw) <= step


@pytest.mark.parametrize(
    ("value", "expected"),
    [("100.005", "100.01"), ("-100.005", "-100.01"), ("100.004999", "100.00"), ("2.675", "2.68")],
)
def test_money_quantizes_half_away_from_zero(value: str, expected: str) -> None:
    assert money(Decimal(value)) == Decimal(expected)
    assert str(money(Decimal(value))) == expected


@given(st.integers(min_value=-(10**40), max_value=10**40), st.integers(min_value=0, max_value=30))
def test_scaled_decimal_conversion_is_exact_for_any_size(n: int, decimals: int) -> None:
    value = decimal_from_scaled(n, decimals)
    assert scaled_from_decimal(value, decimals) == n
    assert Fraction(value) == Fraction(n, 10**decimals)


def test_scaled_from_decimal_refuses_hidden_decimals() -> None:
    with pytest.raises(ValueError, match="more than 2 decimals"):
        scaled_from_decimal(Decimal("1.005"), 2)


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=1, max_value=10**12))
def test_div_half_even_matches_decimal_rounding(n: int, d: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 80
        expected = (Decimal(n) / Decimal(d)).to_integral_value(rounding=ROUND_HALF_EVEN)
    assert div_half_even(n, d) == int(expected)


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(0, 20), st.integers(0, 20))
def test_terminating_fractions_convert_to_decimal_exactly(n: int, twos: int, fives: int) -> None:
    value = Fraction(n, 2**twos * 5**fives)
    assert Fraction(fraction_to_decimal(value)) == value


@given(st.fractions(max_denominator=10**9).filter(lambda f: abs(f) < 10**12), st.integers(0, 6))
def test_fraction_to_money_rounds_like_money_on_the_exact_value(value: Fraction, digits: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 120
        exact = Decimal(value.numerator) / Decimal(value.denominator)
    if Fraction(exact) == value:  # terminating: money() can see the exact value
        assert fraction_to_money(value, digits) == money(exact, digits)
    step = Fraction(1, 10**digits)
    assert abs(Fraction(fraction_to_money(value, digits)) - value) <= step / 2


def test_huge_values_convert_exactly_or_are_refused_never_silently_rounded() -> None:
    from aitrading.model.values import price_decimal, price_raw, volume_decimal

    assert price_decimal(10**30 + 1) == Decimal("1000000000000000000000.000000001")
    assert volume_decimal(10**40 + 1) == Decimal("100000000000000000000000000000000.00000001")
    assert price_raw("1234567890123456789.123456789") == 1234567890123456789123456789
    with pytest.raises(ValueError, match="more than 9 decimals"):
        price_raw("1234567890123456789.1234567891")
