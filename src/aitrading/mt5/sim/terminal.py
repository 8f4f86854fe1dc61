"""`SimulatedTerminal`: the MetaTrader5 API over a simulated market and a simulated broker.

Time moves only when the injected `Clock` does. On every call the terminal pulls from its `TickSource` the
ticks up to the clock's now and passes each, in time order across symbols, through its `SimBroker` (so
pending orders, SL/TP and stop-outs see every tick, not only the latest) and into a bounded per-symbol
history. Market data answers like MT5: `copy_ticks_*` as `TICK_DTYPE` arrays in `time_msc` order,
`copy_rates_*` as `RATE_DTYPE` bars built from the ticks (bid OHLC, tick volume, spread),
`symbol_info_tick` with the latest tick.

Trading answers like MT5 too (`sim.broker` describes the server's rules, `sim._trading` the conversions):
`order_send`/`order_check` take the package's request dicts and return `OrderSendResult`/`OrderCheckResult`
with the request echoed; `positions_get`, `orders_get`, `history_orders_get` and `history_deals_get` take
the package's filters; `order_calc_margin`/`order_calc_profit` use MT5's formulas with currency conversion;
`account_info` reports the broker's balance, equity and margin, and trading is allowed. With
`ExecutionSettings.state_path` the broker's books are kept in a file and restored when a terminal starts.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from aitrading.common.clock import Clock
from aitrading.common.errors import ConfigError
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE
from aitrading.mt5 import constants as c
from aitrading.mt5._internal import INVALID_PARAMS, NO_IPC, NOT_FOUND, OK, is_timeframe
from aitrading.mt5.sim._convert import (
    bounds,
    flag_mask,
    in_group,
    is_count,
    is_index,
    ms_or_none,
    rate_records,
    symbol_info,
    tick_records,
    tick_tuple,
)
from aitrading.mt5.sim._trading import CallError, SimTrading
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.broker import SimBroker
from aitrading.mt5.sim.history import BarColumns, SymbolHistory
from aitrading.mt5.sim.sources import TickSource
from aitrading.mt5.terminal import Records
from aitrading.mt5.types import (
    AccountInfo,
    OrderCheckResult,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
)

__all__ = ["SIM_BUILD", "ExecutionSettings", "SimAccount", "SimulatedTerminal"]

SIM_BUILD = 4000
_SYNC_STEP_MS = 3_600_000  # catch up a clock jump an hour at a time so memory stays bounded
_T = TypeVar("_T")


class SimulatedTerminal:
    """A MetaTrader 5 terminal simulated over an injected clock and tick source.

    `specs` are the symbols it lists (a mapping by name or an iterable of `SymbolSpec`). `feed` names the
    simulated broker server. `account` and `execution` configure the simulated broker; without
    `execution`, `seed` seeds its randomness (slippage, requotes).
    History is bounded per symbol: ticks of the last `history_seconds` and at most `history_ticks` of them,
    and `history_m1_bars` M1 bars from which every timeframe is built (all with about 1/8 slack).
    Thread-safe: one lock guards each call.
    """

    def __init__(
        self,
        clock: Clock,
        specs: Mapping[str, SymbolSpec] | Iterable[SymbolSpec],
        source: TickSource,
        *,
        feed: str = "SIM",
        seed: int = 0,
        account: SimAccount | None = None,
        execution: ExecutionSettings | None = None,
        history_seconds: float = 86_400,
        history_ticks: int = 200_000,
        history_m1_bars: int = 44_640,
    ) -> None:
        items = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
        if not items:
            raise ConfigError("a simulated terminal needs at least one symbol spec")
        if history_seconds <= 0 or history_ticks < 1 or history_m1_bars < 1:
            raise ConfigError("history_seconds, history_ticks and history_m1_bars must be positive")
        self._clock = clock
        self._specs: dict[str, SymbolSpec] = {spec.name: spec for spec in items}
        self._source = source
        self.feed = feed
        self.seed = seed
        self._account = account or SimAccount()
        self._login = self._account.login
        self._tick_window_ms = round(history_seconds * 1000)
        self._max_ticks = history_ticks
        self._max_m1_bars = history_m1_bars
        self._broker = SimBroker(
            self._specs, account=self._account, settings=execution or ExecutionSettings(seed=seed)
        )
        self._trading = SimTrading(self._broker, self._login)
        self._history = {name: SymbolHistory(spec) for name, spec in self._specs.items()}
        self._selected = set(self._specs)
        self._synced_ms: int | None = None
        self._initialized = False
        self._error: tuple[int, str] = OK
        self._lock = threading.RLock()

    # --- plumbing ---------------------------------------------------------------------------------------
    def _fail(self, error: tuple[int, str]) -> None:
        self._error = error

    def _ready(self) -> bool:
        if not self._initialized:
            self._error = NO_IPC
            return False
        self._error = OK
        return True

    def _sync(self) -> None:
        """Pull from the source every tick up to the clock's now."""
        now = self._clock.now_ms()
        cursor = self._synced_ms
        if cursor is None:
            start = self._source.start_ms
            cursor = now if start is None else min(now, start - 1)
        if self._synced_ms is not None and now <= cursor:
            return
        while True:
            step_end = min(now, cursor + _SYNC_STEP_MS)
            released = self._source.advance(step_end, self._specs)
            # heapq.merge is stable, so equal times keep the source's symbol order.
            for tick in heapq.merge(*released.values(), key=lambda t: t.time_msc):
                self._broker.on_tick(tick)
            for name, ticks in released.items():
                self._history[name].ingest(ticks)
            for history in self._history.values():
                history.trim(
                    step_end,
                    tick_window_ms=self._tick_window_ms,
                    max_ticks=self._max_ticks,
                    max_m1_bars=self._max_m1_bars,
                )
            cursor = step_end
            if cursor >= now:
                break
        self._synced_ms = now
        self._broker.on_time(self._clock.now_ns())

    def _call(self, method: Callable[..., _T], *args: object) -> _T | None:
        """Run a trading call the package's way: None and `last_error()` when it fails."""
        with self._lock:
            if not self._ready():
                return None
            self._sync()
            try:
                return method(self._clock.now_ns(), *args)
            except CallError as exc:
                self._fail(exc.error)
                return None

    def _symbol(self, symbol: object) -> SymbolHistory | None:
        history = self._history.get(symbol) if isinstance(symbol, str) else None
        if history is None:
            self._fail(NOT_FOUND)
        return history

    # --- connection -------------------------------------------------------------------------------------
    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        with self._lock:
            self._initialized = True
            self._error = OK
            if login is not None:
                self._login = self._trading.login = login
            return True

    def login(
        self, login: int, password: str | None = None, server: str | None = None, timeout: int | None = None
    ) -> bool:
        with self._lock:
            if not self._ready():
                return False
            self._login = self._trading.login = login
            return True

    def shutdown(self) -> None:
        with self._lock:
            self._initialized = False
            self._error = OK

    def last_error(self) -> tuple[int, str]:
        with self._lock:
            return self._error

    def version(self) -> tuple[int, int, str] | None:
        with self._lock:
            return (500, SIM_BUILD, "01 Jan 2024") if self._ready() else None

    def terminal_info(self) -> TerminalInfo | None:
        with self._lock:
            if not self._ready():
                return None
            return TerminalInfo(
                connected=True,
                trade_allowed=True,
                build=SIM_BUILD,
                maxbars=self._max_m1_bars,
                company="aitrading",
                name="aitrading simulated terminal",
                language="English",
            )

    def account_info(self) -> AccountInfo | None:
        with self._lock:
            if not self._ready():
                return None
            self._sync()
            a = self._account
            state = self._broker.state
            return AccountInfo(
                login=self._login,
                trade_mode=a.trade_mode,
                leverage=a.leverage,
                limit_orders=a.limit_orders,
                margin_so_mode=c.ACCOUNT_STOPOUT_MODE_PERCENT,
                trade_allowed=True,
                trade_expert=True,
                margin_mode=a.margin_mode,
                currency_digits=a.currency_digits,
                balance=float(state.balance),
                credit=float(state.credit),
                profit=float(state.profit),
                equity=float(state.equity),
                margin=float(state.margin),
                margin_free=float(state.margin_free),
                margin_level=0.0 if state.margin_level is None else float(state.margin_level),
                margin_so_call=float(a.margin_so_call),
                margin_so_so=float(a.margin_so_so),
                name=a.name,
                server=self.feed,
                currency=a.currency,
                company=a.company,
            )

    @property
    def broker(self) -> SimBroker:
        """The simulated trade server behind this terminal."""
        return self._broker

    # --- symbols ----------------------------------------------------------------------------------------
    def symbols_total(self) -> int | None:
        with self._lock:
            return len(self._specs) if self._ready() else None

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        with self._lock:
            if not self._ready():
                return None
            self._sync()
            return tuple(
                self._symbol_info(history)
                for name, history in self._history.items()
                if group is None or in_group(name, group)
            )

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        with self._lock:
            if not self._ready():
                return None
            history = self._symbol(symbol)
            if history is None:
                return None
            self._sync()
            return self._symbol_info(history)

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        with self._lock:
            if not self._ready():
                return None
            history = self._symbol(symbol)
            if history is None:
                return None
            self._sync()
            if history.last is None:
                self._fail(NOT_FOUND)
                return None
            return tick_tuple(history.last)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        with self._lock:
            if not self._ready() or self._symbol(symbol) is None:
                return False
            if enable:
                self._selected.add(symbol)
            else:
                self._selected.discard(symbol)
            return True

    def _symbol_info(self, history: SymbolHistory) -> SymbolInfo:
        spec = history.spec
        rate = self._rate(spec.currency_profit, self._account.currency)
        tick_value = float(spec.contract_size) * float(spec.point) * (rate or 0.0)
        info = symbol_info(history, selected=spec.name in self._selected, tick_value=tick_value)
        return info._replace(filling_mode=self._broker.settings.filling_mode)

    def _rate(self, source: str, target: str) -> float | None:
        """Return the mid price converting `source` currency to `target`, from a direct pair if quoted."""
        if source == target:
            return 1.0
        for name, invert in ((source + target, False), (target + source, True)):
            history = self._history.get(name)
            if history is not None and history.last is not None:
                mid = (history.last.bid + history.last.ask) / (2 * PRICE_SCALE)
                return 1.0 / mid if invert else mid
        return None

    # --- ticks ------------------------------------------------------------------------------------------
    def copy_ticks_from(self, symbol: str, date_from: object, count: int, flags: int) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            history = self._symbol(symbol)
            if history is None:
                return None
            mask = flag_mask(flags)
            from_ms = ms_or_none(date_from)
            if mask is None or from_ms is None or not is_count(count):
                self._fail(INVALID_PARAMS)
                return None
            self._sync()
            times = history.ticks["time_msc"]
            first = int(np.searchsorted(times, from_ms, "left"))
            if mask == 0:
                rows = np.arange(first, min(len(times), first + count))
            else:
                matching = (history.ticks["flags"][first:] & mask) != 0
                rows = first + np.flatnonzero(matching)[:count]
            return tick_records(history, rows)

    def copy_ticks_range(self, symbol: str, date_from: object, date_to: object, flags: int) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            history = self._symbol(symbol)
            if history is None:
                return None
            mask = flag_mask(flags)
            window = bounds(date_from, date_to)
            if mask is None or window is None:
                self._fail(INVALID_PARAMS)
                return None
            self._sync()
            times = history.ticks["time_msc"]
            first = int(np.searchsorted(times, window[0], "left"))
            end = max(first, int(np.searchsorted(times, window[1], "right")))
            if mask == 0:
                rows = np.arange(first, end)
            else:
                rows = first + np.flatnonzero((history.ticks["flags"][first:end] & mask) != 0)
            return tick_records(history, rows)

    # --- bars -------------------------------------------------------------------------------------------
    def _bars(self, symbol: str, timeframe: int) -> BarColumns | None:
        history = self._symbol(symbol)
        if history is None:
            return None
        if not is_timeframe(timeframe):
            self._fail(INVALID_PARAMS)
            return None
        self._sync()
        return history.bars(timeframe)

    def copy_rates_from(self, symbol: str, timeframe: int, date_from: object, count: int) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            from_ms = ms_or_none(date_from)
            if from_ms is None or not is_count(count):
                self._fail(INVALID_PARAMS)
                return None
            bars = self._bars(symbol, timeframe)
            if bars is None:
                return None
            end = int(np.searchsorted(bars.time * 1000, from_ms, "right"))
            return rate_records(bars, max(0, end - count), end)

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            if not is_count(count) or not is_index(start_pos):
                self._fail(INVALID_PARAMS)
                return None
            bars = self._bars(symbol, timeframe)
            if bars is None:
                return None
            end = max(0, len(bars.time) - start_pos)
            return rate_records(bars, max(0, end - count), end)

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: object, date_to: object
    ) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            window = bounds(date_from, date_to)
            if window is None:
                self._fail(INVALID_PARAMS)
                return None
            bars = self._bars(symbol, timeframe)
            if bars is None:
                return None
            opened_ms = bars.time * 1000
            first = int(np.searchsorted(opened_ms, window[0], "left"))
            end = max(first, int(np.searchsorted(opened_ms, window[1], "right")))
            return rate_records(bars, first, end)

    # --- trading (the broker; see sim._trading) ---------------------------------------------------------
    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        return self._call(self._trading.order_calc_margin, action, symbol, volume, price)

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float | None:
        return self._call(self._trading.order_calc_profit, action, symbol, volume, price_open, price_close)

    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        return self._call(self._trading.order_check, request)

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        return self._call(self._trading.order_send, request)

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        return self._call(self._trading.positions_get, symbol, group, ticket)

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        return self._call(self._trading.orders_get, symbol, group, ticket)

    def history_orders_get(
        self,
        date_from: object = None,
        date_to: object = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        return self._call(self._trading.history_orders_get, date_from, date_to, group, ticket, position)

    def history_deals_get(
        self,
        date_from: object = None,
        date_to: object = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        return self._call(self._trading.history_deals_get, date_from, date_to, group, ticket, position)
