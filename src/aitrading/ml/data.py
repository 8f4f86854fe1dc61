"""Bars for training: from the tick/bar store, or from a CSV file of OHLC bars (research, tests).

The CSV reader accepts the common layouts of exported bars: a header row with a time column (`time`,
`timestamp`, `date`, `datetime`, `timestamp_utc` or an unnamed first column) and `open/high/low/close`
columns, optionally `volume`/`tick_volume` and `spread` (points), in any letter case. Times are ISO-8601;
a time without an offset is UTC. Prices become exact raw integers (1e-9) through `Decimal`, as everywhere
in the platform; the feature edge divides them into floats.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from aitrading.common.errors import BadInputError
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.storage.ticks import TickStore

__all__ = ["load_bars_csv", "load_bars_store"]

_TIME_COLUMNS = ("time", "timestamp", "datetime", "date", "timestamp_utc", "")
_PAGE = 10_000


def _raw(text: str, what: str, line: int) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise BadInputError(f"line {line}: {what} {text!r} is not a number") from None
    if not value.is_finite():
        raise BadInputError(f"line {line}: {what} {text!r} is not finite")
    return int((value * PRICE_SCALE).to_integral_value())


def _epoch_s(text: str, line: int) -> int:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInputError(f"line {line}: time {text!r} is not ISO-8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def load_bars_csv(
    path: Path, *, symbol: str, timeframe: Timeframe, feed: str = "csv", spread_points: int = 0
) -> list[Bar]:
    """Read bars of `symbol` from a CSV (optionally gzipped) file, sorted by time without duplicates.

    `spread_points` fills the spread of bars whose file has no `spread` column. Raise `BadInputError`
    naming the line of the first bad value.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    try:
        t_col = next(header.index(c) for c in _TIME_COLUMNS if c in header)
        o, h, lo, c = (header.index(n) for n in ("open", "high", "low", "close"))
    except (StopIteration, ValueError):
        raise BadInputError(
            f"{path}: need a time column and open/high/low/close; header is {header}"
        ) from None
    v = next((header.index(n) for n in ("tick_volume", "volume") if n in header), None)
    s = header.index("spread") if "spread" in header else None
    by_time: dict[int, Bar] = {}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        volume = 0
        if v is not None and row[v].strip():
            volume = int(Decimal(row[v].strip()).to_integral_value())
        bar = Bar(
            feed=feed,
            symbol=symbol,
            timeframe=int(timeframe),
            time=_epoch_s(row[t_col], line),
            open=_raw(row[o], "open", line),
            high=_raw(row[h], "high", line),
            low=_raw(row[lo], "low", line),
            close=_raw(row[c], "close", line),
            tick_volume=volume,
            spread=int(row[s]) if s is not None and row[s].strip() else spread_points,
        )
        if bar.low > min(bar.open, bar.close) or bar.high < max(bar.open, bar.close) or bar.low <= 0:
            raise BadInputError(f"line {line}: inconsistent bar (low/high do not bracket open/close)")
        by_time[bar.time] = bar
    if not by_time:
        raise BadInputError(f"{path}: no bars")
    return [by_time[t] for t in sorted(by_time)]


async def load_bars_store(
    store: TickStore,
    *,
    feed: str,
    symbol: str,
    timeframe: Timeframe,
    from_s: int = 0,
    to_s: int = 253_402_300_800,
) -> list[Bar]:
    """Read every stored bar of `feed`/`symbol`/`timeframe` in `[from_s, to_s)`, by time."""
    out: list[Bar] = []
    after: int | None = None
    while True:
        page: Sequence[Bar] = await store.query_bars(
            feed, symbol, timeframe, from_s, to_s, limit=_PAGE, after=after
        )
        out.extend(page)
        if len(page) < _PAGE:
            return out
        after = page[-1].time
