"""MT5 margin and profit arithmetic (`aitrading.model.calc`).

Expected values follow the formulas of the MQL5 reference, ENUM_SYMBOL_CALC_MODE
(https://www.mql5.com/en/docs/constants/environment_state/marketinfoconstants#enum_symbol_calc_mode),
worked by hand, and the conversion rules of MetaTrader 5 Help, "Margin Calculation: Retail Forex, Futures"
(https://www.metatrader5.com/en/terminal/help/trading_advanced/margin_forex).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.model import calc
from aitrading.model.enums import Side
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import VOLUME_SCALE, price_raw, volume_raw
from aitrading.mt5 import constants as c
from aitrading.mt5.specs import DEFAULT_SPECS

LOT = VOLUME_SCALE
EURUSD = DEFAULT_SPECS["EURUSD"]
USDJPY = DEFAULT_SPECS["USDJPY"]
XAUUSD = DEFAULT_SPECS["XAUUSD"]
EURGBP = msgspec.structs.replace(
    EURUSD, name="EURGBP", currency_profit="GBP", description="Euro vs Great Britain Pound"
)


class Quotes:
    """Rates from a dict of symbol → (bid, ask) decimal strings."""

    def __init__(self, **quotes: tuple[str, str]) -> None:
        self._q = {k: (price_raw(b), price_raw(a)) for k, (b, a) in quotes.items()}

    def quote(self, symbol: str) -> tuple[int, int] | None:
        return self._q.get(symbol)


NO_RATES = Quotes()


def test_calc_modes_match_mt5_constants() -> None:
    assert calc.CALC_MODE_FOREX == c.SYMBOL_CALC_MODE_FOREX
    assert calc.CALC_MODE_FOREX_NO_LEVERAGE == c.SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE
    assert calc.CALC_MODE_CFD == c.SYMBOL_CALC_MODE_CFD
    assert calc.CALC_MODE_CFDLEVERAGE == c.SYMBOL_CALC_MODE_CFDLEVERAGE


# --- margin -------------------------------------------------------------------------------------------------


def test_forex_margin_eurusd_usd_account_uses_ask_for_buy_and_bid_for_sell() -> None:
    # FOREX: 1 lot × 100,000 / 100 = 1,000 EUR; EUR → USD through EURUSD itself.
    rates = Quotes(EURUSD=("1.10000", "1.10002"))
    buy = calc.margin(
        EURUSD, Side.BUY, LOT, price_raw("1.10002"), leverage=100, account_currency="USD", rates=rates
    )
    sell = calc.margin(
        EURUSD, Side.SELL, LOT, price_raw("1.1"), leverage=100, account_currency="USD", rates=rates
    )
    assert buy == Decimal("1100.02")
    assert sell == Decimal("1100.00")


def test_forex_margin_in_the_margin_currency_needs_no_rate() -> None:
    got = calc.margin(
        EURUSD,
        Side.BUY,
        volume_raw("0.1"),
        price_raw("1.1"),
        leverage=30,
        account_currency="EUR",
        rates=NO_RATES,
    )
    assert got == Decimal("333.33")  # 0.1 × 100,000 / 30 = 333.333… EUR


def test_forex_margin_usdjpy_usd_account_is_independent_of_price() -> None:
    got = calc.margin(
        USDJPY, Side.SELL, 2 * LOT, price_raw("150.123"), leverage=500, account_currency="USD", rates=NO_RATES
    )
    assert got == Decimal("400.00")


def test_eurgbp_margin_in_usd_account_goes_through_eurusd() -> None:
    # Margin currency of a FOREX pair is its base (EUR), so EUR → USD through EURUSD (ask for a BUY).
    rates = Quotes(EURUSD=("1.08000", "1.08010"), GBPUSD=("1.27000", "1.27020"))
    got = calc.margin(
        EURGBP, Side.BUY, LOT, price_raw("0.85000"), leverage=100, account_currency="USD", rates=rates
    )
    assert got == Decimal("1080.10")


def test_gbp_margin_in_usd_account_goes_through_gbpusd() -> None:
    # A CFD margined in GBP (e.g. a UK index CFD): GBP → USD through GBPUSD, bid for a SELL.
    uk100 = msgspec.structs.replace(
        XAUUSD,
        name="UK100",
        contract_size=Decimal(1),
        currency_base="GBP",
        currency_profit="GBP",
        currency_margin="GBP",
        trade_calc_mode=c.SYMBOL_CALC_MODE_CFDLEVERAGE,
    )
    rates = Quotes(GBPUSD=("1.25000", "1.25020"))
    got = calc.margin(
        uk100, Side.SELL, 10 * LOT, price_raw("8000.00"), leverage=20, account_currency="USD", rates=rates
    )
    assert got == Decimal("5000.00")  # 10 × 1 × 8000 / 20 = 4000 GBP × 1.25


def test_direct_conversion_multiplies_by_the_rate() -> None:
    # XAUUSD margin in a JPY account: USD → JPY through USDJPY (multiply), ask for a BUY.
    rates = Quotes(USDJPY=("150.000", "150.020"))
    got = calc.margin(
        XAUUSD, Side.BUY, LOT, price_raw("2000"), leverage=100, account_currency="JPY", rates=rates
    )
    assert got == Decimal("300040.00")  # 2,000 USD × 150.020


def test_inverse_conversion_divides_by_the_rate() -> None:
    # A JPY-margined index CFD in a USD account: JPY → USD through USDJPY (divide), bid for a SELL.
    jp225 = msgspec.structs.replace(
        XAUUSD,
        name="JP225",
        contract_size=Decimal(1),
        currency_base="JPY",
        currency_profit="JPY",
        currency_margin="JPY",
    )
    rates = Quotes(USDJPY=("150.000", "150.020"))
    got = calc.margin(
        jp225, Side.SELL, 10 * LOT, price_raw("38000"), leverage=20, account_currency="USD", rates=rates
    )
    assert got == Decimal("126.67")  # 10 × 38,000 / 20 = 19,000 JPY / 150.000


def test_xauusd_cfd_leverage_margin() -> None:
    # CFDLEVERAGE: 1 lot × 100 oz × 2,000.50 / 100 = 2,000.50 USD.
    got = calc.margin(
        XAUUSD, Side.BUY, LOT, price_raw("2000.50"), leverage=100, account_currency="USD", rates=NO_RATES
    )
    assert got == Decimal("2000.50")
    half = calc.margin(
        XAUUSD,
        Side.SELL,
        LOT // 2,
        price_raw("2000.50"),
        leverage=100,
        account_currency="USD",
        rates=NO_RATES,
    )
    assert half == Decimal("1000.25")


def test_cfd_margin_ignores_leverage_and_uses_margin_rate() -> None:
    cfd = msgspec.structs.replace(XAUUSD, trade_calc_mode=c.SYMBOL_CALC_MODE_CFD)
    got = calc.margin(
        cfd,
        Side.BUY,
        LOT,
        price_raw("2000"),
        leverage=500,
        account_currency="USD",
        rates=NO_RATES,
        margin_rate=Decimal("0.05"),
    )
    assert got == Decimal("10000.00")  # 1 × 100 × 2000 × 0.05


def test_forex_no_leverage_margin() -> None:
    spec = msgspec.structs.replace(EURUSD, trade_calc_mode=c.SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE)
    got = calc.margin(
        spec,
        Side.BUY,
        volume_raw("0.01"),
        price_raw("1.1"),
        leverage=100,
        account_currency="EUR",
        rates=NO_RATES,
    )
    assert got == Decimal("1000.00")


def test_unsupported_mode_and_missing_rate_raise() -> None:
    futures = msgspec.structs.replace(XAUUSD, trade_calc_mode=c.SYMBOL_CALC_MODE_FUTURES)
    with pytest.raises(ValueError, match="not supported"):
        calc.margin(
            futures, Side.BUY, LOT, price_raw("1"), leverage=1, account_currency="USD", rates=NO_RATES
        )
    with pytest.raises(ValueError, match="not supported"):
        calc.profit(futures, Side.BUY, LOT, 1, 2, account_currency="USD", rates=NO_RATES)
    with pytest.raises(ValueError, match="no quote"):
        calc.margin(
            EURGBP, Side.BUY, LOT, price_raw("0.85"), leverage=100, account_currency="CHF", rates=NO_RATES
        )
    with pytest.raises(ValueError, match="leverage"):
        calc.margin(
            EURUSD, Side.BUY, LOT, price_raw("1.1"), leverage=0, account_currency="EUR", rates=NO_RATES
        )


# --- profit -------------------------------------------------------------------------------------------------


def test_eurusd_profit_in_usd_account() -> None:
    # (1.10500 − 1.10000) × 100,000 × 1 = 500 USD; a SELL loses the same.
    args = (LOT, price_raw("1.10000"), price_raw("1.10500"))
    assert calc.profit(EURUSD, Side.BUY, *args, account_currency="USD", rates=NO_RATES) == Decimal("500.00")
    assert calc.profit(EURUSD, Side.SELL, *args, account_currency="USD", rates=NO_RATES) == Decimal("-500.00")


def test_usdjpy_profit_in_usd_account_divides_by_usdjpy() -> None:
    # 1 lot × (150.500 − 150.000) × 100,000 = 50,000 JPY. A gain buys USD at the ask: 50,000 / 150.512.
    rates = Quotes(USDJPY=("150.500", "150.512"))
    gain = calc.profit_exact(
        USDJPY, Side.BUY, LOT, price_raw("150"), price_raw("150.5"), account_currency="USD", rates=rates
    )
    assert gain == Fraction(50_000) / Fraction("150.512")
    assert calc.to_money(gain) == Decimal("332.20")
    # The same move against a SELL: a JPY loss is paid by selling USD at the bid, 50,000 / 150.500.
    loss = calc.profit(
        USDJPY, Side.SELL, LOT, price_raw("150"), price_raw("150.5"), account_currency="USD", rates=rates
    )
    assert loss == Decimal("-332.23")


def test_eurgbp_profit_in_usd_account_goes_through_gbpusd() -> None:
    # 0.5 lot × (0.85200 − 0.85000) × 100,000 = 100 GBP; a GBP gain is sold at GBPUSD's bid.
    rates = Quotes(GBPUSD=("1.27000", "1.27020"), EURUSD=("1.08", "1.08"))
    got = calc.profit(
        EURGBP, Side.BUY, LOT // 2, price_raw("0.85"), price_raw("0.852"), account_currency="USD", rates=rates
    )
    assert got == Decimal("127.00")
    lost = calc.profit(
        EURGBP,
        Side.SELL,
        LOT // 2,
        price_raw("0.85"),
        price_raw("0.852"),
        account_currency="USD",
        rates=rates,
    )
    assert lost == Decimal("-127.02")


def test_xauusd_profit_per_dollar_move() -> None:
    got = calc.profit(
        XAUUSD,
        Side.BUY,
        volume_raw("0.1"),
        price_raw("2000.00"),
        price_raw("2001.00"),
        account_currency="USD",
        rates=NO_RATES,
    )
    assert got == Decimal("10.00")  # 0.1 × 100 oz × 1 USD


def test_to_money_rounds_half_away_from_zero_once() -> None:
    assert calc.to_money(Fraction(5, 1000)) == Decimal("0.01")
    assert calc.to_money(Fraction(-5, 1000)) == Decimal("-0.01")
    assert calc.to_money(Fraction(1, 3), 0) == Decimal(0)


# --- properties ---------------------------------------------------------------------------------------------

SPECS = st.sampled_from([EURUSD, USDJPY, XAUUSD, EURGBP])
PRICES = st.integers(min_value=1, max_value=10_000_000).map(lambda n: n * 1_000)  # 1e-6 .. 10 (raw)
VOLUMES = st.integers(min_value=1, max_value=10_000).map(lambda n: n * (LOT // 100))
SIDES = st.sampled_from(list(Side))
# Zero-spread conversion rates, so the same rate applies to gains and losses.
FLAT = Quotes(USDJPY=("150", "150"), GBPUSD=("1.25", "1.25"), EURUSD=("1.1", "1.1"))


@given(spec=SPECS, side=SIDES, volume=VOLUMES, open_=PRICES, close=PRICES)
def test_profit_is_antisymmetric_in_side(
    spec: SymbolSpec, side: Side, volume: int, open_: int, close: int
) -> None:
    a = calc.profit_exact(spec, side, volume, open_, close, account_currency="USD", rates=FLAT)
    b = calc.profit_exact(spec, side.opposite, volume, open_, close, account_currency="USD", rates=FLAT)
    assert a == -b
    qa = calc.profit(spec, side, volume, open_, close, account_currency="USD", rates=FLAT)
    assert qa == -calc.profit(spec, side.opposite, volume, open_, close, account_currency="USD", rates=FLAT)


@given(spec=SPECS, side=SIDES, v1=VOLUMES, v2=VOLUMES, open_=PRICES, close=PRICES)
def test_profit_is_additive_in_volume(
    spec: SymbolSpec, side: Side, v1: int, v2: int, open_: int, close: int
) -> None:

    def p(v: int) -> Fraction:
        return calc.profit_exact(spec, side, v, open_, close, account_currency="USD", rates=FLAT)

    assert p(v1 + v2) == p(v1) + p(v2)
    # Booked (rounded) amounts may differ by at most one cent per rounding.
    booked = calc.profit(spec, side, v1 + v2, open_, close, account_currency="USD", rates=FLAT)
    assert abs(booked - calc.to_money(p(v1)) - calc.to_money(p(v2))) <= Decimal("0.02")


@given(
    spec=SPECS,
    side=SIDES,
    volume=VOLUMES,
    k=st.integers(min_value=1, max_value=50),
    price=PRICES,
    leverage=st.sampled_from([1, 30, 100, 500, 1000]),
)
def test_margin_scales_linearly_with_volume(
    spec: SymbolSpec, side: Side, volume: int, k: int, price: int, leverage: int
) -> None:

    def m(v: int) -> Fraction:
        return calc.margin_exact(spec, side, v, price, leverage=leverage, account_currency="USD", rates=FLAT)

    assert m(k * volume) == k * m(volume)
    assert m(volume) > 0


@given(volume=VOLUMES, open_=PRICES, close=PRICES)
def test_conversion_spread_never_flatters_the_result(volume: int, open_: int, close: int) -> None:
    spread = Quotes(USDJPY=("150.000", "150.020"))
    buy = calc.profit_exact(USDJPY, Side.BUY, volume, open_, close, account_currency="USD", rates=spread)
    sell = calc.profit_exact(USDJPY, Side.SELL, volume, open_, close, account_currency="USD", rates=spread)
    assert buy + sell <= 0
