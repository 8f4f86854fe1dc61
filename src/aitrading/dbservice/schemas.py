"""Public schemas of the market-data history API: what clients read, never the store's own types.

Prices and volumes are exact decimal strings (a JSON number would be a binary float to most clients);
times are ISO-8601 UTC plus the integer epoch value they come from.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BarPublic",
    "BarSourceName",
    "BarsPublic",
    "ErrorPublic",
    "SeriesPublic",
    "SymbolsPublic",
    "TickPublic",
    "TicksPublic",
    "TimeframeName",
]


class TimeframeName(enum.StrEnum):
    """Bar timeframes by MT5 name."""

    M1 = "M1"
    M5 = "M5"
    M15 = "M15"
    M30 = "M30"
    H1 = "H1"
    H4 = "H4"
    D1 = "D1"


class BarSourceName(enum.StrEnum):
    """Where bars come from: stored bars, bars built from stored ticks, or stored where present."""

    AUTO = "auto"
    STORED = "stored"
    TICKS = "ticks"


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorPublic(_Public):
    """Why a request failed."""

    detail: str = Field(description="The reason, for a human; the status code says what to do.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "from (2024-01-02T00:00:00.000Z) is after to (...)"}]}
    )


class SeriesPublic(_Public):
    """One stored tick series: a symbol of a feed (broker server)."""

    feed: str = Field(description="The feed (broker server) the ticks came from.")
    symbol: str
    ticks: int = Field(description="How many ticks are stored.")
    digits: int | None = Field(
        description="Price digits from the default symbol specifications; null when unknown."
    )


class SymbolsPublic(_Public):
    """Every stored tick series, sorted by feed and symbol."""

    series: list[SeriesPublic]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"series": [{"feed": "MetaQuotes-Demo", "symbol": "EURUSD", "ticks": 1250000, "digits": 5}]}
            ]
        }
    )


class TickPublic(_Public):
    """One quote as MT5 reported it, with exact prices."""

    time: str = Field(description="ISO-8601 UTC with milliseconds.", examples=["2024-01-02T03:04:05.250Z"])
    time_msc: int = Field(description="UTC epoch milliseconds (MT5's time_msc).")
    bid: str = Field(description="Exact decimal.", examples=["1.08512"])
    ask: str = Field(description="Exact decimal.", examples=["1.08519"])
    last: str = Field(description="Exact decimal; 0 where the feed has no last price (FX).", examples=["0"])
    volume: str = Field(description="Exact decimal lots (MT5's volume_real).", examples=["0"])
    flags: int = Field(description="MT5 TICK_FLAG_* bits.", examples=[6])


class TicksPublic(_Public):
    """A page of ticks in store order (by time, ties in arrival order)."""

    feed: str
    symbol: str
    ticks: list[TickPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null when the range has no more ticks."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "feed": "MetaQuotes-Demo",
                    "symbol": "EURUSD",
                    "ticks": [
                        {
                            "time": "2024-01-02T03:04:05.250Z",
                            "time_msc": 1704164645250,
                            "bid": "1.08512",
                            "ask": "1.08519",
                            "last": "0.00000",
                            "volume": "0",
                            "flags": 6,
                        }
                    ],
                    "next_cursor": "dDoxNzA0MTY0NjQ1MjUwOjE",
                }
            ]
        }
    )


class BarPublic(_Public):
    """One OHLC bar built like MT5's: bid prices, tick volume, smallest spread in points."""

    time: str = Field(description="Open time, ISO-8601 UTC.", examples=["2024-01-02T03:04:00Z"])
    time_s: int = Field(description="Open time in UTC epoch seconds (MT5's rates `time`).")
    open: str = Field(description="Exact decimal.")
    high: str = Field(description="Exact decimal.")
    low: str = Field(description="Exact decimal.")
    close: str = Field(description="Exact decimal.")
    tick_volume: int = Field(description="Number of ticks in the bar.")
    spread: int = Field(description="Smallest spread of the bar in points.")
    real_volume: str = Field(description="Exact decimal lots.")
    source: Literal["stored", "ticks"] = Field(
        description="`stored`: a stored bar; `ticks`: built from the stored ticks for this response."
    )


class BarsPublic(_Public):
    """A page of bars by open time."""

    feed: str
    symbol: str
    timeframe: TimeframeName
    digits: int | None = Field(description="Price digits used for spreads and formatting; null if unknown.")
    bars: list[BarPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null when the range has no more bars."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "feed": "MetaQuotes-Demo",
                    "symbol": "EURUSD",
                    "timeframe": "M1",
                    "digits": 5,
                    "bars": [
                        {
                            "time": "2024-01-02T03:04:00Z",
                            "time_s": 1704164640,
                            "open": "1.08512",
                            "high": "1.08530",
                            "low": "1.08501",
                            "close": "1.08522",
                            "tick_volume": 87,
                            "spread": 7,
                            "real_volume": "0",
                            "source": "ticks",
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )
