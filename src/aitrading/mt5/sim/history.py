"""Bounded per-symbol history of the simulated terminal: ticks, M1 bars and the day's statistics.

Ticks are kept as exact raw integers in growable numpy columns. Like MT5, the terminal builds M1 bars from
the ticks (bid OHLC, tick count, smallest spread in points) and every longer timeframe from the M1 bars.
Both stores are bounded: ticks by age and count, M1 bars by count, with a little slack so old rows are
dropped in batches rather than one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from aitrading.model.market import Tick
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import VOLUME_SCALE
from aitrading.mt5 import constants as c
from aitrading.mt5._internal import bucket_start

__all__ = ["BarColumns", "Columns", "DayStats", "SymbolHistory"]

I64 = npt.NDArray[np.int64]
_MS_PER_DAY = 86_400_000
_MIN_SLACK = 1024

_TICK_FIELDS = {
    "time_msc": np.dtype(np.int64),
    "bid": np.dtype(np.int64),
    "ask": np.dtype(np.int64),
    "last": np.dtype(np.int64),
    "volume": np.dtype(np.int64),
    "flags": np.dtype(np.int64),
}
_BAR_FIELDS = {
    name: np.dtype(np.int64)
    for name in ("time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume")
}


class Columns:
    """Equal-length numpy columns with amortised append and drop-from-front."""

    def __init__(self, fields: Mapping[str, np.dtype[np.int64]], capacity: int = 4096) -> None:
        self._fields = dict(fields)
        self._data = {name: np.empty(capacity, dtype) for name, dtype in self._fields.items()}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, name: str) -> I64:
        """Return a view of the column `name` (valid until the next append or drop)."""
        return self._data[name][: self._size]

    def append(self, columns: Mapping[str, I64]) -> None:
        """Append rows given as one array per column."""
        n = len(next(iter(columns.values())))
        if not n:
            return
        need = self._size + n
        capacity = len(next(iter(self._data.values())))
        if need > capacity:
            capacity = max(need, 2 * capacity)
            for name, old in self._data.items():
                grown = np.empty(capacity, old.dtype)
                grown[: self._size] = old[: self._size]
                self._data[name] = grown
        for name, values in columns.items():
            self._data[name][self._size : need] = values
        self._size = need

    def drop_front(self, n: int) -> None:
        """Drop the `n` oldest rows."""
        n = min(n, self._size)
        if n <= 0:
            return
        keep = self._size - n
        for column in self._data.values():
            column[:keep] = column[n : self._size]
        self._size = keep


class BarColumns(NamedTuple):
    """Bars as raw-integer columns: open time (s), bid OHLC (raw prices), counts and spread (points)."""

    time: I64
    open: I64
    high: I64
    low: I64
    close: I64
    tick_volume: I64
    spread: I64
    real_volume: I64


@dataclass(slots=True)
class DayStats:
    """The current UTC day's extremes and opening bid, for `SymbolInfo`."""

    day: int
    open_bid: int
    bid_high: int
    bid_low: int
    ask_high: int
    ask_low: int


def _group_starts(keys: I64) -> npt.NDArray[np.intp]:
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def _aggregate(keys: I64, bars: BarColumns | None, **ticks: I64) -> BarColumns:
    """Group consecutive equal `keys` into bars, from ticks (`bid`, `spread`, `volume`) or from bars."""
    starts = _group_starts(keys)
    ends = np.concatenate((starts[1:], [len(keys)])) - 1
    if bars is None:
        bid, spread, volume = ticks["bid"], ticks["spread"], ticks["volume"]
        return BarColumns(
            time=keys[starts],
            open=bid[starts],
            high=np.maximum.reduceat(bid, starts),
            low=np.minimum.reduceat(bid, starts),
            close=bid[ends],
            tick_volume=np.diff(np.concatenate((starts, [len(keys)]))).astype(np.int64),
            spread=np.minimum.reduceat(spread, starts),
            real_volume=np.add.reduceat(volume, starts),
        )
    return BarColumns(
        time=keys[starts],
        open=bars.open[starts],
        high=np.maximum.reduceat(bars.high, starts),
        low=np.minimum.reduceat(bars.low, starts),
        close=bars.close[ends],
        tick_volume=np.add.reduceat(bars.tick_volume, starts),
        spread=np.minimum.reduceat(bars.spread, starts),
        real_volume=np.add.reduceat(bars.real_volume, starts),
    )


