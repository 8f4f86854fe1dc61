"""`SimBroker`: the simulated broker's trade server, exact and pure (no MT5 dicts, no floats, no clock).

The simulated terminal (paper trading, the PC agent's `--terminal sim`) and the backtester drive the same
broker: they feed it every tick in time order (`on_tick`), tell it the time (`on_time`) and send it
`model.commands.OrderRequest`s with the time they are made (`order_send(request, now_ns)`). Answers carry
MT5's `TRADE_RETCODE_*` and MT5's short texts.

Requests, as MT5's trade server handles them:

- TRADE_ACTION_DEAL fills at once at the ask (BUY) or bid (SELL), moved against the trader by a seeded
  random slippage of up to `slippage_points`. With a `price`, a fill more than `deviation` points worse is
  answered REQUOTE (10004) with the current bid/ask; `requote_probability` requotes at random (seeded).
  The market is fully liquid, so FOK and IOC fill completely; the symbols run in market execution, so
  RETURN is refused for market and stop orders (INVALID_FILL 10030), as MT5 does. A `position` makes it a
  close of that position (opposite type, at most its volume).
- TRADE_ACTION_PENDING places BUY/SELL LIMIT, STOP and STOP_LIMIT orders; the answer is DONE (10009)
  with the order ticket — real accounts may answer PLACED (10008) instead. Ticks trigger them (buy limit:
  ask ≤ price, sell limit: bid ≥ price, buy stop: ask ≥ price, sell stop: bid ≤ price); a triggered
  stop-limit becomes a limit order at its stop-limit price, keeping its ticket. Limit orders fill at the
  market price, which is the limit price or better; stop orders fill at the market with slippage. An order
  the account cannot margin when it triggers is REJECTED. GTC, DAY (until the server day ends),
  SPECIFIED and SPECIFIED_DAY (until that day ends) expire on time.
- TRADE_ACTION_MODIFY changes a pending order's price, stop-limit, SL/TP and expiration; TRADE_ACTION_REMOVE
  cancels it; both answer FROZEN (10029) within the freeze level, NO_CHANGES (10025) for a no-op.
- TRADE_ACTION_SLTP sets a position's SL/TP (FROZEN when a current stop is within the freeze level); ticks
  close a BUY at the bid when bid ≤ SL (reason SL) or bid ≥ TP (reason TP), a SELL at the ask likewise.
- TRADE_ACTION_CLOSE_BY (hedging only) closes two opposite positions of one symbol against each other: two
  OUT_BY deals at the open price of `position_by`, so the pair realises the difference of the open prices.

Netting accounts keep one position per symbol (deals IN/OUT/INOUT); hedging accounts one per deal IN.
Balance, credit, equity, margin, free margin and margin level are recomputed on every tick; at or below
the stop-out level the most losing position is closed (reason SO) until the level recovers. Swaps are
charged at 00:00 server time (UTC), three nights on Wednesday, and commissions on every deal. Checks come
from `model.checks.check_request`, except the money check: it compares the account's whole margin after
the fill with its equity, so a close, a reversal or a hedge that frees margin is never NO_MONEY.

The request's `comment` and `magic` go onto its order, the deals and the position, as on MT5, so a client
can find its orders again after a crash. With `ExecutionSettings.state_path` the books survive restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import msgspec

from aitrading.common.errors import ConfigError
from aitrading.model.accounts import AccountState
from aitrading.model.calc import margin, profit
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import OrderType
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.mt5 import constants as c
from aitrading.mt5.sim import _triggers
from aitrading.mt5.sim._ledger import NS_PER_DAY, Ledger
from aitrading.mt5.sim._requests import Requests
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.answers import CheckAnswer, Refused, TradeAnswer, retcode_text
from aitrading.mt5.sim.book import Book, BookOrder, load_book, save_book

__all__ = ["CheckAnswer", "ExecutionSettings", "SimAccount", "SimBroker", "TradeAnswer"]


class SimBroker:
    """The simulated trade server of one account over `specs` (see the module docstring)."""

    def __init__(
        self,
        specs: Mapping[str, SymbolSpec],
        *,
        account: SimAccount | None = None,
        settings: ExecutionSettings | None = None,
    ) -> None:
        self._account = account or SimAccount()
        self._settings = settings or ExecutionSettings()
        path = self._settings.state_path
        book = load_book(path) if path is not None else None
        if book is None:
            book = Book(
                login=self._account.login,
                currency=self._account.currency,
                hedging=self._account.mode.is_hedging,
                balance=self._account.balance,
                credit=self._account.credit,
            )
        else:
            self._check_restored(book, specs)
        self._ledger = Ledger(specs, self._account, self._settings, book)
        self._requests = Requests(self._ledger)

    def _check_restored(self, book: Book, specs: Mapping[str, SymbolSpec]) -> None:
        a = self._account
        if (book.currency, book.hedging) != (a.currency, a.mode.is_hedging):
            raise ConfigError(
                f"simulated broker state {self._settings.state_path} is a {book.currency} "
                f"{'hedging' if book.hedging else 'netting'} account; the configured one is {a.currency} "
                f"{'hedging' if a.mode.is_hedging else 'netting'}"
            )
        used = {p.symbol for p in book.positions.values()} | {o.symbol for o in book.orders.values()}
        missing = sorted(used - set(specs))
        if missing:
            raise ConfigError(
                f"simulated broker state {self._settings.state_path} has positions or orders in "
                f"{', '.join(missing)}, which the terminal does not list"
            )

    # --- state -----------------------------------------------------------------------------------------
    @property
    def account(self) -> SimAccount:
        """The account's static settings."""
        return self._account

    @property
    def specs(self) -> Mapping[str, SymbolSpec]:
        """The symbols the server trades, by name."""
        return self._ledger.specs

    @property
    def settings(self) -> ExecutionSettings:
        """How the server executes."""
        return self._settings

    @property
    def state(self) -> AccountState:
        """Balance, equity and margin as of the last tick or request."""
        return self._ledger.state

    @property
    def balance(self) -> Decimal:
        """`state.balance`, without building the whole state (read on every quote by a backtest)."""
        return self._ledger.balance

    @property
    def equity(self) -> Decimal:
        """`state.equity`, without building the whole state."""
        return self._ledger.equity

    @property
    def margin_call(self) -> bool:
        """True while the margin level is at or below the margin-call level."""
        return self._ledger.margin_call

    @property
    def has_positions(self) -> bool:
        """True while a position is open."""
        return bool(self._book.positions)

    @property
    def positions(self) -> tuple[Position, ...]:
        """Open positions, oldest first."""
        return tuple(sorted(self._book.positions.values(), key=lambda p: (p.time_ns, p.ticket)))

    @property
    def orders(self) -> tuple[BookOrder, ...]:
        """Active pending orders by ticket."""
        return tuple(sorted(self._book.orders.values(), key=lambda o: o.ticket))

    @property
    def history_orders(self) -> tuple[BookOrder, ...]:
        """Orders that are done (filled, cancelled, expired, rejected), in the order they were done."""
        return tuple(self._book.history_orders)

    @property
    def deals(self) -> tuple[Deal, ...]:
        """Every deal, in the order it was made."""
        return tuple(self._book.deals)

    def deals_since(self, start: int) -> list[Deal]:
        """The deals made after the first `start` (`deals[start:]` without copying the rest)."""
        return self._book.deals[start:]

    def position_reason(self, identifier: int) -> int:
        """Return the `POSITION_REASON_*` of an open position."""
        return self._book.position_reasons.get(identifier, c.POSITION_REASON_CLIENT)

    def quote(self, symbol: str) -> Tick | None:
        """Return the latest tick of `symbol`."""
        return self._ledger.quotes.ticks.get(symbol)

    def market_open(self, now_ns: int) -> bool:
        """Tell whether requests are accepted at `now_ns`."""
        return self._requests.market_open(now_ns)

    @property
    def _book(self) -> Book:
        return self._ledger.book

    # --- time and ticks --------------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> None:
        """Process a new tick (ticks must come in time order across symbols); unknown symbols are ignored."""
        ledger = self._ledger
        if tick.symbol not in ledger.specs:
            return
        now_ns = tick.time_msc * 1_000_000
        book = ledger.book
        if book.orders or book.rollover_day != now_ns // NS_PER_DAY:  # else `on_time` has nothing to do
            _triggers.on_time(ledger, now_ns)
        _triggers.on_tick(ledger, tick)
        if ledger.dirty:
            self._settle()

    def on_time(self, now_ns: int) -> None:
        """Process the swap rollovers and order expirations due by `now_ns`."""
        _triggers.on_time(self._ledger, now_ns)
        self._settle()

    def _settle(self) -> None:
        ledger = self._ledger
        if not ledger.dirty:
            return
        ledger.revalue()
        path = self._settings.state_path
        if path is not None:
            save_book(ledger.book, path)
        ledger.dirty = False

    # --- requests --------------------------------------------------------------------------------------
    def order_send(
        self, request: OrderRequest, now_ns: int, *, reason: int = c.ORDER_REASON_EXPERT
    ) -> TradeAnswer:
        """Execute `request` at `now_ns`; `reason` (`ORDER_REASON_*`) marks its order, deals and position."""
        _triggers.on_time(self._ledger, now_ns)
        request_id = self._book.take_request_id()
        try:
            answer = self._requests.prepare(request, now_ns, dry=False, reason=reason).commit()
        except Refused as refused:
            tick = self.quote(request.symbol)
            answer = TradeAnswer(
                retcode=refused.retcode,
                comment=retcode_text(refused.retcode),
                detail=refused.detail,
                bid=0 if tick is None else tick.bid,
                ask=0 if tick is None else tick.ask,
            )
        self._settle()
        return msgspec.structs.replace(answer, request_id=request_id)

    def order_check(self, request: OrderRequest, now_ns: int) -> CheckAnswer:
        """Tell whether `request` would pass now and what the account would be after it; book nothing."""
        try:
            after = self._requests.prepare(request, now_ns, dry=True, reason=c.ORDER_REASON_EXPERT).after
        except Refused as refused:
            return CheckAnswer(
                retcode=refused.retcode, comment=retcode_text(refused.retcode), detail=refused.detail
            )
        return CheckAnswer(
            retcode=0,
            comment="Done",
            balance=after.balance,
            equity=after.equity,
            profit=after.profit,
            margin=after.margin,
            margin_free=after.margin_free,
            margin_level=after.margin_level,
        )

    def calc_margin(self, order_type: OrderType, symbol: str, volume: int, price: int) -> Decimal:
        """Return the margin of `volume` of `symbol` at `price` (MT5's `order_calc_margin`).

        Raise `KeyError` for an unknown symbol and `ValueError` without a conversion quote.
        """
        a = self._account
        return margin(
            self._ledger.specs[symbol],
            order_type.side,
            volume,
            price,
            leverage=a.leverage,
            account_currency=a.currency,
            rates=self._ledger.quotes,
            digits=a.currency_digits,
        )

    def calc_profit(
        self, order_type: OrderType, symbol: str, volume: int, price_open: int, price_close: int
    ) -> Decimal:
        """Return the profit of `volume` of `symbol` from `price_open` to `price_close`, in account money."""
        a = self._account
        return profit(
            self._ledger.specs[symbol],
            order_type.side,
            volume,
            price_open,
            price_close,
            account_currency=a.currency,
            rates=self._ledger.quotes,
            digits=a.currency_digits,
        )
