"""Shapes of the MetaTrader5 package built from the simulator's raw history, and argument checks."""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

from aitrading.model.market import Tick as ModelTick
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, price_float, volume_float
from aitrading.mt5 import constants as c
from aitrading.mt5._internal import to_ms
from aitrading.mt5.sim.history import BarColumns, SymbolHistory
from aitrading.mt5.terminal import Records
from aitrading.mt5.types import RATE_DTYPE, TICK_DTYPE, SymbolInfo, Tick

__all__ = [
    "bounds",
    "flag_mask",
    "in_group",
    "is_count",
    "is_index",
    "ms_or_none",
    "rate_records",
    "symbol_info",
    "tick_records",
    "tick_tuple",
]

_INFO_FLAGS = c.TICK_FLAG_BID | c.TICK_FLAG_ASK
_TRADE_FLAGS = c.TICK_FLAG_LAST | c.TICK_FLAG_VOLUME


def symbol_info(history: SymbolHistory, *, selected: bool, tick_value: float) -> SymbolInfo:
    """Return a symbol's `SymbolInfo`: its spec, the last quote and today's range."""
    spec = history.spec
    last, day = history.last, history.day
    point = float(spec.point)
    contract = float(spec.contract_size)
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


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def ms_or_none(value: object) -> int | None:
    try:
        return to_ms(value)
    except TypeError:
        return None


def bounds(date_from: object, date_to: object) -> tuple[int, int] | None:
    first, last = ms_or_none(date_from), ms_or_none(date_to)
    return None if first is None or last is None else (first, last)


def flag_mask(flags: object) -> int | None:
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


def in_group(name: str, group: str) -> bool:
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


def tick_tuple(tick: ModelTick) -> Tick:
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


def tick_records(history: SymbolHistory, rows: np.ndarray[Any, np.dtype[np.intp]]) -> Records:
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


def rate_records(bars: BarColumns, first: int, end: int) -> Records:
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