class SymbolHistory:
    """The ticks and bars one symbol has seen, bounded in memory."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.ticks = Columns(_TICK_FIELDS)
        self.m1 = Columns(_BAR_FIELDS, capacity=1024)
        self.last: Tick | None = None
        self.day: DayStats | None = None

    def ingest(self, ticks: Sequence[Tick]) -> None:
        """Add ticks newer than (or as new as) every tick already held, oldest first."""
        n = len(ticks)
        if not n:
            return
        time_msc = np.fromiter((t.time_msc for t in ticks), np.int64, n)
        bid = np.fromiter((t.bid for t in ticks), np.int64, n)
        ask = np.fromiter((t.ask for t in ticks), np.int64, n)
        last = np.fromiter((t.last for t in ticks), np.int64, n)
        volume = np.fromiter((t.volume for t in ticks), np.int64, n)
        flags = np.fromiter((t.flags for t in ticks), np.int64, n)
        self.ticks.append(
            {"time_msc": time_msc, "bid": bid, "ask": ask, "last": last, "volume": volume, "flags": flags}
        )
        self._add_m1(time_msc, bid, ask, volume)
        self._add_day(time_msc, bid, ask)
        self.last = ticks[-1]

    def _add_m1(self, time_msc: I64, bid: I64, ask: I64, volume: I64) -> None:
        minute = time_msc // 60_000 * 60
        spread = (ask - bid) // self.spec.point_raw
        new = _aggregate(minute, None, bid=bid, spread=spread, volume=volume // VOLUME_SCALE)
        m1 = self.m1
        if len(m1) and new.time[0] == m1["time"][-1]:
            # The batch continues the forming bar: fold its first group in.
            m1["high"][-1] = max(m1["high"][-1], new.high[0])
            m1["low"][-1] = min(m1["low"][-1], new.low[0])
            m1["close"][-1] = new.close[0]
            m1["tick_volume"][-1] += new.tick_volume[0]
            m1["spread"][-1] = min(m1["spread"][-1], new.spread[0])
            m1["real_volume"][-1] += new.real_volume[0]
            new = BarColumns(*(column[1:] for column in new))
        m1.append(new._asdict())

    def _add_day(self, time_msc: I64, bid: I64, ask: I64) -> None:
        day = int(time_msc[-1] // _MS_PER_DAY)
        first = int(np.searchsorted(time_msc, day * _MS_PER_DAY, "left"))
        bid, ask = bid[first:], ask[first:]
        stats = self.day
        if stats is None or stats.day != day:
            self.day = DayStats(
                day=day,
                open_bid=int(bid[0]),
                bid_high=int(bid.max()),
                bid_low=int(bid.min()),
                ask_high=int(ask.max()),
                ask_low=int(ask.min()),
            )
            return
        stats.bid_high = max(stats.bid_high, int(bid.max()))
        stats.bid_low = min(stats.bid_low, int(bid.min()))
        stats.ask_high = max(stats.ask_high, int(ask.max()))
        stats.ask_low = min(stats.ask_low, int(ask.min()))

    def trim(self, now_ms: int, *, tick_window_ms: int, max_ticks: int, max_m1_bars: int) -> None:
        """Forget ticks older than the window or beyond the count, and M1 bars beyond their count."""
        size = len(self.ticks)
        expired = int(np.searchsorted(self.ticks["time_msc"], now_ms - tick_window_ms, "left"))
        excess = size - max_ticks
        slack = max(_MIN_SLACK, max_ticks // 8)
        if expired >= slack or excess > slack:
            self.ticks.drop_front(max(expired, excess))
        excess_bars = len(self.m1) - max_m1_bars
        if excess_bars > max(_MIN_SLACK // 16, max_m1_bars // 64):
            self.m1.drop_front(excess_bars)

    def bars(self, timeframe: int) -> BarColumns:
        """Return the bars of `timeframe` built from the M1 bars held, the forming one last."""
        m1 = BarColumns(*(self.m1[name] for name in BarColumns._fields))
        if timeframe == c.TIMEFRAME_M1 or not len(m1.time):
            return m1
        return _aggregate(bucket_start(m1.time, timeframe), m1)
