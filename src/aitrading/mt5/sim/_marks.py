"""Per-position marking plans of the simulated broker: the per-quote valuation in a few integer operations.

A `Mark` holds what valuing one position needs that does not change with the quotes — the profit as
`a × price − b` over `den` in minor units of the account currency (sign, volume, contract size, cost and
10^digits folded in and reduced by their gcd), the names of the conversion symbols, the margin in the margin
currency — plus the last price, rate and amounts it gave. `Valuation` keeps one per open position, valid
while the book holds the very `Position` object the plan was made from or marked last (positions are
frozen: a fill, a swap or a new SL/TP replaces the object, and the plan is made again).

The arithmetic is `Valuation._mark`'s and `_symbol_margin`'s, reordered: the same numerator over the same
denominator up to a common factor, rounded as `model.calc.money_of` rounds (the remainder is compared with
the divisor, so a common factor changes nothing). A quote that moves neither the exit price nor the rate
leaves the position as it is, since marking it again would give an equal one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from decimal import Decimal
from math import gcd

import msgspec

from aitrading.model._exact import EXACT_UNITS, NOTIONAL_SCALE, div_half_away, units_of
from aitrading.model.calc import money_of
from aitrading.model.enums import Side
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE

__all__ = ["Mark", "margined_legs"]

_EXACT_COEFFICIENT = 10**27  # as in `model.calc.money_of`: `scaleb` keeps every digit below it
_CACHE_MAX = 4096


def margined_legs(
    positions: Collection[Position], cost_raw: Callable[[Position], int]
) -> list[tuple[str, Side, int, int]]:
    """Return the leg each symbol of `positions` is margined on, as (symbol, side, volume, cost): netting
    has one leg per symbol; hedging margins the larger leg (hedged pairs count once)."""
    legs: dict[tuple[str, Side], list[int]] = {}
    for p in positions:
        leg = legs.get((p.symbol, p.type))
        if leg is None:
            legs[(p.symbol, p.type)] = [p.volume, cost_raw(p)]
        else:
            leg[0] += p.volume
            leg[1] += cost_raw(p)
    margined = []
    for symbol in {symbol for symbol, _ in legs}:
        buy = legs.get((symbol, Side.BUY), [0, 0])
        sell = legs.get((symbol, Side.SELL), [0, 0])
        side, (volume, cost) = (Side.BUY, buy) if buy[0] >= sell[0] else (Side.SELL, sell)
        margined.append((symbol, side, volume, cost))
    return margined


def conversion(
    ticks: dict[str, Tick], direct: str, inverse: str, ask_direct: bool, ask_inverse: bool
) -> tuple[int, int] | None:
    """`model.calc.rate_ratio` on the quotes themselves, with the symbol names made once (None: no quote)."""
    tick = ticks.get(direct)
    if tick is not None and tick.bid > 0 and tick.ask > 0:
        return (tick.ask if ask_direct else tick.bid), PRICE_SCALE
    tick = ticks.get(inverse)
    if tick is not None and tick.bid > 0 and tick.ask > 0:
        return PRICE_SCALE, (tick.ask if ask_inverse else tick.bid)
    return None


class Mark:
    """How to value one open position on a quote, and what it was valued at last (see the module doc)."""

    __slots__ = (
        "a",
        "b",
        "buy",
        "converts",
        "den",
        "digits",
        "floating",
        "margin_base",
        "margin_convert",
        "margin_direct",
        "margin_inverse",
        "margin_minor",
        "margin_rate",
        "margin_ratio",
        "money",
        "position",
        "price",
        "profit_direct",
        "profit_inverse",
        "profit_minor",
        "rate",
        "swap_minor",
        "symbol",
    )

    def __init__(
        self,
        position: Position,
        spec: SymbolSpec,
        *,
        cost_raw: int,
        contract: tuple[int, int],
        currency: str,
        digits: int,
        margin_base: tuple[int, int] | None,
        money: dict[int, Decimal],
    ) -> None:
        scale: int = 10**digits
        size_num, size_den = contract
        sign = position.type.sign
        a = sign * position.volume * size_num * scale
        b = sign * cost_raw * size_num * scale
        den = NOTIONAL_SCALE * size_den
        common = gcd(a, b, den)
        self.a, self.b, self.den = a // common, b // common, den // common
        self.position = position
        self.symbol = position.symbol
        self.buy = position.type is Side.BUY
        self.digits = digits
        self.money = money
        profit_currency, margin_currency = spec.currency_profit, spec.currency_margin
        self.converts = currency not in (profit_currency, margin_currency)
        if profit_currency == currency:
            self.profit_direct = self.profit_inverse = ""
        else:
            self.profit_direct, self.profit_inverse = profit_currency + currency, currency + profit_currency
        self.price: int | None = None  # not marked yet: the first quote marks it
        self.rate: tuple[int, int] | None = None
        self.profit_minor = units_of(position.profit, scale)
        self.swap_minor = units_of(position.swap, scale)
        self.floating = self._floating()
        self.margin_base = margin_base
        self.margin_convert = margin_currency != currency
        self.margin_direct, self.margin_inverse = margin_currency + currency, currency + margin_currency
        self.margin_rate: tuple[int, int] | None = None
        self.margin_ratio = None if self.margin_convert else margin_base
        self.margin_minor = (
            None
            if margin_base is None or self.margin_convert
            else div_half_away(margin_base[0] * scale, margin_base[1])
        )

    def _floating(self) -> int | None:
        profit, swap = self.profit_minor, self.swap_minor
        return None if profit is None or swap is None else profit + swap

    def mark(self, tick: Tick, ticks: dict[str, Tick]) -> Position | None:
        """Return the position valued at `tick` (its exit price), or None when it stays as it is: the same
        price and rate, or no conversion quote (the last valuation stands, as `Valuation.revalue` keeps
        it)."""
        price = tick.bid if self.buy else tick.ask
        num = self.a * price - self.b
        den = self.den
        if self.profit_direct:
            loss = num < 0
            rate = conversion(ticks, self.profit_direct, self.profit_inverse, loss, not loss)
            if rate is None:
                return None
            if price == self.price and rate == self.rate:
                return None
            self.rate = rate
            num, den = num * rate[0], den * rate[1]
        elif price == self.price:
            return None
        minor = div_half_away(num, den)
        value = self.money.get(minor)
        if value is None:
            if -_EXACT_COEFFICIENT < minor < _EXACT_COEFFICIENT:
                value = Decimal(minor).scaleb(-self.digits)
            else:  # `money_of`'s own path for huge amounts (the same ratio, without the 10^digits folded in)
                value = money_of(num, den * 10**self.digits, self.digits)
            money = self.money
            if len(money) > _CACHE_MAX:
                money.clear()
            money[minor] = value
        marked = msgspec.structs.replace(self.position, price_current=price, profit=value)
        self.position = marked
        self.price = price
        self.profit_minor = minor if -EXACT_UNITS < minor < EXACT_UNITS else None
        self.floating = self._floating()
        return marked

    def margin(self, ticks: dict[str, Tick], remembered: tuple[int, int]) -> tuple[int, int]:
        """Return the position's margin as (numerator, denominator) in the account currency (`remembered`
        without a conversion quote or margin formula), with its minor units in `margin_minor` (None when
        they are to be worked out from the ratio)."""
        base = self.margin_base
        if base is None:
            self.margin_minor = None
            return remembered
        if not self.margin_convert:
            return base
        buy = self.buy
        rate = conversion(ticks, self.margin_direct, self.margin_inverse, buy, buy)
        if rate is None:
            self.margin_rate = None
            self.margin_minor = None
            return remembered
        if rate != self.margin_rate or self.margin_ratio is None:
            self.margin_rate = rate
            ratio = self.margin_ratio = base[0] * rate[0], base[1] * rate[1]
            self.margin_minor = div_half_away(ratio[0] * 10**self.digits, ratio[1])
            return ratio
        return self.margin_ratio
