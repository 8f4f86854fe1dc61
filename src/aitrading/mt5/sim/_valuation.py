"""The simulated broker's valuation: quotes, profit, margin, swaps and the account state they make.

Profit, margin and swap use `model.calc`'s formulas and conversions on exact integers or fractions; money
is rounded once per amount to the account currency's digits.

Margin on a hedging account follows MT5 with `SYMBOL_MARGIN_HEDGED` equal to the contract size (what the
simulated `symbol_info` reports): a hedged buy/sell pair is margined as one leg, so a symbol needs the margin
of its larger leg, at that leg's average open price (CFD modes). A netting position needs its own margin.
Conversions use the current quotes (margin: ask for BUY, bid for SELL; profit: the side the amount would
really be exchanged at). Until a conversion quote has arrived (e.g. right after a restart) the last known
amount stands. The fills that change the books are `aitrading.mt5.sim._ledger`'s.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from fractions import Fraction

import msgspec

from aitrading.model._exact import NOTIONAL_SCALE, div_half_even
from aitrading.model.accounts import AccountState
from aitrading.model.calc import margin_exact, money_of, rate_ratio, to_money
from aitrading.model.enums import Side
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import VOLUME_SCALE, money
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.book import Book

__all__ = ["Quotes", "Valuation"]

_MEMO_MAX = 4096
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


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
        self._margins: dict[str, tuple[int, int]] = {}
        self._margin_memo: dict[tuple[object, ...], tuple[int, int]] = {}
        self._costs: dict[Decimal, int] = {}
        self._contracts: dict[str, tuple[int, int]] = {}
        self._mode = account.mode  # an enum lookup: read on every quote
        self._state: AccountState | None = None
        self._raw_balance: Decimal | None = None
        self._raw_credit: Decimal | None = None
        self._balance_q = self._credit_q = _ZERO
        self._money: tuple[Decimal, Decimal, Decimal, Decimal] = (_ZERO, _ZERO, _ZERO, _ZERO)
        self._margin_taken: tuple[tuple[int, int], int, Decimal] | None = None  # (margin, digits, money)
        self._take_money(self._margin(book.positions.values(), remember=True))

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

    def _symbol_margin(self, spec: SymbolSpec, side: Side, volume: int, price_raw: int) -> tuple[int, int]:
        # `margin_exact` is the margin in the margin currency times the rate converting it (at the ask for
        # BUY, the bid for SELL). The first factor depends only on these arguments and is memoised; the
        # rate moves with every quote of the converting symbol, so it alone is looked up per call. Kept as
        # one numerator over one denominator (no `Fraction` and its gcd): this runs on every quote.
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
        if len(positions) == 1:  # one leg (the common case, on every quote): the loop below, unrolled
            (p,) = positions
            try:
                one = self._symbol_margin(
                    self.specs[p.symbol], p.type, p.volume, div_half_even(self._cost_raw(p), p.volume)
                )
            except ValueError:
                one = self._margins.get(p.symbol, (0, 1))
            if remember:
                self._margins[p.symbol] = one
            return one
        legs: dict[tuple[str, Side], list[int]] = {}
        for p in positions:
            leg = legs.get((p.symbol, p.type))
            if leg is None:
                legs[(p.symbol, p.type)] = [p.volume, self._cost_raw(p)]
            else:
                leg[0] += p.volume
                leg[1] += self._cost_raw(p)
        num, den = 0, 1
        for symbol in {symbol for symbol, _ in legs}:
            buy = legs.get((symbol, Side.BUY), [0, 0])
            sell = legs.get((symbol, Side.SELL), [0, 0])
            side, (volume, cost) = (Side.BUY, buy) if buy[0] >= sell[0] else (Side.SELL, sell)
            # Netting has one leg per symbol; hedging margins the larger leg (hedged pairs count once).
            try:
                amount = self._symbol_margin(self.specs[symbol], side, volume, div_half_even(cost, volume))
            except ValueError:
                amount = self._margins.get(symbol, (0, 1))
            if remember:
                self._margins[symbol] = amount
            if num:
                num, den = num * amount[1] + amount[0] * den, den * amount[1]
            else:
                num, den = amount
        return num, den

    @property
    def state(self) -> AccountState:
        """Balance, equity and margin as of the last revaluation.

        Built when read, from the money `_take_money` took then: a backtest revalues on every quote, and
        most quotes only need the margin level's side of the stop-out levels (`level_at_most`).
        """
        state = self._state
        if state is None:
            a = self.account
            balance, credit, floating, margin = self._money
            state = self._state = AccountState.of(
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
        return state

    def _take_money(self, margin: tuple[int, int]) -> None:
        """Take the balance, credit, floating result and `margin` now as the account's (see `state`)."""
        digits = self.account.currency_digits
        book = self.book
        balance, credit = book.balance, book.credit
        if balance is not self._raw_balance:  # changes with deals only: quantized once per change
            self._raw_balance, self._balance_q = balance, money(balance, digits)
        if credit is not self._raw_credit:
            self._raw_credit, self._credit_q = credit, money(credit, digits)
        taken = self._margin_taken
        if taken is not None and taken[0] is margin and taken[1] == digits:
            margin_q = taken[2]  # the same (memoised, immutable) ratio as last quote: the same money
        else:
            margin_q = money_of(margin[0], margin[1], digits)
            self._margin_taken = (margin, digits, margin_q)
        self._money = (self._balance_q, self._credit_q, money(self._floating(), digits), margin_q)
        self._state = None
        self.margin_call = self.level_at_most(self.account.margin_so_call)

    @property
    def balance(self) -> Decimal:
        """`state.balance`, without building the state."""
        return self._money[0]

    @property
    def equity(self) -> Decimal:
        """`state.equity` (balance + credit + floating), without building the state."""
        balance, credit, floating, _ = self._money
        return balance + credit + floating

    def _floating(self) -> Decimal:
        """`accounts.floating_of` the open positions, as a loop (on every quote)."""
        total = _ZERO
        for p in self.book.positions.values():
            total += p.profit + p.swap
        return total

    def level_at_most(self, level: Decimal) -> bool:
        """Tell whether the margin level (`state.margin_level`) is at or below `level` (False without
        margin)."""
        balance, credit, floating, margin = self._money
        if not margin:
            return False
        if level < _HUNDRED and balance + credit + floating >= margin:
            return False  # equity >= margin: the level is at least 100.00 (no state to build)
        found = self.state.margin_level
        return found is not None and found <= level

    def revalue(self, symbols: Iterable[str] | None = None) -> None:
        """Mark positions at their exit prices (all, or those of `symbols`) and recompute the account."""
        positions = self.book.positions
        wanted = None if symbols is None else set(symbols)
        ticks = self.quotes.ticks
        for key, p in positions.items():  # values replaced in place: no copy needed
            tick = ticks.get(p.symbol)
            if tick is None or (wanted is not None and p.symbol not in wanted and not self._converts(p)):
                continue
            try:
                positions[key] = self._mark(p, p.type.exit_price(tick.bid, tick.ask))
            except ValueError:  # no conversion quote yet: keep the last valuation
                continue
        self._take_money(self._margin(positions.values(), remember=True))

    def _mark(self, p: Position, price: int) -> Position:
        """Return `p` valued at `price`: `positions.mark` with `profit_fn`, in integer arithmetic (hot path).

        (price − cost / volume) × sign × volume × contract equals sign × (price × volume − cost) × contract
        over the notional scale exactly, so the result is the same to the last digit.
        """
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
        value = money_of(num, den, self.account.currency_digits)
        return msgspec.structs.replace(p, price_current=price, profit=value)

    def _cost_raw(self, p: Position) -> int:
        """`p.cost_raw`, memoised: parsing the exact Decimal back to an int dominates a tick otherwise."""
        cached = self._costs.get(p.cost)
        if cached is None:
            if len(self._costs) > _MEMO_MAX:
                self._costs.clear()
            cached = self._costs[p.cost] = p.cost_raw
        return cached

    def _contract(self, spec: SymbolSpec) -> tuple[int, int]:
        size = self._contracts.get(spec.name)
        if size is None:
            size = self._contracts[spec.name] = Fraction(spec.contract_size).as_integer_ratio()
        return size

    def _converts(self, p: Position) -> bool:
        """Tell whether the position's value depends on quotes of other symbols (currency conversion)."""
        spec = self.specs[p.symbol]
        return self.account.currency not in (spec.currency_profit, spec.currency_margin)

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
        return -to_money(Fraction(per_lot) * Fraction(volume, VOLUME_SCALE), self.account.currency_digits)
