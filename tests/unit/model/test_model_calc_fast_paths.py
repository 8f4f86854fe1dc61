"""The integer fast paths of `model.calc` and `AccountState.of` equal the previous `Fraction` formulas.

`calc` and the account's margin level now compute on one integer numerator over one denominator instead
of `Fraction`s (for speed on the pre-trade path and the backtester's per-quote account state). The
reference functions below are the previous implementations, kept verbatim, so any drift in a digit, a
rounding direction or an error shows up on random inputs.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.model import calc
from aitrading.model._exact import fraction_to_money
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode, Side
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, money
from aitrading.mt5.specs import DEFAULT_SPECS

# --- the previous implementations (reference) ---------------------------------------------------------------


def _old_conversion_rate(
    currency: str, account_currency: str, rates: calc.Rates, *, use_ask_direct: bool, use_ask_inverse: bool
) -> Fraction:
    if currency == account_currency:
        return Fraction(1)
    direct = rates.quote(currency + account_currency)
    if direct is not None and min(direct) > 0:
        bid, ask = direct
        return Fraction(ask if use_ask_direct else bid, PRICE_SCALE)
    inverse = rates.quote(account_currency + currency)
    if inverse is not None and min(inverse) > 0:
        bid, ask = inverse
        return Fraction(PRICE_SCALE, ask if use_ask_inverse else bid)
    raise ValueError(f"no quote to convert {currency}")


def _old_margin_exact(
    spec: SymbolSpec,
    side: Side,
    volume_raw: int,
    price_raw: int,
    *,
    leverage: int,
    account_currency: str,
    rates: calc.Rates,
    margin_rate: Fraction | Decimal | int = 1,
) -> Fraction:
    base = Fraction(volume_raw, VOLUME_SCALE) * Fraction(spec.contract_size) * Fraction(margin_rate)
    mode = spec.trade_calc_mode
    if mode == calc.CALC_MODE_FOREX:
        amount = base / leverage
    elif mode == calc.CALC_MODE_FOREX_NO_LEVERAGE:
        amount = base
    elif mode == calc.CALC_MODE_CFD:
        amount = base * Fraction(price_raw, PRICE_SCALE)
    else:
        amount = base * Fraction(price_raw, PRICE_SCALE) / leverage
    buy = side is Side.BUY
    return amount * _old_conversion_rate(
        spec.currency_margin, account_currency, rates, use_ask_direct=buy, use_ask_inverse=buy
    )


def _old_profit_exact(
    spec: SymbolSpec, side: Side, volume_raw: int, open_raw: int, close_raw: int, *, rates: calc.Rates
) -> Fraction:
    amount = Fraction(side.sign * (close_raw - open_raw) * volume_raw, PRICE_SCALE * VOLUME_SCALE) * Fraction(
        spec.contract_size
    )
    loss = amount < 0
    return amount * _old_conversion_rate(
        spec.currency_profit, "USD", rates, use_ask_direct=loss, use_ask_inverse=not loss
    )


def _old_to_money(value: Fraction, digits: int = 2) -> Decimal:
    scaled = abs(value) * 10**digits
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r >= scaled.denominator:
        q += 1
    return money(Decimal(-q if value < 0 else q).scaleb(-digits), digits)


# --- inputs -------------------------------------------------------------------------------------------------


class _Quotes:
    def __init__(self, quotes: dict[str, tuple[int, int]]) -> None:
        self._q = quotes

    def quote(self, symbol: str) -> tuple[int, int] | None:
        return self._q.get(symbol)


_RAW_PRICES = st.integers(min_value=1, max_value=10**15)
_MODES = st.sampled_from(sorted(calc.SUPPORTED_CALC_MODES))
# Contract sizes as brokers report them: whole (100,000), small (0.01) or odd decimals (1.5, 12.345).
_SIZES = st.integers(min_value=1, max_value=10**8).flatmap(
    lambda n: st.integers(min_value=0, max_value=5).map(lambda e: Decimal(n).scaleb(-e))
)
_MARGIN_RATES = st.one_of(
    st.just(1),
    st.integers(min_value=0, max_value=10),
    st.fractions(min_value=0, max_value=10, max_denominator=10**6),
    st.decimals(min_value=0, max_value=10, places=4),
)


@st.composite
def _specs(draw: st.DrawFn) -> SymbolSpec:
    base = draw(st.sampled_from(sorted(DEFAULT_SPECS)))
    return msgspec.structs.replace(
        DEFAULT_SPECS[base],
        trade_calc_mode=draw(_MODES),
        contract_size=draw(_SIZES),
        currency_margin=draw(st.sampled_from(["USD", "EUR", "JPY"])),
        currency_profit=draw(st.sampled_from(["USD", "EUR", "JPY"])),
    )


@st.composite
def _rates(draw: st.DrawFn) -> _Quotes:
    """EURUSD quoted directly, USDJPY only inversely; either may be missing or unusable (≤ 0)."""
    quotes: dict[str, tuple[int, int]] = {}
    for symbol in ("EURUSD", "USDJPY"):
        kind = draw(st.sampled_from(["quote", "missing", "zero"]))
        if kind == "quote":
            bid = draw(_RAW_PRICES)
            quotes[symbol] = (bid, bid + draw(st.integers(min_value=0, max_value=10**7)))
        elif kind == "zero":
            quotes[symbol] = (0, draw(_RAW_PRICES))
    return _Quotes(quotes)


def _outcome(fn: object, *args: object, **kwargs: object) -> object:
    """The value (a `Decimal` as its exact digits and exponent), or the type of the exception raised."""
    try:
        value = fn(*args, **kwargs)  # type: ignore[operator]
    except (ValueError, ZeroDivisionError, InvalidOperation) as exc:
        # InvalidOperation: an amount of more than 28 digits cannot be quantized, before or now.
        return type(exc)
    return value.as_tuple() if isinstance(value, Decimal) else value


# --- margin, profit, rounding -------------------------------------------------------------------------------


@given(
    spec=_specs(),
    side=st.sampled_from(Side),
    volume=st.integers(min_value=0, max_value=10**12),
    price=_RAW_PRICES,
    leverage=st.integers(min_value=1, max_value=5000),
    rates=_rates(),
    margin_rate=_MARGIN_RATES,
    digits=st.integers(min_value=0, max_value=8),
)
def test_margin_equals_the_fraction_formula_exactly(
    spec: SymbolSpec,
    side: Side,
    volume: int,
    price: int,
    leverage: int,
    rates: _Quotes,
    margin_rate: Fraction | Decimal | int,
    digits: int,
) -> None:
    kwargs = {"leverage": leverage, "account_currency": "USD", "rates": rates, "margin_rate": margin_rate}
    expected = _outcome(_old_margin_exact, spec, side, volume, price, **kwargs)
    exact = _outcome(calc.margin_exact, spec, side, volume, price, **kwargs)
    assert exact == expected
    booked = _outcome(calc.margin, spec, side, volume, price, digits=digits, **kwargs)
    if isinstance(expected, Fraction):
        assert booked == _outcome(_old_to_money, expected, digits)
    else:
        assert booked is expected


@given(
    spec=_specs(),
    side=st.sampled_from(Side),
    volume=st.integers(min_value=0, max_value=10**12),
    open_=_RAW_PRICES,
    close=_RAW_PRICES,
    rates=_rates(),
    digits=st.integers(min_value=0, max_value=8),
)
def test_profit_equals_the_fraction_formula_exactly(
    spec: SymbolSpec, side: Side, volume: int, open_: int, close: int, rates: _Quotes, digits: int
) -> None:
    expected = _outcome(_old_profit_exact, spec, side, volume, open_, close, rates=rates)
    exact = _outcome(calc.profit_exact, spec, side, volume, open_, close, account_currency="USD", rates=rates)
    assert exact == expected
    booked = _outcome(
        calc.profit, spec, side, volume, open_, close, account_currency="USD", rates=rates, digits=digits
    )
    if isinstance(expected, Fraction):
        assert booked == _outcome(_old_to_money, expected, digits)
    else:
        assert booked is expected


@given(
    num=st.integers(min_value=-(10**30), max_value=10**30),
    den=st.integers(min_value=1, max_value=10**20),
    scale=st.integers(min_value=1, max_value=10**6),
    digits=st.integers(min_value=0, max_value=10),
)
def test_money_of_an_unreduced_ratio_rounds_like_to_money_of_the_fraction(
    num: int, den: int, scale: int, digits: int
) -> None:
    reference = _outcome(_old_to_money, Fraction(num, den), digits)
    for n, d in ((num, den), (num * scale, den * scale)):
        assert _outcome(calc.money_of, n, d, digits) == reference
    assert _outcome(calc.to_money, Fraction(num, den), digits) == reference


def test_money_of_ties_round_half_away_from_zero_and_negative_digits_are_refused() -> None:
    assert calc.money_of(5, 1000) == Decimal("0.01")
    assert calc.money_of(-50, 10_000) == Decimal("-0.01")
    assert calc.money_of(4999, 1_000_000) == Decimal("0.00")
    with pytest.raises(ValueError, match="digits"):
        calc.money_of(1, 1, -1)


@given(
    currency=st.sampled_from(["USD", "EUR", "JPY", "GBP"]),
    rates=_rates(),
    use_ask_direct=st.booleans(),
    use_ask_inverse=st.booleans(),
)
def test_conversion_rate_equals_the_fraction_formula(
    currency: str, rates: _Quotes, use_ask_direct: bool, use_ask_inverse: bool
) -> None:
    flags = {"use_ask_direct": use_ask_direct, "use_ask_inverse": use_ask_inverse}
    assert _outcome(calc.conversion_rate, currency, "USD", rates, **flags) == _outcome(
        _old_conversion_rate, currency, "USD", rates, **flags
    )


def test_margin_refuses_a_non_positive_leverage_and_an_unsupported_mode_as_before() -> None:
    spec = DEFAULT_SPECS["EURUSD"]
    rates = _Quotes({"EURUSD": (1_100_000_000, 1_100_020_000)})
    with pytest.raises(ValueError, match="leverage"):
        calc.margin(spec, Side.BUY, VOLUME_SCALE, 1, leverage=0, account_currency="USD", rates=rates)
    futures = msgspec.structs.replace(spec, trade_calc_mode=1)
    with pytest.raises(ValueError, match="not supported"):
        calc.margin(futures, Side.BUY, VOLUME_SCALE, 1, leverage=100, account_currency="USD", rates=rates)
    with pytest.raises(ValueError, match="not supported"):
        calc.profit(futures, Side.BUY, VOLUME_SCALE, 1, 2, account_currency="USD", rates=rates)


# --- account state ------------------------------------------------------------------------------------------

_AMOUNTS = st.decimals(min_value=-(10**12), max_value=10**12, places=4)


@given(
    balance=_AMOUNTS,
    credit=_AMOUNTS,
    floating=_AMOUNTS,
    margin=st.decimals(min_value=0, max_value=10**12, places=4),
    digits=st.integers(min_value=0, max_value=4),
)
def test_account_margin_level_equals_the_fraction_formula(
    balance: Decimal, credit: Decimal, floating: Decimal, margin: Decimal, digits: int
) -> None:
    state = AccountState.of(
        login=1,
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_HEDGING,
        balance=balance,
        credit=credit,
        floating=floating,
        margin=margin,
        digits=digits,
    )
    if state.margin == 0:
        assert state.margin_level is None
        return
    reference = fraction_to_money(Fraction(state.equity) * 100 / Fraction(state.margin), 2)
    assert state.margin_level is not None
    assert state.margin_level.as_tuple() == reference.as_tuple()
    assert state.equity == money(balance, digits) + money(credit, digits) + money(floating, digits)
    assert state.margin_free == state.equity - state.margin


@pytest.mark.parametrize(
    ("balance", "margin", "level"),
    [("0.01", "200", "0.01"), ("-0.01", "200", "-0.01"), ("1.23", "8", "15.38"), ("-1.23", "8", "-15.38")],
)
def test_account_margin_level_ties_round_half_away_from_zero(balance: str, margin: str, level: str) -> None:
    # 0.01 / 200 × 100 = 0.005 and 1.23 / 8 × 100 = 15.375: exact ties at the second decimal.
    state = AccountState.of(
        login=1,
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_NETTING,
        balance=balance,
        margin=margin,
    )
    assert state.margin_level == Decimal(level)
    assert state.margin_level.as_tuple() == Decimal(level).as_tuple()
