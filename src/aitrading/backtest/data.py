"""What a backtest replays: bars or ticks from the tick store, a backtesting.py-style CSV, or tick files.

Bars become quotes: a tick at the open (at the bar's open time) and one at the close (just before the bar
ends); with `ohlc` also the low and the high in between, in the order a bar closing up or down implies (as
MT5's tester's "OHLC" model), so that SL/TP, pending orders and stop-outs can trigger inside the bar.
Bars are bid prices; the ask is the bid plus the spread in points.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from aitrading.common.errors import BadInputError
from aitrading.history._text import TextSource
from aitrading.history.formats import TickFormat, TickParser
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.values import price_raw
from aitrading.storage.ticks import TickCursor, TickStore, next_tick_cursor

__all__ = [
    "bar_quotes",
    "bar_ticks",
    "parse_time",
    "read_csv_bars",
    "read_tick_file",
    "store_bars",
    "store_ticks",
    "timeframe_seconds",
]

_TF_SECONDS = {tf: tf.seconds for tf in Timeframe}


def timeframe_seconds(tf: Timeframe) -> int:
    """Return the length of a bar of `tf` in seconds."""
    return tf.seconds


def parse_time(text: str) -> int:
    """Return UTC epoch seconds of `YYYY-MM-DD[ HH:MM[:SS]]` (naive times are UTC)."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInputError(f"cannot read time {text!r}; use YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS'") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def read_csv_bars(
    path: Path, *, feed: str, symbol: str, timeframe: Timeframe | None = None
) -> tuple[list[Bar], Timeframe]:
    """Read a backtesting.py-style CSV (`<time>,Open,High,Low,Close[,Volume]`, naive times as UTC).

    Without `timeframe` it is the most common gap between bars. Raise `BadInputError` with the line of a
    bad row.
    """
    if not path.is_file():
        raise BadInputError(f"no such file: {path}")
    rows: list[tuple[int, int, int, int, int, int]] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        try:
            cols = [header.index(n) for n in ("open", "high", "low", "close")]
        except ValueError:
            raise BadInputError(
                f"{path}: header needs Open, High, Low, Close columns, got {header}"
            ) from None
        vol = header.index("volume") if "volume" in header else None
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                t = parse_time(row[0])
                o, h, lo, c = (price_raw(row[i]) for i in cols)
                v = int(float(row[vol])) if vol is not None and row[vol] else 0
            except (BadInputError, ValueError, IndexError) as exc:
                raise BadInputError(f"{path}:{line}: bad row {row!r}: {exc}") from None
            rows.append((t, o, h, lo, c, v))
    if not rows:
        raise BadInputError(f"{path}: no bars")
    if timeframe is None:
        gaps: dict[int, int] = {}
        for a, b in itertools.pairwise(rows):
            gaps[b[0] - a[0]] = gaps.get(b[0] - a[0], 0) + 1
        step = max(gaps, key=lambda g: gaps[g]) if gaps else 3600
        by_len = {s: tf for tf, s in _TF_SECONDS.items()}
        if step not in by_len:
            raise BadInputError(f"{path}: bars are {step}s apart; pass --timeframe")
        timeframe = by_len[step]
    bars = [
        Bar(
            feed=feed,
            symbol=symbol,
            timeframe=int(timeframe),
            time=t,
            open=o,
            high=h,
            low=lo,
            close=c,
            tick_volume=v,
        )
        for t, o, h, lo, c, v in rows
    ]
    return bars, timeframe


def bar_ticks(bar: Bar, seconds: int, spread_raw: int, *, ohlc: bool = True) -> Iterator[Tick]:
    """Yield the quotes of `bar` (open, low/high, close; just open and close with `ohlc=False`)."""
    start_ms = bar.time * 1000
    end_ms = start_ms + seconds * 1000 - 1
    prices: list[tuple[int, int]] = [(start_ms, bar.open)]
    if ohlc:
        first, second = (bar.high, bar.low) if bar.close < bar.open else (bar.low, bar.high)
        prices += [(start_ms + seconds * 250, first), (start_ms + seconds * 500, second)]
    prices.append((end_ms, bar.close))
    for t, p in prices:
        yield Tick(feed=bar.feed, symbol=bar.symbol, time_msc=t, bid=p, ask=p + spread_raw, flags=6)


def bar_quotes(bar: Bar, seconds: int, spread_raw: int, *, ohlc: bool = True) -> list[Tick]:
    """Return the quotes `bar_ticks` yields, in a list: the backtest driver builds them for every bar and a
    generator costs (a test pins the two)."""
    start_ms = bar.time * 1000
    feed, symbol, open_ = bar.feed, bar.symbol, bar.open
    quotes = [Tick(feed=feed, symbol=symbol, time_msc=start_ms, bid=open_, ask=open_ + spread_raw, flags=6)]
    if ohlc:
        first, second = (bar.high, bar.low) if bar.close < open_ else (bar.low, bar.high)
        t1, t2 = start_ms + seconds * 250, start_ms + seconds * 500
        quotes.append(Tick(feed=feed, symbol=symbol, time_msc=t1, bid=first, ask=first + spread_raw, flags=6))
        quotes.append(
            Tick(feed=feed, symbol=symbol, time_msc=t2, bid=second, ask=second + spread_raw, flags=6)
        )
    close = bar.close
    end_ms = start_ms + seconds * 1000 - 1
    quotes.append(Tick(feed=feed, symbol=symbol, time_msc=end_ms, bid=close, ask=close + spread_raw, flags=6))
    return quotes


async def store_bars(
    store: TickStore, feed: str, symbol: str, timeframe: Timeframe, from_s: int, to_s: int, point_raw: int
) -> list[Bar]:
    """Return the stored bars of `[from_s, to_s)`; built from stored ticks when no bars were imported."""
    out: list[Bar] = []
    after: int | None = None
    while True:
        page = await store.query_bars(feed, symbol, timeframe, from_s, to_s, limit=10_000, after=after)
        out.extend(page)
        if len(page) < 10_000:
            break
        after = page[-1].time
    if not out:
        out = await store.aggregate_bars(feed, symbol, timeframe, from_s * 1000, to_s * 1000, point_raw)
    return out


async def store_ticks(
    store: TickStore, feed: str, symbol: str, from_ms: int, to_ms: int
) -> AsyncIterator[Tick]:
    """Yield the stored ticks of `[from_ms, to_ms)` page by page."""
    after: TickCursor | None = None
    while True:
        page = await store.query_ticks(feed, symbol, from_ms, to_ms, limit=50_000, after=after)
        for tick in page:
            yield tick
        if len(page) < 50_000:
            return
        after = next_tick_cursor(page, after)


def read_tick_file(path: Path, fmt: str, *, feed: str, symbol: str) -> Iterable[Tick]:
    """Yield the ticks of a history file (`aitrading import ticks` formats); bad rows are skipped."""
    if not path.is_file():
        raise BadInputError(f"no such file: {path}")
    parser = TickParser(TickFormat(fmt), feed=feed, symbol=symbol)
    return (tick for _, tick in parser.ticks(TextSource(path).lines()))
