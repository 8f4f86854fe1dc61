"""The tick store's logic, synchronous and engine-neutral, over a tiny `Driver` (chDB or clickhouse-connect).

Both stores run a `TickCore` on one dedicated thread, so its calls never interleave: write ordinals are
allocated without locks and recovery runs before anything else touches the marks.

How ingest marks stay exactly as durable as their ticks (schema in `sql`):

1. A write reserves ordinals `[wid, wid + wn)` and sends its ticks in ONE INSERT, each row carrying `wid`
   and `wn`, the first row also the write's marks as JSON. Once the INSERT returns (fsync on), ticks and
   marks are durable together; the in-memory marks are updated and `durable_marks()` answers from memory.
2. Every `checkpoint_every` writes (and at stop) the marks table gets all marks plus the watermark (the
   next free ordinal) in one INSERT. A write with marks but no ticks checkpoints at once: the marks table
   is its only record.
3. Recovery (first use, or after a failed write) loads the checkpoint, then reads the writes at or past the
   watermark: a write with `count() = wn` is whole and its marks count; a torn one (a crash between the
   parts of a multi-partition INSERT) is deleted, so its redelivery cannot duplicate ticks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
import structlog

from aitrading.common.errors import BadInputError, OperationalError
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks import sql

__all__ = ["Columns", "Driver", "TickCore", "arrow_table", "spread_points"]

Columns = dict[str, "np.ndarray[Any, Any] | list[Any]"]

_log = structlog.get_logger("tick_store")
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT16 = (0, 2**16 - 1)


class Driver(Protocol):
    """What the core needs from a database connection; every call blocks."""

    def command(self, query: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing."""

    def columns(self, query: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """Run a query and return its result as Python lists, one per column (maybe none if no rows)."""

    def insert(self, table: str, columns: Columns, types: Sequence[str]) -> None:
        """Insert `columns` (name -> values, all the same length) into `table` in ONE insert statement."""

    def close(self) -> None:
        """Release the connection."""


_ARROW_TYPES = {
    "String": pa.string(),
    "Int64": pa.int64(),
    "UInt64": pa.uint64(),
    "UInt32": pa.uint32(),
    "UInt16": pa.uint16(),
}


def arrow_table(columns: Columns, types: Sequence[str]) -> pa.Table:
    """Return `columns` as an Arrow table whose column types match the ClickHouse `types`, in order."""
    pairs = zip(columns.values(), types, strict=True)
    arrays = [pa.array(values, type=_ARROW_TYPES[ch_type]) for values, ch_type in pairs]
    return pa.Table.from_arrays(arrays, names=list(columns))


def spread_points(spread_raw: int, point_raw: int) -> int:
    """Return `spread_raw` in points of `point_raw`, rounded half away from zero, in exact integers."""
    q, r = divmod(abs(spread_raw), point_raw)
    if 2 * r >= point_raw:
        q += 1
    return q if spread_raw >= 0 else -q


def _int_column(
    name: str, values: list[int], dtype: type[np.generic], bounds: tuple[int, int]
) -> np.ndarray[Any, Any]:
    try:
        return np.array(values, dtype=dtype)
    except (OverflowError, TypeError, ValueError):
        bad = next((v for v in values if not (isinstance(v, int) and bounds[0] <= v <= bounds[1])), None)
        raise BadInputError(f"{name} {bad!r} does not fit its column ({bounds[0]}..{bounds[1]})") from None


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise BadInputError(f"{name} {value!r} must be an integer in {bounds[0]}..{bounds[1]}")
    return value


class TickCore:
    """Everything a `TickStore` does, as blocking calls over a `Driver`. Not thread-safe by design."""

    def __init__(self, driver: Driver, *, checkpoint_every: int = 64) -> None:
        self._driver = driver
        self._checkpoint_every = checkpoint_every
        self._next: int | None = None  # next free write ordinal; None until recovery has run
        self._marks: dict[str, int] = {}  # durable ingest marks, valid while _next is not None
        self._unrecorded = 0  # tick writes since the last checkpoint of the marks table

    @property
    def driver(self) -> Driver:
        return self._driver

    def _select(self, query: str, params: Mapping[str, Any] | None, width: int) -> list[list[Any]]:
        columns = self._driver.columns(query, params)
        if not columns:
            return [[] for _ in range(width)]
        if len(columns) != width:
            raise OperationalError(f"expected {width} columns from the tick store, got {len(columns)}")
        return columns

    def create_schema(self) -> None:
        """Create the tables if they do not exist."""
        for ddl in sql.DDL:
            self._driver.command(ddl)

    # -- ticks and ingest marks -------------------------------------------------------------------------

    def write_ticks(self, ticks: Sequence[Tick], marks: Mapping[str, int]) -> int:
        """See `TickStore.write_ticks`."""
        mark_items = sorted(
            (self._check_source(src), _check_range(f"seq of {src!r}", seq, _UINT64))
            for src, seq in marks.items()
        )
        columns = self._tick_columns(ticks) if ticks else None
        start = self._recover()
        if mark_items and all(seq <= self._marks.get(src, -1) for src, seq in mark_items):
            _log.info("tick_store_redelivery_skipped", marks=dict(mark_items), ticks=len(ticks))
            return 0  # every batch in it is durable already: e.g. the retry of a write that did land
        merged = dict(self._marks)
        for src, seq in mark_items:
            merged[src] = max(seq, merged.get(src, seq))
        if columns is None:
            if mark_items:  # no tick row to carry them: the marks table is their only record
                try:
                    self._checkpoint(merged, start)
                except BaseException:
                    self._next = None  # the INSERT may or may not have landed: reload before trusting memory
                    raise
                self._marks = merged
            return 0
        count = len(ticks)
        columns["n"] = np.arange(start, start + count, dtype=np.uint64)
        columns["wid"] = np.full(count, start, dtype=np.uint64)
        columns["wn"] = np.full(count, count, dtype=np.uint32)
        wmarks = [""] * count
        wmarks[0] = json.dumps(dict(mark_items), separators=(",", ":"))
        columns["wmarks"] = wmarks
        self._next = None  # until the INSERT returns, a torn write may be on disk: recovery would remove it
        self._driver.insert("ticks", columns, sql.TICK_INSERT_TYPES)
        self._next, self._marks = start + count, merged
        self._unrecorded += 1
        if self._unrecorded >= self._checkpoint_every:
            try:
                self._checkpoint(merged, start + count)
            except Exception as exc:  # the write itself is durable; the checkpoint is retried next write
                _log.warning("tick_store_checkpoint_failed", error=str(exc))
        return count

    def durable_marks(self) -> dict[str, int]:
        """See `TickStore.durable_marks`."""
        self._recover()
        return dict(self._marks)

    def close(self) -> None:
        """Checkpoint the ingest marks (so the next start has nothing to scan) and release the driver."""
        try:
            if self._next is not None and self._unrecorded:
                self._checkpoint(self._marks, self._next)
        finally:
            self._driver.close()

    def _recover(self) -> int:
        """Load the checkpoint and the whole unrecorded writes, delete torn ones; return the next ordinal.

        Runs once, before the first write or `durable_marks`, and again after a failed write.
        """
        if self._next is not None:
            return self._next
        srcs, seqs = self._select(sql.DURABLE_MARKS, None, 2)
        marks = {str(src): int(seq) for src, seq in zip(srcs, seqs, strict=True)}
        (watermarks,) = self._select(sql.WATERMARK, None, 1)
        next_free = max(int(watermarks[0]) if watermarks else 0, 1)
        wids, wns, stored, wmarks = self._select(sql.UNRECORDED_WRITES, {"watermark": next_free}, 4)
        for wid_, wn_, got_, marks_json in zip(wids, wns, stored, wmarks, strict=True):
            wid, wn, got = int(wid_), int(wn_), int(got_)
            next_free = max(next_free, wid + wn)
            if got == wn:
                for src, seq in json.loads(marks_json or "{}").items():
                    marks[src] = max(int(seq), marks.get(src, 0))
            else:
                self._driver.command(sql.DELETE_WRITE, {"wid": wid})
                _log.warning("tick_store_removed_torn_write", wid=wid, expected=wn, stored=got)
        if wids:
            self._checkpoint(marks, next_free)
            _log.info("tick_store_recovered", writes=len(wids), next_ordinal=next_free)
        self._marks, self._next, self._unrecorded = marks, next_free, 0
        return next_free

    def _checkpoint(self, marks: Mapping[str, int], watermark: int) -> None:
        """Record every mark and the watermark in one INSERT; earlier writes need no scan after it."""
        src = [*marks, sql.WATERMARK_SOURCE]
        seq = np.array([*marks.values(), watermark], dtype=np.uint64)
        self._driver.insert("tick_marks", {"src": src, "seq": seq}, sql.MARK_TYPES)
        self._unrecorded = 0

    @staticmethod
    def _check_source(src: str) -> str:
        if not isinstance(src, str) or not src:
            raise BadInputError(f"ingest source must be a non-empty string, got {src!r}")
        return src

    @staticmethod
    def _tick_columns(ticks: Sequence[Tick]) -> Columns:
        # One list comprehension per field is several times faster than zip(*attrgetter(...)).
        feeds = [t.feed for t in ticks]
        symbols = [t.symbol for t in ticks]
        if not all(isinstance(s, str) for s in (*set(feeds), *set(symbols))):
            raise BadInputError("tick feed and symbol must be strings")
        times = _int_column("time_msc", [t.time_msc for t in ticks], np.int64, _INT64)
        if int(times.min()) < 0:
            raise BadInputError("tick time_msc must not be negative (UTC epoch milliseconds)")
        columns: Columns = {"feed": feeds, "symbol": symbols, "time_msc": times}
        for name in ("bid", "ask", "last", "volume"):
            columns[name] = _int_column(name, [getattr(t, name) for t in ticks], np.int64, _INT64)
        columns["flags"] = _int_column("flags", [t.flags for t in ticks], np.uint32, _UINT32)
        return columns

    def query_ticks(
        self, feed: str, symbol: str, from_ms: int, to_ms: int, limit: int, after: tuple[int, int] | None
    ) -> list[Tick]:
        """See `TickStore.query_ticks`."""
        skip = 0
        if after is not None and after[0] >= from_ms:
            from_ms, skip = int(after[0]), _check_range("cursor skip", after[1], _UINT64)
        if limit <= 0 or from_ms >= to_ms:
            return []
        params = {"feed": feed, "symbol": symbol, "t0": from_ms, "t1": to_ms, "limit": limit, "skip": skip}
        cols = self._select(sql.QUERY_TICKS, params, len(sql.TICK_COLUMNS))
        return [
            Tick(feed=f, symbol=s, time_msc=t, bid=b, ask=a, last=la, volume=v, flags=fl)
            for f, s, t, b, a, la, v, fl in zip(*cols, strict=True)
        ]

    # -- bars -------------------------------------------------------------------------------------------

    def write_bars(self, bars: Sequence[Bar]) -> int:
        """See `TickStore.write_bars`."""
        latest = list({(b.feed, b.symbol, b.timeframe, b.time): b for b in bars}.values())
        if not latest:
            return 0
        columns: Columns = {"feed": [b.feed for b in latest], "symbol": [b.symbol for b in latest]}
        columns["timeframe"] = _int_column("timeframe", [b.timeframe for b in latest], np.uint16, _UINT16)
        for name in sql.BAR_COLUMNS[3:]:
            columns[name] = _int_column(name, [getattr(b, name) for b in latest], np.int64, _INT64)
        self._driver.insert("bars", columns, sql.BAR_TYPES)
        return len(latest)

    def query_bars(
        self, feed: str, symbol: str, timeframe: int, from_s: int, to_s: int, limit: int, after: int | None
    ) -> list[Bar]:
        """See `TickStore.query_bars`."""
        if after is not None:
            from_s = max(from_s, after + 1)
        if limit <= 0 or from_s >= to_s:
            return []
        _check_range("timeframe", int(timeframe), _UINT16)
        params = {"feed": feed, "symbol": symbol, "timeframe": int(timeframe)}
        params |= {"t0": from_s, "t1": to_s, "limit": limit}
        cols = self._select(sql.QUERY_BARS, params, len(sql.BAR_COLUMNS))
        return [Bar(**dict(zip(sql.BAR_COLUMNS, row, strict=True))) for row in zip(*cols, strict=True)]

    def aggregate_bars(
        self, feed: str, symbol: str, timeframe: Timeframe, from_ms: int, to_ms: int, point_raw: int
    ) -> list[Bar]:
        """See `TickStore.aggregate_bars`."""
        try:
            tf = Timeframe(timeframe)
        except ValueError:
            raise BadInputError(
                f"unknown timeframe {timeframe!r}; use one of {', '.join(Timeframe.__members__)}"
            ) from None
        if isinstance(point_raw, bool) or not isinstance(point_raw, int) or point_raw <= 0:
            raise BadInputError(f"point_raw must be a positive raw price, got {point_raw!r}")
        if from_ms >= to_ms:
            return []
        params = {
            "feed": feed, "symbol": symbol, "t0": from_ms, "t1": to_ms,
            "tf_ms": tf.seconds * 1000, "tf_s": tf.seconds,
        }  # fmt: skip
        cols = self._select(sql.AGGREGATE_BARS, params, 8)
        bars = []
        for t, o, h, lo, c, n, s, v in zip(*cols, strict=True):
            spread = spread_points(int(s), point_raw)
            ohlc = {"open": int(o), "high": int(h), "low": int(lo), "close": int(c)}
            bars.append(
                Bar(feed=feed, symbol=symbol, timeframe=int(tf), time=int(t), **ohlc, tick_volume=int(n),
                    spread=spread, real_volume=int(v))
            )  # fmt: skip
        return bars

    # -- catalogue ----------------------------------------------------------------------------------------

    def symbols(self) -> list[tuple[str, str, int]]:
        """See `TickStore.symbols`."""
        feeds, symbols, counts = self._select(sql.SYMBOLS, None, 3)
        return [(str(f), str(s), int(n)) for f, s, n in zip(feeds, symbols, counts, strict=True)]

    def count_ticks(self, feed: str | None, symbol: str | None) -> int:
        """See `TickStore.count_ticks`."""
        query = sql.count_ticks_sql(by_feed=feed is not None, by_symbol=symbol is not None)
        params = {k: v for k, v in (("feed", feed), ("symbol", symbol)) if v is not None}
        return int(self._select(query, params, 1)[0][0])

    def ping(self) -> bool:
        """See `TickStore.ping`."""
        return int(self._select(sql.PING, None, 1)[0][0]) == 1
