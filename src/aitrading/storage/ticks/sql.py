"""The ClickHouse SQL of the tick store, shared verbatim by chDB (embedded) and ClickHouse server.

Values are stored exactly as the domain model holds them: prices as `Int64` raw integers of 1e-9 and
volumes as `Int64` raw integers of 1e-8 lots (`aitrading.model.values`), times as `Int64` epoch
milliseconds (ticks) or seconds (bars). Integers rather than `Decimal64(9)` because the model already
speaks raw integers: no conversion on the hot path, nothing to round, bit-exact round trips.

Tables
------
`ticks`
    One row per tick, sorted by `(feed, symbol, time_msc, n)`. `n` is a store-wide insertion ordinal:
    the stable tiebreak between ticks of the same millisecond. Every write reserves the ordinals
    `[wid, wid + wn)`; `wid` (the write id) and `wn` (the write's tick count) sit on every row and the
    write's ingest marks (`{"src": seq}` as JSON) on its first row. That makes the marks durable in the
    same INSERT as the ticks, and lets recovery tell a complete write (`count() = wn`) from a torn one.
`tick_marks`
    Checkpoints of the ingest marks: a row per source, plus a row with the reserved source `''` whose
    `seq` is the write watermark (every write below it is accounted for in the same checkpoint). Recovery
    inspects only writes at or past the watermark. `ReplacingMergeTree(seq)` keeps one row per source.
`bars`
    One row per `(feed, symbol, timeframe, time)` after merges: `ReplacingMergeTree` without a version
    column keeps the row inserted last, so a rewritten bar replaces the earlier one; reads use `FINAL`.

Parameters use ClickHouse's `{name:Type}` binding, which both chDB and clickhouse-connect pass to the
engine, so no caller value is ever spliced into SQL text.
"""

from __future__ import annotations

__all__ = [
    "AGGREGATE_BARS",
    "BAR_COLUMNS",
    "BAR_TYPES",
    "COUNT_TICKS",
    "CREATE_BARS",
    "CREATE_TICKS",
    "CREATE_TICK_MARKS",
    "DDL",
    "DELETE_WRITE",
    "DURABLE_MARKS",
    "MARK_COLUMNS",
    "MARK_TYPES",
    "PING",
    "QUERY_BARS",
    "QUERY_TICKS",
    "SYMBOLS",
    "TICK_COLUMNS",
    "TICK_INSERT_COLUMNS",
    "TICK_INSERT_TYPES",
    "UNRECORDED_WRITES",
    "WATERMARK",
    "WATERMARK_SOURCE",
    "count_ticks_sql",
]

#: The reserved `tick_marks.src` whose `seq` is the write watermark; real sources are non-empty.
#: (`DURABLE_MARKS` and `WATERMARK` spell it as `''` inline.)
WATERMARK_SOURCE = ""

CREATE_TICKS = """
CREATE TABLE IF NOT EXISTS ticks
(
    feed     LowCardinality(String),
    symbol   LowCardinality(String),
    time_msc Int64 CODEC(Delta, LZ4),
    n        UInt64 CODEC(Delta, LZ4),
    bid      Int64 CODEC(Delta, LZ4),
    ask      Int64 CODEC(Delta, LZ4),
    last     Int64 CODEC(Delta, LZ4),
    volume   Int64,
    flags    UInt32,
    wid      UInt64 CODEC(Delta, LZ4),
    wn       UInt32,
    wmarks   String,
    INDEX wid_minmax wid TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(toDateTime(intDiv(time_msc, 1000), 'UTC'))
ORDER BY (feed, symbol, time_msc, n)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1
"""

CREATE_TICK_MARKS = """
CREATE TABLE IF NOT EXISTS tick_marks
(
    src  String,
    seq  UInt64
)
ENGINE = ReplacingMergeTree(seq)
ORDER BY src
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1
"""

CREATE_BARS = """
CREATE TABLE IF NOT EXISTS bars
(
    feed        LowCardinality(String),
    symbol      LowCardinality(String),
    timeframe   UInt16,
    time        Int64,
    open        Int64,
    high        Int64,
    low         Int64,
    close       Int64,
    tick_volume Int64,
    spread      Int64,
    real_volume Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (feed, symbol, timeframe, time)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1
"""

DDL = (CREATE_TICKS, CREATE_TICK_MARKS, CREATE_BARS)

