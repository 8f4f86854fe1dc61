"""The engine's books of one trading account: orders, deals, positions, balance and equity.

Deals are the only thing that moves positions and the balance, as at the broker: a deal's profit,
commission, swap and fee are the broker's (the terminal reports them), positions follow the netting or
hedging rules of `model.positions`, and floating profit is marked from the last ticks with MT5's formulas
(`model.calc`, converted to the account currency; per quote on integers, `engine.marks`). Equity therefore
equals balance + credit + floating at every tick by construction. The terminal stays the truth:
`engine.reconcile` compares these books with the agent's `AccountSnapshot` and adopts what the terminal says.
"""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction

import msgspec

from aitrading.common.bus.codec import Message
from aitrading.engine.limits import RiskScope, RiskState
from aitrading.engine.marks import PositionMark
from aitrading.model import calc
from aitrading.model._exact import EXACT_UNITS, div_half_away, units_of
from aitrading.model.accounts import AccountState, FloatingResults, money_decimal
from aitrading.model.deals import Deal
from aitrading.model.enums import Side
from aitrading.model.events import PositionChanged, PositionClosed, PositionOpened
from aitrading.model.ids import (
    AccountId,
    ClientOrderId,
    TenantId,
    order_command_subject,
    order_event_subject,
)
from aitrading.model.orders import Order
from aitrading.model.positions import (
    Position,
    ProfitFn,
    apply_deal_hedging,
    apply_deal_netting,
)
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE

__all__ = ["AccountBook", "AccountProfit", "account_profit_fn"]

_ZERO = Decimal(0)
_GENERATIONS = itertools.count()
_MEMO_MAX = 4096


class AccountProfit:
    """The profit function of an account (a `ProfitFn`): MT5's profit of a position in the account currency.

    (close − open) × sign × lots × contract size × rate, rounded by `calc.to_money`, kept as one numerator
    over one denominator because it runs for every position on every tick. `of_position` is the same
    value for a whole position at a raw price, on integers only (no `Fraction` and its gcd per tick), and
    `plan` / `value` the same again with the position's coefficients worked out once (`engine.marks`): what
    `AccountBook.mark` uses on every quote. Specs are asked for once per symbol, until `forget_specs`.
    """

    __slots__ = (
        "_costs",
        "_currency",
        "_known_specs",
        "_rates",
        "_specs",
        "digits",
        "generation",
        "on_integers",
    )

    def __init__(self, specs: Callable[[str], SymbolSpec], currency: str, rates: calc.Rates, digits: int):
        self._specs, self._currency, self._rates = specs, currency, rates
        self._costs: dict[Decimal, int] = {}
        self._known_specs: dict[str, SymbolSpec] = {}
        self.generation = next(_GENERATIONS)
        """Renewed by `forget_specs` (unique to this function): a `PositionMark` of another is built again."""
        self.digits = digits
        """The account currency's digits: profits are rounded to them."""
        self.on_integers = digits >= 0
        """True when `PositionMark`s can value positions (the account currency has whole digits)."""

    def spec(self, symbol: str) -> SymbolSpec:
        """Return `symbol`'s spec (asked for once, until `forget_specs`); raise `KeyError` if unknown."""
        spec = self._known_specs.get(symbol)
        if spec is None:
            spec = self._known_specs[symbol] = self._specs(symbol)
        return spec

    def forget_specs(self) -> None:
        """Ask for the specs again (the account's terminal reported new ones)."""
        self._known_specs.clear()
        self.generation = next(_GENERATIONS)

    def plan(self, position: Position) -> PositionMark:
        """Return the integer coefficients that value `position` as `of_position` does, at any price."""
        spec = self.spec(position.symbol)
        size_num, size_den = _ratio(spec.contract_size)
        factor = position.type.sign * size_num * 10**self.digits
        currency = spec.currency_profit
        return PositionMark(
            position,
            self.generation,
            factor * position.volume,
            factor * position.cost_raw,
            PRICE_SCALE * VOLUME_SCALE * size_den,
            None if currency == self._currency else currency,
            self.digits,
            units_of(position.swap, 10**self.digits),
        )

    def value(self, mark: PositionMark, price: int) -> tuple[Decimal, int | None]:
        """Return `of_position(mark.position, price)` and its value in units of 10^-digits (None if huge)."""
        num = price * mark.per_price - mark.offset  # the numerator of `_money` × 10^digits
        den = mark.den
        if mark.currency is not None:
            loss = num < 0
            rate_num, rate_den = calc.rate_ratio(
                mark.currency, self._currency, self._rates, use_ask_direct=loss, use_ask_inverse=not loss
            )
            num, den = num * rate_num, den * rate_den
        units = div_half_away(num, den)  # `calc.money_of`, the digits already in the numerator
        if abs(units) >= EXACT_UNITS:
            return self.of_position(mark.position, price), None
        return money_decimal(units, mark.digits), units  # `money_of`'s `Decimal`, remembered

    def __call__(
        self, symbol: str, side: Side, volume: int, price_open: Fraction, price_close: Fraction
    ) -> Decimal:
        # close − open cross-multiplied (unreduced: `calc.money_of` rounds it as the reduced fraction)
        num = price_close.numerator * price_open.denominator - price_open.numerator * price_close.denominator
        den = price_close.denominator * price_open.denominator
        return self._money(symbol, num * side.sign * volume, den * VOLUME_SCALE)

    def of_position(self, position: Position, price: int) -> Decimal:
        """Return the profit of closing all of `position` at raw `price` (`positions.floating_profit`).

        (price − cost / volume) × sign × volume equals sign × (price × volume − cost) over the notional
        scale exactly, so the result is the same to the last digit.
        """
        cost = self._costs.get(position.cost)
        if cost is None:  # parsing the exact Decimal cost back each tick would cost more than the rest
            if len(self._costs) > _MEMO_MAX:
                self._costs.clear()
            cost = self._costs[position.cost] = position.cost_raw
        num = position.type.sign * (price * position.volume - cost)
        return self._money(position.symbol, num, PRICE_SCALE * VOLUME_SCALE)

    def _money(self, symbol: str, num: int, den: int) -> Decimal:
        """Round (num / den) price units × lots of `symbol` to account money."""
        spec = self.spec(symbol)
        size_num, size_den = _ratio(spec.contract_size)
        num, den = num * size_num, den * size_den
        if spec.currency_profit != self._currency:  # else the rate is exactly 1
            loss = num < 0
            rate_num, rate_den = calc.rate_ratio(
                spec.currency_profit,
                self._currency,
                self._rates,
                use_ask_direct=loss,
                use_ask_inverse=not loss,
            )
            num, den = num * rate_num, den * rate_den
        return calc.money_of(num, den, self.digits)


