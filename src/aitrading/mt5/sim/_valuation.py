"""The simulated broker's valuation: quotes, profit, margin, swaps and the account state they make.

Profit, margin and swap use `model.calc`'s formulas and conversions on exact integers or fractions; money
is rounded once per amount to the account currency's digits. On every quote each open position is valued
through its `_marks.Mark` (the same arithmetic in a few integer operations, skipped when the quote moved
neither its price nor its rate), and the account is kept in minor units of its currency: the `Decimal`s of
equity, margin and the `AccountState` are made when read, and the stop-out and margin-call checks compare
integers (`level_at_most`).

Margin on a hedging account follows MT5 with `SYMBOL_MARGIN_HEDGED` equal to the contract size (what the
simulated `symbol_info` reports): a hedged buy/sell pair is margined as one leg, so a symbol needs the margin
of its larger leg, at that leg's average open price (CFD modes). A netting position needs its own margin.
Conversions use the current quotes (margin: ask for BUY, bid for SELL; profit: the side the amount would
really be exchanged at). Until a conversion quote has arrived (e.g. right after a restart) the last known
amount stands. The fills that change the books are `aitrading.mt5.sim._ledger`'s.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from decimal import Decimal
from fractions import Fraction

from aitrading.model._exact import (
    EXACT_UNITS,
    NOTIONAL_SCALE,
    decimal_from_scaled,
    div_half_away,
    div_half_even,
    units_of,
)
from aitrading.model.accounts import MARGIN_LEVEL_DIGITS, AccountState
from aitrading.model.calc import margin_exact, money_of, rate_ratio, to_money
from aitrading.model.enums import Side
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import VOLUME_SCALE, money
from aitrading.mt5.sim._marks import Mark, margined_legs
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.book import Book

__all__ = ["Quotes", "Valuation"]

_MEMO_MAX = 4096
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_NO_MARGIN = (0, 1)
_LEVEL_UNITS: int = 10**MARGIN_LEVEL_DIGITS  # a margin level (in %) in units of its last digit


class Quotes:
    """The latest tick of every symbol; the `model.calc.Rates` the conversions read."""

    def __init__(self) -> None:
        self.ticks: dict[str, Tick] = {}

    def quote(self, symbol: str) -> tuple[int, int] | None:
        tick = self.ticks.get(symbol)
        return None if tick is None else (tick.bid, tick.ask)


class Valuation:
    """The money of one account: its books valued at the current quotes (see the module docstring)."""

    def __init__(
        self, specs: Mapping[str, SymbolSpec], account: SimAccount, settings: ExecutionSettings, book: Book
    ) -> None:
        self.specs = dict(specs)
        self.account = account
        self.settings = settings
        self.book = book
        self.quotes = Quotes()
        self.rng = random.Random(settings.seed)
        self.dirty = False
        self.margin_call = False
        self.stop_out = False
        """True while the margin level is at or below the stop-out level (as of the last revaluation)."""
        self._margins: dict[str, tuple[int, int]] = {}
        self._margin_memo: dict[tuple[object, ...], tuple[int, int]] = {}
        self._costs: dict[Decimal, int] = {}
        self._commissions: dict[int, Decimal] = {}
        self._contracts: dict[str, tuple[int, int]] = {}
        self._marks: dict[int, Mark] = {}
        self._legs_of: tuple[tuple[Mark, ...], list[tuple[str, Side, int, int]]] | None = None
        self._amounts: dict[int, Decimal] = {}  # profit in minor units -> its money (shared by the marks)
        self._mode = account.mode  # an enum lookup: read on every quote
        self._scale: int = 10**account.currency_digits
        levels = (account.margin_so_call, account.margin_so_so)
        self._levels: dict[Decimal, tuple[int, int]] = {
            level: level.as_integer_ratio() for level in levels if level.is_finite()
        }
        # Both levels below 100 %: an account whose equity covers its margin is above both.
        self._below_100 = all(level.is_finite() and level < _HUNDRED for level in levels)
        # The money `_take_money` took, in minor units of the account currency where exact (None where not);
        # the `Decimal`s are made when read.
        self._state: AccountState | None = None
        self._raw_balance: Decimal | None = None
        self._raw_credit: Decimal | None = None
        self._balance_q = self._credit_q = _ZERO
        self._balance_minor: int | None = 0
        self._credit_minor: int | None = 0
        self._floating_minor: int | None = 0
        self._floating_q: Decimal | None = None
        self._margin_ratio: tuple[int, int] = (0, 1)
        self._margin_minor: int | None = 0
        self._margin_q: Decimal | None = None
        self._equity_minor: int | None = 0
        self._equity: Decimal | None = None
        self._take_money(self._margin(book.positions.values(), remember=True), None, None)

    # --- valuation -------------------------------------------------------------------------------------
    def profit_fn(
        self, symbol: str, side: Side, volume: int, price_open: Fraction, price_close: Fraction
    ) -> Decimal:
        """Return the profit of `volume` from `price_open` to `price_close`, MT5's way, in account money."""
        # (close − open) × sign × lots × contract size × rate on one numerator over one denominator (no
        # `Fraction` products and their gcds): the same value, rounded as `to_money` rounds it.
        spec = self.specs[symbol]
        size_num, size_den = self._contract(spec)
        num = (
            (price_close.numerator * price_open.denominator - price_open.numerator * price_close.denominator)
            * side.sign
            * volume
            * size_num
        )
        den = price_close.denominator * price_open.denominator * VOLUME_SCALE * size_den
        loss = num < 0
        rate_num, rate_den = rate_ratio(
            spec.currency_profit,
            self.account.currency,
            self.quotes,
            use_ask_direct=loss,
            use_ask_inverse=not loss,
        )
        return money_of(num * rate_num, den * rate_den, self.account.currency_digits)

    def _margin_base(self, spec: SymbolSpec, side: Side, volume: int, price_raw: int) -> tuple[int, int]:
        """`margin_exact` in the margin currency, memoised (it depends only on these arguments)."""
        key = (spec.name, side, volume, price_raw)
        base = self._margin_memo.get(key)
        if base is None:
            if len(self._margin_memo) > _MEMO_MAX:
                self._margin_memo.clear()
            exact = margin_exact(
                spec,
                side,
                volume,
                price_raw,
                leverage=self.account.leverage,
                account_currency=spec.currency_margin,
                rates=self.quotes,
            )
            base = self._margin_memo[key] = (exact.numerator, exact.denominator)
        return base

    def _symbol_margin(self, spec: SymbolSpec, side: Side, volume: int, price_raw: int) -> tuple[int, int]:
        # `margin_exact` is the margin in the margin currency times the rate converting it (at the ask for
        # BUY, the bid for SELL). The first factor is memoised; the rate moves with every quote of the
        # converting symbol, so it alone is looked up per call. Kept as one numerator over one denominator
        # (no `Fraction` and its gcd).
        base = self._margin_base(spec, side, volume, price_raw)
        if spec.currency_margin == self.account.currency:
            return base
        buy = side is Side.BUY
        rate_num, rate_den = rate_ratio(
            spec.currency_margin, self.account.currency, self.quotes, use_ask_direct=buy, use_ask_inverse=buy
        )
        return base[0] * rate_num, base[1] * rate_den

    def _margin(self, positions: Collection[Position], *, remember: bool = False) -> tuple[int, int]:
        """Return the exact margin `positions` need as (numerator, denominator > 0), unreduced (see the
        module docstring for hedged legs)."""
        if len(positions) <= 1:  # no position, or one (every fill of one position at a time): no legs to add
            if not positions:
                return _NO_MARGIN
            (p,) = positions
            if p.volume > 0:
                return self._one_margin(p, remember)
        return self._legs_margin(margined_legs(positions, self._cost_raw), remember)

    def _legs_margin(self, legs: list[tuple[str, Side, int, int]], remember: bool) -> tuple[int, int]:
        """Return the margin of `legs` (`margined_legs`) at the current quotes."""
        num, den = 0, 1
        for symbol, side, volume, cost in legs:
            try:
                amount = self._symbol_margin(self.specs[symbol], side, volume, div_half_even(cost, volume))
            except ValueError:
                amount = self._margins.get(symbol, _NO_MARGIN)
            if remember:
                self._margins[symbol] = amount
            if num:
                num, den = num * amount[1] + amount[0] * den, den * amount[1]
            else:
                num, den = amount
        return num, den

    def _one_margin(self, p: Position, remember: bool) -> tuple[int, int]:
        """`_margin` of the one position `p` (volume > 0): its own leg."""
        symbol = p.symbol
        volume = p.volume
        try:
            amount = self._symbol_margin(
                self.specs[symbol], p.type, volume, div_half_even(self._cost_raw(p), volume)
            )
        except ValueError:
            amount = self._margins.get(symbol, _NO_MARGIN)
        if remember:
            self._margins[symbol] = amount
        return amount

    @property
    def state(self) -> AccountState:
        """Balance, equity and margin as of the last revaluation.

        Built when read, from the money `_take_money` took then: a backtest revalues on every quote, and
        most quotes only need the margin level's side of the stop-out levels.
        """
        state = self._state
        if state is None:
            state = self._state = self._build_state()
        return state

    def _build_state(self) -> AccountState:
        a = self.account
        balance, credit = self._balance_q, self._credit_q
        floating, margin = self._floating_money(), self._margin_money()
        equity_minor, margin_minor = self._equity_minor, self._margin_minor
        if equity_minor is None or margin_minor is None:  # huge or inexact amounts
            return AccountState.of(
                login=a.login,
                currency=a.currency,
                leverage=a.leverage,
                margin_mode=self._mode,
                balance=balance,
                credit=credit,
                floating=floating,
                margin=margin,
                digits=a.currency_digits,
            )
        # Each amount is a whole number of minor units (to the currency's digits), so `of` would return them
        # unchanged; the margin level as `level_at_most` finds it (`accounts._margin_level` on the minor
        # units, whose quantum cancels).
        level = None
        if margin_minor:
            level = decimal_from_scaled(
                div_half_away(equity_minor * 100 * _LEVEL_UNITS, margin_minor), MARGIN_LEVEL_DIGITS
            )
        return AccountState.of_quantized(
            login=a.login,
            server="",
            currency=a.currency,
            digits=a.currency_digits,
            leverage=a.leverage,
            margin_mode=self._mode,
            balance=balance,
            credit=credit,
            floating=floating,
            margin=margin,
            margin_level=level,
        )

    def _floating_money(self) -> Decimal:
        floating = self._floating_q
        if floating is None:  # taken in minor units: exactly `money` of their sum
            floating = self._floating_q = Decimal(self._floating_minor or 0).scaleb(
                -self.account.currency_digits
            )
        return floating

    def _margin_money(self) -> Decimal:
        margin = self._margin_q
        if margin is None:
            margin = self._margin_q = money_of(*self._margin_ratio, self.account.currency_digits)
        return margin

    def _take_money(self, margin: tuple[int, int], margin_minor: int | None, floating: int | None) -> None:
        """Take the balance, credit, floating result and `margin` now as the account's (see `state`).

        `margin_minor` is `margin` in minor units when the caller knows it; `floating` is the positions'
        profit and swap in minor units, or None to sum their `Decimal`s.
        """
        digits, scale = self.account.currency_digits, self._scale
        book = self.book
        balance, credit = book.balance, book.credit
        if balance is not self._raw_balance:  # changes with deals only: quantized once per change
            self._raw_balance = balance
            self._balance_q = money(balance, digits)
            self._balance_minor = units_of(self._balance_q, scale)
        if credit is not self._raw_credit:
            self._raw_credit = credit
            self._credit_q = money(credit, digits)
            self._credit_minor = units_of(self._credit_q, scale)
        if floating is None or not -EXACT_UNITS < floating < EXACT_UNITS:
            self._floating_q = money(self._floating(), digits)
            floating = units_of(self._floating_q, scale)
        else:
            self._floating_q = None
        self._floating_minor = floating
        if margin is not self._margin_ratio:  # else the same (memoised, immutable) ratio: the same money
            self._margin_ratio = margin
            self._margin_q = None
            if margin_minor is None:
                margin_minor = div_half_away(margin[0] * scale, margin[1])
            self._margin_minor = margin_minor if -EXACT_UNITS < margin_minor < EXACT_UNITS else None
        self._state = None
        self._equity = None
        balance_minor, credit_minor = self._balance_minor, self._credit_minor
        if balance_minor is None or credit_minor is None or floating is None:
            equity = self._equity_minor = None
        else:
            equity = self._equity_minor = balance_minor + credit_minor + floating
        margin_minor = self._margin_minor
        if margin_minor == 0:
            self.margin_call = self.stop_out = False
        elif self._below_100 and margin_minor is not None and equity is not None and equity >= margin_minor:
            self.margin_call = self.stop_out = False  # the level is at least 100.00
        else:
            self.margin_call = self.level_at_most(self.account.margin_so_call)
            self.stop_out = self.level_at_most(self.account.margin_so_so)

    @property
    def balance(self) -> Decimal:
        """`state.balance`, without building the state."""
        return self._balance_q

    @property
    def equity(self) -> Decimal:
        """`state.equity` (balance + credit + floating), without building the state."""
        equity = self._equity
        if equity is None:
            equity = self._equity = self._balance_q + self._credit_q + self._floating_money()
        return equity

    def _floating(self) -> Decimal:
        """`accounts.floating_of` the open positions, as a loop."""
        total = _ZERO
        for p in self.book.positions.values():
            total += p.profit + p.swap
        return total

    def level_at_most(self, level: Decimal) -> bool:
        """Tell whether the margin level (`state.margin_level`) is at or below `level` (False without
        margin)."""
        margin, equity = self._margin_minor, self._equity_minor
        ratio: tuple[int, int] | None = self._levels.get(level)
        if ratio is None and level.is_finite():
            ratio = level.as_integer_ratio()
        if margin is None or equity is None or ratio is None:  # huge or inexact amounts: on the state
            if not self._margin_money():
                return False
            found = self.state.margin_level
            return found is not None and found <= level
        if not margin:
            return False
        # `accounts._margin_level` on the same values: equity / margin × 100, to 2 decimals, half away from
        # zero (the quantum cancels), compared with level = num / den.
        return div_half_away(equity * 100 * _LEVEL_UNITS, margin) * ratio[1] <= ratio[0] * _LEVEL_UNITS

    def revalue(self, symbol: str | None = None) -> None:
        """Mark positions at their exit prices (all, or those of `symbol` and those converted through other
        symbols' quotes) and recompute the account."""
        positions = self.book.positions
        marks = self._marks
        if len(marks) > len(positions):  # positions closed: forget their marks
            marks = self._marks = {k: m for k, m in marks.items() if positions.get(k) is m.position}
        ticks = self.quotes.ticks
        floating: int | None = 0
        mark = None
        seen: list[Mark] | None = [] if len(positions) > 1 else None
        for key, p in positions.items():  # values replaced in place: no copy needed
            mark = marks.get(key)
            if mark is None or mark.position is not p:  # new, or changed by a fill, a swap, a new SL/TP
                mark = marks[key] = self._new_mark(p)
            if seen is not None:
                seen.append(mark)
            if symbol is None or mark.symbol == symbol or mark.converts:
                tick = ticks.get(mark.symbol)
                if tick is not None:
                    marked = mark.mark(tick, ticks)
                    if marked is not None:
                        positions[key] = marked
            if floating is not None:
                amount = mark.floating
                floating = None if amount is None else floating + amount
        if mark is not None and len(positions) == 1 and mark.position.volume > 0:
            # One position (the common case, on every quote): `_margin` of it, from its mark.
            margins = self._margins
            margin = margins[mark.symbol] = mark.margin(ticks, margins.get(mark.symbol, _NO_MARGIN))
            self._take_money(margin, mark.margin_minor, floating)
        elif seen is not None:
            # Several positions: their legs are fixed while their marks are (a mark lives as long as its
            # position's volume and cost), so they are summed again only after a fill, a swap or new stops.
            legs = self._legs_of
            if legs is None or legs[0] != tuple(seen):
                legs = self._legs_of = (tuple(seen), margined_legs(positions.values(), self._cost_raw))
            self._take_money(self._legs_margin(legs[1], True), None, floating)
        else:
            self._take_money(self._margin(positions.values(), remember=True), None, floating)

    def _new_mark(self, p: Position) -> Mark:
        spec = self.specs[p.symbol]
        cost_raw = self._cost_raw(p)
        base: tuple[int, int] | None = None
        if p.volume > 0:
            try:
                base = self._margin_base(spec, p.type, p.volume, div_half_even(cost_raw, p.volume))
            except ValueError:
                base = None  # no margin formula: the last known margin stands, as `_margin` keeps it
        return Mark(
            p,
            spec,
            cost_raw=cost_raw,
            contract=self._contract(spec),
            currency=self.account.currency,
            digits=self.account.currency_digits,
            margin_base=base,
            money=self._amounts,
        )

    def _profit_at(self, p: Position, price: int) -> Decimal:
        """`floating_profit(p, price, profit_fn)`: `p`'s profit closed whole at raw `price`, in integer
        arithmetic: (price − cost / volume) × sign × volume × contract equals sign × (price × volume − cost)
        × contract over the notional scale exactly, so the result is the same to the last digit."""
        spec = self.specs[p.symbol]
        size_num, size_den = self._contract(spec)
        # One numerator over one denominator (no intermediate fractions): the same value, rounded as
        # `to_money` rounds it.
        num = p.type.sign * (price * p.volume - self._cost_raw(p)) * size_num
        den = NOTIONAL_SCALE * size_den
        if spec.currency_profit != self.account.currency:  # else the rate is exactly 1
            loss = num < 0
            rate_num, rate_den = rate_ratio(
                spec.currency_profit,
                self.account.currency,
                self.quotes,
                use_ask_direct=loss,
                use_ask_inverse=not loss,
            )
            num, den = num * rate_num, den * rate_den
        return money_of(num, den, self.account.currency_digits)

    def _cost_raw(self, p: Position) -> int:
        """`p.cost_raw`, memoised: parsing the exact Decimal back to an int dominates a tick otherwise."""
        cached = self._costs.get(p.cost)
        if cached is None:
            if len(self._costs) > _MEMO_MAX:
                self._costs.clear()
            cached = self._costs[p.cost] = p.cost_raw
        return cached

    def _know_cost(self, cost: Decimal, raw: int) -> None:
        """Tell `_cost_raw` that `cost` is `raw` (a fill knows the cost of the position it opens)."""
        costs = self._costs
        if len(costs) > _MEMO_MAX:
            costs.clear()
        costs[cost] = raw

    def _contract(self, spec: SymbolSpec) -> tuple[int, int]:
        size = self._contracts.get(spec.name)
        if size is None:
            size = self._contracts[spec.name] = Fraction(spec.contract_size).as_integer_ratio()
        return size

    def missing_rate(self, symbol: str) -> str:
        """Return why `symbol`'s profit cannot be converted to account money now ("" when it can)."""
        spec = self.specs[symbol]
        try:
            rate_ratio(
                spec.currency_profit,
                self.account.currency,
                self.quotes,
                use_ask_direct=True,
                use_ask_inverse=True,
            )
        except ValueError as exc:
            return str(exc)
        return ""

    def commission(self, volume: int) -> Decimal:
        """Return the (negative) commission of a deal of raw `volume`."""
        per_lot = self.settings.commission_per_lot
        if not per_lot:
            return _ZERO
        # It depends on the volume only (the rate per lot is fixed): memoised, a fill asks on every deal.
        found = self._commissions.get(volume)
        if found is None:
            if len(self._commissions) > _MEMO_MAX:
                self._commissions.clear()
            found = self._commissions[volume] = -to_money(
                Fraction(per_lot) * Fraction(volume, VOLUME_SCALE), self.account.currency_digits
            )
        return found