#: Columns of a `Tick`, in the order of its fields (and of `QUERY_TICKS`).
TICK_COLUMNS = ("feed", "symbol", "time_msc", "bid", "ask", "last", "volume", "flags")
#: Columns a tick write sends, and their ClickHouse types (for drivers that need them up front).
TICK_INSERT_COLUMNS = (*TICK_COLUMNS, "n", "wid", "wn", "wmarks")
TICK_INSERT_TYPES = (
    "String", "String", "Int64", "Int64", "Int64", "Int64", "Int64", "UInt32",
    "UInt64", "UInt64", "UInt32", "String",
)  # fmt: skip

MARK_COLUMNS = ("src", "seq")
MARK_TYPES = ("String", "UInt64")

#: Columns of a `Bar`, in the order of its fields (and of `QUERY_BARS`).
BAR_COLUMNS = (
    "feed", "symbol", "timeframe", "time", "open", "high", "low", "close", "tick_volume", "spread",
    "real_volume",
)  # fmt: skip
BAR_TYPES = ("String", "String", "UInt16", *(["Int64"] * 8))

QUERY_TICKS = """
SELECT feed, symbol, time_msc, bid, ask, last, volume, flags
FROM ticks
WHERE feed = {feed:String} AND symbol = {symbol:String}
  AND time_msc >= {t0:Int64} AND time_msc < {t1:Int64}
ORDER BY time_msc, n
LIMIT {limit:UInt64} OFFSET {skip:UInt64}
"""

QUERY_BARS = """
SELECT feed, symbol, timeframe, time, open, high, low, close, tick_volume, spread, real_volume
FROM bars FINAL
WHERE feed = {feed:String} AND symbol = {symbol:String} AND timeframe = {timeframe:UInt16}
  AND time >= {t0:Int64} AND time < {t1:Int64}
ORDER BY time
LIMIT {limit:UInt64}
"""

# Bars like MT5 builds them: bid OHLC in tick order (time, then insertion ordinal), tick count, the
# smallest raw spread (converted to points by the caller, exactly), summed raw volume. The bucket is the
# bar's open time in epoch seconds; time_msc is never negative (writes refuse it), so intDiv floors.
AGGREGATE_BARS = """
SELECT
    intDiv(time_msc, {tf_ms:Int64}) * {tf_s:Int64} AS bar_time,
    argMin(bid, (time_msc, n)) AS open,
    max(bid) AS high,
    min(bid) AS low,
    argMax(bid, (time_msc, n)) AS close,
    toInt64(count()) AS tick_volume,
    min(ask - bid) AS min_spread_raw,
    sum(volume) AS real_volume
FROM ticks
WHERE feed = {feed:String} AND symbol = {symbol:String}
  AND time_msc >= {t0:Int64} AND time_msc < {t1:Int64}
GROUP BY bar_time
ORDER BY bar_time
"""

SYMBOLS = """
SELECT feed, symbol, toInt64(count()) AS ticks
FROM ticks
GROUP BY feed, symbol
ORDER BY feed, symbol
"""

PING = "SELECT 1"

DURABLE_MARKS = """
SELECT src, max(seq) AS seq
FROM tick_marks
WHERE src != ''
GROUP BY src
ORDER BY src
"""

WATERMARK = "SELECT max(seq) FROM tick_marks WHERE src = ''"

# Writes at or past the watermark: ticks stored, marks row maybe not. `count() = wn` tells whole from torn.
UNRECORDED_WRITES = """
SELECT wid, any(wn) AS wn, toUInt64(count()) AS stored, argMin(wmarks, n) AS wmarks
FROM ticks
WHERE wid >= {watermark:UInt64}
GROUP BY wid
ORDER BY wid
"""

DELETE_WRITE = "DELETE FROM ticks WHERE wid = {wid:UInt64}"


def count_ticks_sql(*, by_feed: bool, by_symbol: bool) -> str:
    """Return the tick-count query filtering on the parameters `feed` and/or `symbol` as asked."""
    where = [
        clause
        for on, clause in ((by_feed, "feed = {feed:String}"), (by_symbol, "symbol = {symbol:String}"))
        if on
    ]
    # Only the fixed clauses above reach the text; values travel as bound parameters.
    return "SELECT toInt64(count()) FROM ticks" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608


COUNT_TICKS = count_ticks_sql(by_feed=False, by_symbol=False)
