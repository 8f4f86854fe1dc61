"""Exact MT5 margin and profit arithmetic, converted to the account currency.

Formulas follow the MQL5 reference, `ENUM_SYMBOL_CALC_MODE`
(https://www.mql5.com/en/docs/constants/environment_state/marketinfoconstants#enum_symbol_calc_mode):

| calc mode | margin (margin currency) | profit (profit currency) |
|---|---|---|
| FOREX | lots × contract_size / leverage × margin_rate | (close − open) × contract_size × lots |
| FOREX_NO_LEVERAGE | lots × contract_size × margin_rate | same |
| CFD | lots × contract_size × price × margin_rate | same |
| CFDLEVERAGE | lots × contract_size × price / leverage × margin_rate | same |

Profit is signed by side (a SELL earns open − close). Other modes (FUTURES, CFDINDEX, exchange modes) need
tick value/size and initial-margin fields `SymbolSpec` does not carry yet; they raise `ValueError`.

Conversion to the account currency (MetaTrader 5 Help, "Margin Calculation: Retail Forex, Futures",
https://www.metatrader5.com/en/terminal/help/trading_advanced/margin_forex): an amount in currency X
goes through the symbol XA (multiply) or AX (divide), A being the account currency. Margin uses the
conversion symbol's ask for a BUY and its bid for a SELL. Profit uses the rate at which the amount could
really be exchanged: a gain in X is sold (× bid of XA, ÷ ask of AX) and a loss in X is bought back (× ask of
XA, ÷ bid of AX), so a spread in the conversion symbol never flatters the result. Crosses through a third
currency (e.g. CHF → JPY via USD) are not tried; such a missing rate raises `ValueError`.

Everything inside is exact rational arithmetic on raw integers (prices 1e-9, volumes 1e-8 lots), so nothing
rounds until the public functions quantize once, with `values.money`, to the account currency's digits
(half away from zero). It is kept as one integer numerator over one integer denominator rather than as
`Fraction`s, because each `Fraction` operation normalises through a gcd and this runs on every order's
pre-trade check (the same number, unreduced; the tests compare it with the `Fraction` formulas).
`margin_exact` and `profit_exact` give the unrounded amounts for callers that sum many positions and
round the total once; `money_of` rounds a numerator/denominator pair as `to_money` rounds its fraction.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from aitrading.model.enums import Side
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, money

__all__ = [
    "CALC_MODE_CFD",
    "CALC_MODE_CFDLEVERAGE",
    "CALC_MODE_FOREX",
    "CALC_MODE_FOREX_NO_LEVERAGE",
    "SUPPORTED_CALC_MODES",
    "Rates",
    "conversion_rate",
    "margin",
    "margin_exact",
    "money_of",
    "profit",
    "profit_exact",
    "rate_ratio",
    "to_money",
]

# MT5's SYMBOL_CALC_MODE_* values (also in aitrading.mt5.constants; repeated here so the model does not
# import the terminal package — a test keeps the two in step).
CALC_MODE_FOREX = 0
CALC_MODE_CFD = 2
CALC_MODE_CFDLEVERAGE = 4
CALC_MODE_FOREX_NO_LEVERAGE = 5
SUPPORTED_CALC_MODES = frozenset(
    {CALC_MODE_FOREX, CALC_MODE_FOREX_NO_LEVERAGE, CALC_MODE_CFD, CALC_MODE_CFDLEVERAGE}
)

_LOT_PRICE = PRICE_SCALE * VOLUME_SCALE
_EXACT_COEFFICIENT = 10**27  # coefficients below it fit Decimal's default 28-digit context exactly


class Rates(Protocol):
    """Current quotes for currency conversion."""

    def quote(self, symbol: str) -> tuple[int, int] | None:
        """Return the raw (bid, ask) of `symbol`, or None when there is no such symbol or quote."""
        ...


def _ratio(value: Fraction | Decimal | int) -> tuple[int, int]:
    """Return `value` as (numerator, denominator > 0), exactly as `Fraction(value)` would hold it."""
    if type(value) is int:
        return value, 1
    return Fraction(value).as_integer_ratio()


def rate_ratio(
    currency: str, account_currency: str, rates: Rates, *, use_ask_direct: bool, use_ask_inverse: bool
) -> tuple[int, int]:
    """Return `conversion_rate` as (numerator, denominator > 0), without building a `Fraction`."""
    if currency == account_currency:
        return 1, 1
    direct = rates.quote(currency + account_currency)
    if direct is not None and min(direct) > 0:
        bid, ask = direct
        return (ask if use_ask_direct else bid), PRICE_SCALE
    inverse = rates.quote(account_currency + currency)
    if inverse is not None and min(inverse) > 0:
        bid, ask = inverse
        return PRICE_SCALE, (ask if use_ask_inverse else bid)
    raise ValueError(
        f"no quote of {currency}{account_currency} or {account_currency}{currency} to convert {currency}"
    )


def conversion_rate(
    currency: str, account_currency: str, rates: Rates, *, use_ask_direct: bool, use_ask_inverse: bool
) -> Fraction:
    """Return how many units of `account_currency` one unit of `currency` is worth.

    Through `currency+account` the rate is its ask when `use_ask_direct`, else its bid; through
    `account+currency` it is 1 / (ask when `use_ask_inverse`, else bid). Raise `ValueError` without a quote.
    """
    num, den = rate_ratio(
        currency, account_currency, rates, use_ask_direct=use_ask_direct, use_ask_inverse=use_ask_inverse
    )
    return Fraction(num, den)


def _margin_ratio(
    spec: SymbolSpec,
    side: Side,
    volume_raw: int,
    price_raw: int,
    leverage: int,
    account_currency: str,
    rates: Rates,
    margin_rate: Fraction | Decimal | int,
) -> tuple[int, int]:
    # One numerator over one denominator (> 0) on plain ints: the formulas are products and quotients of
    # exact values, so this is the same number `Fraction` arithmetic gives, unreduced (tested against it).
    if leverage <= 0:
        raise ValueError(f"leverage must be positive, got {leverage}")
    size_num, size_den = spec.contract_size.as_integer_ratio()
    rate_num, rate_den = _ratio(margin_rate)
    num = volume_raw * size_num * rate_num
    den = VOLUME_SCALE * size_den * rate_den
    mode = spec.trade_calc_mode
    if mode == CALC_MODE_FOREX:
        den *= leverage
    elif mode == CALC_MODE_FOREX_NO_LEVERAGE:
        pass
    elif mode == CALC_MODE_CFD:
        num, den = num * price_raw, den * PRICE_SCALE
    elif mode == CALC_MODE_CFDLEVERAGE:
        num, den = num * price_raw, den * PRICE_SCALE * leverage
    else:
        raise ValueError(f"{spec.name}: margin for calc mode {mode} is not supported")
    buy = side is Side.BUY
    conv_num, conv_den = rate_ratio(
        spec.currency_margin, account_currency, rates, use_ask_direct=buy, use_ask_inverse=buy
    )
    return num * conv_num, den * conv_den


def margin_exact(
    spec: SymbolSpec,
    side: Side,
    volume_raw: int,
    price_raw: int,
    *,
    leverage: int,
    account_currency: str,
    rates: Rates,
    margin_rate: Fraction | Decimal | int = 1,
) -> Fraction:
    """Return the unrounded margin of `volume_raw` at `price_raw`, in the account currency."""
    num, den = _margin_ratio(
        spec, side, volume_raw, price_raw, leverage, account_currency, rates, margin_rate
    )
    return Fraction(num, den)


def _profit_ratio(
    spec: SymbolSpec,
    side: Side,
    volume_raw: int,
    open_raw: int,
    close_raw: int,
    account_currency: str,
    rates: Rates,
) -> tuple[int, int]:
    if spec.trade_calc_mode not in SUPPORTED_CALC_MODES:
        raise ValueError(f"{spec.name}: profit for calc mode {spec.trade_calc_mode} is not supported")
    size_num, size_den = spec.contract_size.as_integer_ratio()
    num = side.sign * (close_raw - open_raw) * volume_raw * size_num
    den = _LOT_PRICE * size_den
    loss = num < 0
    conv_num, conv_den = rate_ratio(
        spec.currency_profit, account_currency, rates, use_ask_direct=loss, use_ask_inverse=not loss
    )
    return num * conv_num, den * conv_den


def profit_exact(
    spec: SymbolSpec,
    side: Side,
    volume_raw: int,
    open_raw: int,
    close_raw: int,
    *,
    account_currency: str,
    rates: Rates,
) -> Fraction:
    """Return the unrounded profit of `volume_raw` opened at `open_raw` and closed at `close_raw`."""
    num, den = _profit_ratio(spec, side, volume_raw, open_raw, close_raw, account_currency, rates)
    return Fraction(num, den)


def money_of(num: int, den: int, digits: int = 2) -> Decimal:
    """Return `to_money(Fraction(num, den), digits)` (den > 0) without building the fraction.

    Rounding compares the remainder with the divisor, so an unreduced ratio rounds as its reduced form.
    """
    if digits < 0:
        raise ValueError(f"digits must not be negative, got {digits}")
    q, r = divmod(abs(num) * 10**digits, den)
    if 2 * r >= den:
        q += 1
    if q < _EXACT_COEFFICIENT:  # scaleb keeps all the digits: already `money`'s result (hot path)
        return Decimal(-q if num < 0 else q).scaleb(-digits)
    return money(Decimal(-q if num < 0 else q).scaleb(-digits), digits)


def to_money(value: Fraction, digits: int = 2) -> Decimal:
    """Round an exact amount to `digits` decimals half away from zero, as `values.money` books it."""
    return money_of(value.numerator, value.denominator, digits)


def margin(
    spec: SymbolSpec,
    side: Side,
    volume_raw: int,
    price_raw: int,
    *,
    leverage: int,
    account_currency: str,
    rates: Rates,
    margin_rate: Fraction | Decimal | int = 1,
    digits: int = 2,
) -> Decimal:
    """Return the margin MT5 requires for the order, in the account currency, quantized to `digits`."""
    num, den = _margin_ratio(
        spec, side, volume_raw, price_raw, leverage, account_currency, rates, margin_rate
    )
    return money_of(num, den, digits)


def profit(
    spec: SymbolSpec,
    side: Side,
    volume_raw: int,
    open_raw: int,
    close_raw: int,
    *,
    account_currency: str,
    rates: Rates,
    digits: int = 2,
) -> Decimal:
    """Return the profit of the trade in the account currency, quantized to `digits`."""
    num, den = _profit_ratio(spec, side, volume_raw, open_raw, close_raw, account_currency, rates)
    return money_of(num, den, digits)
