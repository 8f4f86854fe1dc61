"""`SimulatedTerminal`: the MetaTrader5 API over a simulated market (market-data side).

Time moves only when the injected `Clock` does. On every market-data call the terminal pulls from its
`TickSource` the ticks up to the clock's now, folds them into a bounded per-symbol history, and answers
like MT5: `copy_ticks_*` as `TICK_DTYPE` arrays in `time_msc` order, `copy_rates_*` as `RATE_DTYPE` bars
built from the ticks (bid OHLC, tick volume, spread), `symbol_info_tick` with the latest tick.

Order execution is planned but not built yet (the trading-engine work adds spreads, slippage, requotes,
stops/freeze levels, margin, netting/hedging and swaps): `order_check`, `order_send`, `order_calc_margin`,
`order_calc_profit`, `positions_get`, `orders_get` and the history functions return None with
`last_error() == (RES_E_UNSUPPORTED, ...)`, and `account_info().trade_allowed` is False. They never pretend
to trade.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from aitrading.common.clock import Clock
from aitrading.common.errors import ConfigError
from aitrading.model.market import Tick as ModelTick
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, price_float, volume_float
from aitrading.mt5 import constants as c
from aitrading.mt5._internal import INVALID_PARAMS, NO_IPC, NOT_FOUND, OK, is_timeframe, to_ms
from aitrading.mt5.sim.history import BarColumns, SymbolHistory
from aitrading.mt5.sim.sources import TickSource
from aitrading.mt5.terminal import Records
from aitrading.mt5.types import (
    RATE_DTYPE,
    TICK_DTYPE,
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

__all__ = ["SIM_BUILD", "SimAccount", "SimulatedTerminal"]

SIM_BUILD = 4000
_NOT_BUILT = (c.RES_E_UNSUPPORTED, "order execution in the simulated terminal is not built yet")
_SYNC_STEP_MS = 3_600_000  # catch up a clock jump an hour at a time so memory stays bounded
_INFO_FLAGS = c.TICK_FLAG_BID | c.TICK_FLAG_ASK
_TRADE_FLAGS = c.TICK_FLAG_LAST | c.TICK_FLAG_VOLUME


class SimAccount(msgspec.Struct, frozen=True, kw_only=True):
    """The account `account_info()` reports. Without order execution its balance never moves."""

    login: int = 10_000_001
    name: str = "Simulated account"
    company: str = "aitrading simulated broker"
    currency: str = "USD"
    currency_digits: int = 2
    balance: Decimal = Decimal(10_000)
    leverage: int = 100
    margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    trade_mode: int = c.ACCOUNT_TRADE_MODE_DEMO
    limit_orders: int = 200
    margin_so_call: Decimal = Decimal(50)
    margin_so_so: Decimal = Decimal(30)


class SimulatedTerminal:
    """A MetaTrader 5 terminal simulated over an injected clock and tick source.

    `specs` are the symbols it lists (a mapping by name or an iterable of `SymbolSpec`). `feed` names the
    simulated broker server; `seed` is kept for the execution model's randomness (slippage, requotes).
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
            for name, ticks in self._source.advance(step_end, self._specs).items():
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
                self._login = login
            return True

    def login(
        self, login: int, password: str | None = None, server: str | None = None, timeout: int | None = None
    ) -> bool:
        with self._lock:
            if not self._ready():
                return False
            self._login = login
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
                trade_allowed=False,  # order execution is not built yet
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
            a = self._account
            balance = float(a.balance)
            return AccountInfo(
                login=self._login,
                trade_mode=a.trade_mode,
                leverage=a.leverage,
                limit_orders=a.limit_orders,
                margin_so_mode=c.ACCOUNT_STOPOUT_MODE_PERCENT,
                trade_allowed=False,  # order execution is not built yet
                trade_expert=False,
                margin_mode=a.margin_mode,
                currency_digits=a.currency_digits,
                balance=balance,
                equity=balance,
                margin_free=balance,
                margin_so_call=float(a.margin_so_call),
                margin_so_so=float(a.margin_so_so),
                name=a.name,
                server=self.feed,
                currency=a.currency,
                company=a.company,
            )

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
                if group is None or _in_group(name, group)
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
            return _tick(history.last)

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
        last, day = history.last, history.day
        point = float(spec.point)
        contract = float(spec.contract_size)
        tick_value = contract * point * (self._rate(spec.currency_profit, self._account.currency) or 0.0)
        selected = spec.name in self._selected
        return SymbolInfo(
            select=selected,
            visible=selected,
            time=0 if last is None else last.time_msc // 1000,
            digits=spec.digits,
            spread=spec.typical_spread if last is None else (last.ask - last.bid) // spec.point_raw,
            spread_float=True,
            trade_calc_mode=spec.trade_calc_mode,
            trade_mode=c.SYMBOL_TRADE_MODE_FULL,
            trade_stops_level=spec.stops_level,
            trade_freeze_level=spec.freeze_level,
            trade_exemode=c.SYMBOL_TRADE_EXECUTION_MARKET,
            swap_mode=c.SYMBOL_SWAP_MODE_POINTS,
            swap_rollover3days=c.DAY_OF_WEEK_WEDNESDAY,
            expiration_mode=c.SYMBOL_EXPIRATION_GTC
            | c.SYMBOL_EXPIRATION_DAY
            | c.SYMBOL_EXPIRATION_SPECIFIED
            | c.SYMBOL_EXPIRATION_SPECIFIED_DAY,
            filling_mode=c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC,
            order_mode=127,  # market, limit, stop, stop-limit, SL, TP, close-by
            bid=0.0 if last is None else price_float(last.bid),
            bidhigh=0.0 if day is None else price_float(day.bid_high),
            bidlow=0.0 if day is None else price_float(day.bid_low),
            ask=0.0 if last is None else price_float(last.ask),
            askhigh=0.0 if day is None else price_float(day.ask_high),
            asklow=0.0 if day is None else price_float(day.ask_low),
            point=point,
            trade_tick_value=tick_value,
            trade_tick_value_profit=tick_value,
            trade_tick_value_loss=tick_value,
            trade_tick_size=point,
            trade_contract_size=contract,
            volume_min=volume_float(spec.volume_min),
            volume_max=volume_float(spec.volume_max),
            volume_step=volume_float(spec.volume_step),
            swap_long=float(spec.swap_long),
            swap_short=float(spec.swap_short),
            session_open=0.0 if day is None else price_float(day.open_bid),
            margin_hedged=contract,
            currency_base=spec.currency_base,
            currency_profit=spec.currency_profit,
            currency_margin=spec.currency_margin,
            description=spec.description,
            name=spec.name,
            path=spec.path,
        )

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
            mask = _flag_mask(flags)
            from_ms = _ms_or_none(date_from)
            if mask is None or from_ms is None or not _is_count(count):
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
            return _tick_records(history, rows)

    def copy_ticks_range(self, symbol: str, date_from: object, date_to: object, flags: int) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            history = self._symbol(symbol)
            if history is None:
                return None
            mask = _flag_mask(flags)
            bounds = _bounds(date_from, date_to)
            if mask is None or bounds is None:
                self._fail(INVALID_PARAMS)
                return None
            self._sync()
            times = history.ticks["time_msc"]
            first = int(np.searchsorted(times, bounds[0], "left"))
            end = max(first, int(np.searchsorted(times, bounds[1], "right")))
            if mask == 0:
                rows = np.arange(first, end)
            else:
                rows = first + np.flatnonzero((history.ticks["flags"][first:end] & mask) != 0)
            return _tick_records(history, rows)

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
            from_ms = _ms_or_none(date_from)
            if from_ms is None or not _is_count(count):
                self._fail(INVALID_PARAMS)
                return None
            bars = self._bars(symbol, timeframe)
            if bars is None:
                return None
            end = int(np.searchsorted(bars.time * 1000, from_ms, "right"))
            return _rate_records(bars, max(0, end - count), end)

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            if not _is_count(count) or not _is_index(start_pos):
                self._fail(INVALID_PARAMS)
                return None
            bars = self._bars(symbol, timeframe)
            if bars is None:
                return None
            end = max(0, len(bars.time) - start_pos)
            return _rate_records(bars, max(0, end - count), end)

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: object, date_to: object
    ) -> Records | None:
        with self._lock:
            if not self._ready():
                return None
            bounds = _bounds(date_from, date_to)
            if bounds is None:
                self._fail(INVALID_PARAMS)
                return None
            bars = self._bars(symbol, timeframe)
            if bars is None:
                return None
            opened_ms = bars.time * 1000
            first = int(np.searchsorted(opened_ms, bounds[0], "left"))
            end = max(first, int(np.searchsorted(opened_ms, bounds[1], "right")))
            return _rate_records(bars, first, end)

    # --- trading (not built yet) ------------------------------------------------------------------------
    def _not_built(self) -> None:
        with self._lock:
            if self._ready():
                self._fail(_NOT_BUILT)

    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        self._not_built()
        return None

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float | None:
        self._not_built()
        return None

    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        self._not_built()
        return None

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        self._not_built()
        return None

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        self._not_built()
        return None

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        self._not_built()
        return None

    def history_orders_get(
        self,
        date_from: object = None,
        date_to: object = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        self._not_built()
        return None

    def history_deals_get(
        self,
        date_from: object = None,
        date_to: object = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        self._not_built()
        return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _ms_or_none(value: object) -> int | None:
    try:
        return to_ms(value)
    except TypeError:
        return None


def _bounds(date_from: object, date_to: object) -> tuple[int, int] | None:
    first, last = _ms_or_none(date_from), _ms_or_none(date_to)
    return None if first is None or last is None else (first, last)


def _flag_mask(flags: object) -> int | None:
    """Return the tick-flag mask a `COPY_TICKS_*` value selects (0 = every tick), or None if invalid."""
    if not isinstance(flags, int) or isinstance(flags, bool):
        return None
    if flags == c.COPY_TICKS_ALL:
        return 0
    wanted = flags & (c.COPY_TICKS_INFO | c.COPY_TICKS_TRADE)
    if flags < 0 or not wanted or wanted != flags:
        return None
    return (_INFO_FLAGS if wanted & c.COPY_TICKS_INFO else 0) | (
        _TRADE_FLAGS if wanted & c.COPY_TICKS_TRADE else 0
    )


def _in_group(name: str, group: str) -> bool:
    """Match MT5's group mask: comma-separated wildcards, `!` excluding; no inclusion means all."""
    include: list[str] = []
    exclude: list[str] = []
    for part in group.split(","):
        pattern = part.strip().upper()
        if pattern.startswith("!"):
            exclude.append(pattern[1:])
        elif pattern:
            include.append(pattern)
    upper = name.upper()
    if include and not any(fnmatch.fnmatchcase(upper, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(upper, p) for p in exclude)


def _tick(tick: ModelTick) -> Tick:
    return Tick(
        time=tick.time_msc // 1000,
        bid=price_float(tick.bid),
        ask=price_float(tick.ask),
        last=price_float(tick.last),
        volume=tick.volume // VOLUME_SCALE,
        time_msc=tick.time_msc,
        flags=tick.flags,
        volume_real=volume_float(tick.volume),
    )


def _tick_records(history: SymbolHistory, rows: np.ndarray[Any, np.dtype[np.intp]]) -> Records:
    ticks = history.ticks
    out = np.empty(len(rows), TICK_DTYPE)
    time_msc = ticks["time_msc"][rows]
    volume = ticks["volume"][rows]
    out["time"] = time_msc // 1000
    out["bid"] = ticks["bid"][rows] / PRICE_SCALE
    out["ask"] = ticks["ask"][rows] / PRICE_SCALE
    out["last"] = ticks["last"][rows] / PRICE_SCALE
    out["volume"] = volume // VOLUME_SCALE
    out["time_msc"] = time_msc
    out["flags"] = ticks["flags"][rows]
    out["volume_real"] = volume / VOLUME_SCALE
    return out


def _rate_records(bars: BarColumns, first: int, end: int) -> Records:
    out = np.empty(max(0, end - first), RATE_DTYPE)
    window = slice(first, end)
    out["time"] = bars.time[window]
    out["open"] = bars.open[window] / PRICE_SCALE
    out["high"] = bars.high[window] / PRICE_SCALE
    out["low"] = bars.low[window] / PRICE_SCALE
    out["close"] = bars.close[window] / PRICE_SCALE
    out["tick_volume"] = bars.tick_volume[window]
    out["spread"] = bars.spread[window]
    out["real_volume"] = bars.real_volume[window]
    return out
