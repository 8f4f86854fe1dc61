"""Market data: ticks, bars and timeframes (MT5's numeric timeframe codes)."""

from __future__ import annotations

import enum

from aitrading.common.bus.codec import Message

__all__ = ["Bar", "Tick", "TickBatch", "Timeframe"]


class Timeframe(enum.IntEnum):
    """Bar timeframes with MT5's `TIMEFRAME_*` values."""

    M1 = 1
    M5 = 5
    M15 = 15
    M30 = 30
    H1 = 16385
    H4 = 16388
    D1 = 16408

    @property
    def seconds(self) -> int:
        """Length of one bar in seconds."""
        return _SECONDS[self]

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        """Return the timeframe named `text` (`M1`, `h1`, …); raise `ValueError` naming the choices."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown timeframe {text!r}; use one of {', '.join(cls.__members__)}") from None


_SECONDS = {
    Timeframe.M1: 60,
    Timeframe.M5: 300,
    Timeframe.M15: 900,
    Timeframe.M30: 1800,
    Timeframe.H1: 3600,
    Timeframe.H4: 14400,
    Timeframe.D1: 86400,
}


class Tick(Message, frozen=True):
    """One quote of one symbol from one feed (broker server).

    Prices are raw integers of 1e-9 (see `aitrading.model.values`); `time_msc` is UTC epoch milliseconds as
    MT5 reports it; `flags` carries MT5's `TICK_FLAG_*` bits.
    """

    feed: str
    symbol: str
    time_msc: int
    bid: int
    ask: int
    last: int = 0
    volume: int = 0
    flags: int = 0


class TickBatch(Message, frozen=True):
    """Ticks of one feed published together (a bus message on `md.ticks.<feed>`)."""

    feed: str
    ticks: list[Tick]


class Bar(Message, frozen=True):
    """One OHLC bar built like MT5's: bid prices, tick volume and spread in points.

    `time` is the bar's open time in UTC epoch seconds. `spread` is the smallest spread seen in the bar,
    in points.
    """

    feed: str
    symbol: str
    timeframe: int
    time: int
    open: int
    high: int
    low: int
    close: int
    tick_volume: int
    spread: int = 0
    real_volume: int = 0