def account_profit_fn(
    specs: Callable[[str], SymbolSpec], currency: str, rates: calc.Rates, digits: int
) -> AccountProfit:
    """Return the profit function of an account: MT5's profit of a position in the account currency."""
    return AccountProfit(specs, currency, rates, digits)


def _floating_units(mark: PositionMark | None, position: Position, digits: int) -> int | None:
    """Return `position`'s profit + swap in units of 10^-digits when its mark knows them, else None."""
    if mark is None or mark.position is not position or mark.units is None or mark.swap_units is None:
        return None
    return mark.units + mark.swap_units if mark.digits == digits else None


@functools.lru_cache(maxsize=1024)
def _ratio(value: Decimal) -> tuple[int, int]:
    return value.as_integer_ratio()


class AccountBook:
    """Orders, deals, positions and money of one account, as the engine knows them."""

    feed_generation = 0
    """Bumped whenever any book's feed changes, so indexes of books by feed know to rebuild."""

    def __init__(self, tenant: TenantId, account: AccountId, feed: str, state: AccountState) -> None:
        self.tenant = tenant
        self.account = account
        self._feed = feed
        self.state = state
        self.positions: dict[int, Position] = {}
        self.orders: dict[ClientOrderId, Order] = {}
        # the client order ids of the orders not yet terminal, in `orders`' order (keys only): a snapshot
        # after every execution asks for them, and scanning every order the account ever had was O(orders)
        self._working: dict[ClientOrderId, None] = {}
        self.by_ticket: dict[int, ClientOrderId] = {}
        self.deals: dict[int, Deal] = {}
        self.risk_state = RiskState.ACTIVE
        self.risk_reason = ""
        self.peak_equity = state.equity
        self.day = -1
        self.day_start_equity = state.equity
        self.recent_orders: collections.deque[int] = collections.deque()
        self._open_prices: dict[tuple[Decimal, int], Fraction] = {}
        self._marks: dict[int, PositionMark] = {}
        self._results: FloatingResults | None = None
        self.profit_fn: AccountProfit | None = None
        """The engine's profit function of the account, once it asked for it (`EngineCore._profit_fn`)."""
        self.online = False

    @functools.cached_property
    def risk_keys(self) -> tuple[tuple[RiskScope, str, str], ...]:
        """The risk levels whose equity limits watch this account: its tenant's and its own."""
        return ((RiskScope.TENANT, self.tenant, self.tenant), (RiskScope.ACCOUNT, self.tenant, self.account))

    @functools.cached_property
    def event_subject(self) -> str:
        """`ord.evt.<tenant>.<account>`, where the account's events go (built once)."""
        return order_event_subject(self.tenant, self.account)

    @functools.cached_property
    def command_subject(self) -> str:
        """`ord.cmd.<tenant>.<account>`, where the account's commands go (built once)."""
        return order_command_subject(self.tenant, self.account)

    @property
    def feed(self) -> str:
        """The feed (broker server) of the account's terminal: its ticks value the positions."""
        return self._feed

    @feed.setter
    def feed(self, feed: str) -> None:
        if feed != self._feed:
            self._feed = feed
            self.profit_fn = None  # it converts with the old feed's quotes: the engine makes a new one
            AccountBook.feed_generation += 1

    @property
    def hedging(self) -> bool:
        """True for a hedging account."""
        return self.state.margin_mode.is_hedging

    def position_of(self, symbol: str) -> Position | None:
        """Return the netting position of `symbol` (the first one of a hedging account)."""
        for position in self.positions.values():
            if position.symbol == symbol:
                return position
        return None

    def net_volume(self, symbol: str) -> int:
        """Return Σ signed raw volume of `symbol`'s positions (BUY positive)."""
        return sum(p.signed_volume for p in self.positions.values() if p.symbol == symbol)

    def working_orders(self) -> list[Order]:
        """Return the orders not yet in a terminal state."""
        orders = self.orders
        return [orders[coid] for coid in self._working]

    def put_order(self, order: Order) -> None:
        """Record `order` (new or changed)."""
        coid = order.client_order_id
        known = coid in self.orders
        self.orders[coid] = order
        if order.state.is_terminal:
            self._working.pop(coid, None)
        elif coid not in self._working:
            if known:  # back from a terminal state (never by the state machine): keep `orders`' order
                self._working = {c: None for c, o in self.orders.items() if not o.is_terminal}
            else:
                self._working[coid] = None
        if order.ticket:
            self.by_ticket[order.ticket] = order.client_order_id

    def drop_order(self, coid: ClientOrderId) -> None:
        """Forget the order `coid` (its row could not be written)."""
        del self.orders[coid]
        self._working.pop(coid, None)

    def order_by_ticket(self, ticket: int) -> Order | None:
        """Return the order with the terminal's `ticket`, if the engine knows it."""
        coid = self.by_ticket.get(ticket)
        return None if coid is None else self.orders.get(coid)

    def book_deal(self, deal: Deal, profit_fn: ProfitFn, ts_ns: int) -> list[Message]:
        """Book `deal` once (by ticket) and return the position events it caused."""
        if deal.ticket in self.deals:
            return []
        self.deals[deal.ticket] = deal
        events: list[Message] = []
        if deal.is_trade:
            events = self._apply_trade(deal, profit_fn, ts_ns)
        self.state = self.state.updated(
            balance=self.state.balance + deal.balance_change, floating=self._floating()
        )
        return events

    def _apply_trade(self, deal: Deal, profit_fn: ProfitFn, ts_ns: int) -> list[Message]:
        before = dict(self.positions)
        if self.hedging:
            self.positions, realised = apply_deal_hedging(self.positions, deal, profit_fn)
        else:
            current = self.position_of(deal.symbol)
            updated, realised = apply_deal_netting(current, deal, profit_fn)
            if current is not None:
                del self.positions[current.identifier]
            if updated is not None:
                self.positions[updated.identifier] = updated
        events: list[Message] = []
        common = {"tenant": self.tenant, "account": self.account, "ts_ns": ts_ns, "deal": deal.ticket}
        for ident, position in self.positions.items():
            old = before.get(ident)
            if old is None:
                events.append(PositionOpened(position=position, **common))  # type: ignore[arg-type]
            elif old != position:
                events.append(PositionChanged(position=position, realised=realised, **common))  # type: ignore[arg-type]
        for ident, old in before.items():
            if ident not in self.positions:
                events.append(
                    PositionClosed(position=old, price_close=deal.price, realised=realised, **common)  # type: ignore[arg-type]
                )
        return events

    def mark(self, symbol: str, bid: int, ask: int, profit_fn: ProfitFn, ts_ns: int) -> bool:
        """Value `symbol`'s positions at the tick; return True when the floating result changed."""
        if isinstance(profit_fn, AccountProfit) and profit_fn.on_integers:
            return self._mark_on_integers(symbol, bid, ask, profit_fn, ts_ns)
        changed = False
        positions = self.positions
        for ident, position in positions.items():  # values replaced in place: no copy needed
            if position.symbol != symbol:
                continue
            price = bid if position.type is Side.BUY else ask
            profit = profit_fn(  # `positions.mark`, with the exact open price memoised
                symbol,
                position.type,
                position.volume,
                self._price_open(position),
                Fraction(price, PRICE_SCALE),
            )
            marked = msgspec.structs.replace(
                position, price_current=price, profit=profit, time_update_ns=ts_ns or position.time_update_ns
            )
            if marked.profit != position.profit:
                changed = True
            positions[ident] = marked
        if changed:
            self.state = self.state.updated(floating=self._floating())
        return changed

    def _mark_on_integers(
        self, symbol: str, bid: int, ask: int, profit_fn: AccountProfit, ts_ns: int
    ) -> bool:
        """`mark` with the engine's own profit function: each position keeps a `PositionMark` (its integer
        coefficients and last value), so a quote costs a product, a division and, when the profit moved, a
        `Decimal`; the same price in the account currency costs neither. Same results as `of_position`, and
        the floating result is summed on the way, on integers (`AccountState.floating_units`)."""
        changed = False
        positions = self.positions
        marks = self._marks
        generation, digits = profit_fn.generation, profit_fn.digits
        total: int | None = 0  # Σ profit + swap in units of 10^-digits; None once a position's is not known
        for ident, position in positions.items():  # values replaced in place: no copy needed
            mark = marks.get(ident)
            if position.symbol != symbol:
                if total is not None:
                    known_units = _floating_units(mark, position, digits)
                    total = None if known_units is None else total + known_units
                continue
            price = bid if position.type is Side.BUY else ask
            if mark is None or mark.position is not position or mark.generation != generation:
                mark = self._new_mark(ident, position, profit_fn)
            known = mark.units  # None for a new mark: `position.profit` came from elsewhere
            if mark.currency is not None:
                profit, units = profit_fn.value(mark, price)
            elif price == mark.price and known is not None:  # the same price: the same profit
                profit, units = mark.profit, known
            else:  # `value` inline (every quote that moves): `money_of` with the digits in the numerator
                num = price * mark.per_price - mark.offset
                den = mark.den
                q, r = divmod(-num if num < 0 else num, den)
                if 2 * r >= den:
                    q += 1
                if q < EXACT_UNITS:
                    units = -q if num < 0 else q
                    profit = money_decimal(units, mark.digits)
                else:
                    profit, units = profit_fn.value(mark, price)
            marked = msgspec.structs.replace(
                position, price_current=price, profit=profit, time_update_ns=ts_ns or position.time_update_ns
            )
            if (units != known) if known is not None and units is not None else profit != position.profit:
                changed = True
            mark.position = marked
            mark.price = price
            mark.units = units
            mark.profit = profit
            positions[ident] = marked
            swap = mark.swap_units
            total = None if total is None or units is None or swap is None else total + units + swap
        if changed:
            self.state = self._floated(total, digits)
        return changed

    def _floated(self, total: int | None, digits: int) -> AccountState:
        """`state.updated(floating=self._floating())`, on integers when the marks know the floating result
        (`total`, in units of 10^-`digits`)."""
        state = self.state
        if total is not None and digits == state.digits:
            results = self._results
            if results is None or results.state is not state:  # the books changed otherwise: start again
                results = self._results = FloatingResults.start(state)
            if results is not None:
                marked = results.next(total)
                if marked is not None:
                    return marked
        return state.updated(floating=self._floating())

    def _new_mark(self, ident: int, position: Position, profit_fn: AccountProfit) -> PositionMark:
        marks = self._marks
        if len(marks) > 2 * len(self.positions) + 8:  # forget the marks of closed positions (in place)
            for gone in [i for i in marks if i not in self.positions]:
                del marks[gone]
        mark = marks[ident] = profit_fn.plan(position)
        return mark

    def adopt(self, state: AccountState, positions: Mapping[int, Position]) -> None:
        """Take the terminal's account state and positions as the books' own (after reconciliation)."""
        self.state = state
        self.positions = dict(positions)

    def _price_open(self, position: Position) -> Fraction:
        key = (position.cost, position.volume)
        found = self._open_prices.get(key)
        if found is None:
            if len(self._open_prices) > _MEMO_MAX:
                self._open_prices.clear()
            found = self._open_prices[key] = position.price_open
        return found

    def _floating(self) -> Decimal:
        total = _ZERO  # `sum` over a generator, as a loop (on every tick)
        for p in self.positions.values():
            total += p.profit + p.swap
        return total
