"""Import history files into the tick store: exactly once, through the live bridge's validation, then bars.

How a tick import runs
----------------------
1. The file is parsed as a stream (`formats`) in chunks of `chunk` ticks; memory stays constant.
2. Every tick passes the bridge's `TickValidator` (locked quotes allowed, time going backwards by more
   than a second refused, an exact repeat of the previous tick refused as `duplicate`). Its clock is the
   real one: history is never in the future, so a `future_time` rejection means a wrong `--tz` or a
   corrupt row. A repeat that is not adjacent is kept on purpose: a quote can go A → B → A within the
   same millisecond, and only the adjacent repeat is certainly the same tick twice.
3. Exactly once: the ingest source is `import/<feed>/<symbol>/<sha256 of the file's decompressed
   content>`, and each chunk is written with `write_ticks(ticks, {source: seq})`, which makes the mark
   durable atomically with the ticks. `seq` is the line number of the chunk's last row (not the chunk's
   ordinal), so a re-import skips exactly the rows already stored even with a different `chunk`; a crashed
   import resumes after its last durable chunk. The same content under another name or compression is
   the same source; the same file for another feed or symbol is a different one.
4. Bars of every `Timeframe` are rebuilt from the store (`aggregate_bars` → `write_bars`, idempotent) over
   the file's time range widened to whole bars, so bars the file shares with other stored ticks come out
   whole. Spreads are in points of `--digits`, else the symbol's `DEFAULT_SPECS` digits, else the most
   decimals seen in the file's prices (the largest power of ten dividing every raw price).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aitrading.common.clock import LiveClock
from aitrading.common.errors import BadInputError
from aitrading.history._fields import BadRows
from aitrading.history._text import Progress, TextSource, content_sha256
from aitrading.history.bars import BarParser, check_bar
from aitrading.history.formats import CsvOptions, TickFormat, TickParser
from aitrading.history.report import ImportReport
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.validation import TickValidator, ValidationPolicy
from aitrading.model.values import PRICE_DECIMALS
from aitrading.storage.ticks.base import TickStore

__all__ = ["import_bars", "import_ticks", "source_id"]

_MAX_NAME = 32
_DAY_MS = 86_400_000
_DAYS_PER_QUERY = 7  # a week of M1 bars (10,080) per query


def source_id(feed: str, symbol: str, sha256: str) -> str:
    """Return the ingest source of one file's import: its marks tell which chunks are stored."""
    return f"import/{feed}/{symbol}/{sha256}"


def _check_names(feed: str, symbol: str) -> None:
    for what, name in (("feed", feed), ("symbol", symbol)):
        if not name or len(name) > _MAX_NAME or not name.isprintable() or name != name.strip():
            raise BadInputError(f"--{what} {name!r} must be 1-{_MAX_NAME} printable characters")


@dataclass
class _Batch:
    ticks: list[Tick]
    seq: int
    skip: bool
    first_ms: int
    last_ms: int


@dataclass
class _Batches:
    """Validates parsed ticks chunk by chunk (called on a worker thread, one call at a time).

    A chunk is validated in one call (the bridge's fast path). Only when it rejected something is it
    replayed tick by tick on a copy of the validator taken before the chunk, which ends in the same state
    and tells each rejected row's reason and line number.
    """

    rows: Iterator[tuple[int, Tick]]
    size: int
    validator: TickValidator
    report: ImportReport
    done: int  # highest durable line of this source: rows at or below it are stored already
    gcd: int = 0
    parsed: int = 0

    def next(self) -> _Batch | None:
        chunk = list(itertools.islice(self.rows, self.size))
        if not chunk:
            return None
        report, feed, done = self.report, self.report.feed, self.done
        self.parsed += len(chunk)
        ticks = [tick for _, tick in chunk]
        before = copy.deepcopy(self.validator)
        accepted, rejected = self.validator.validate(feed, ticks)
        if rejected:
            for line, tick in chunk:
                _, reason = before.validate(feed, (tick,))
                if reason:
                    report.reject(next(iter(reason)), line)
        seq = chunk[-1][0]
        if not accepted:
            return _Batch([], seq, seq <= done, 0, -1)
        times = [tick.time_msc for tick in accepted]
        lo, hi = min(times), max(times)
        report.first_ms = lo if report.first_ms is None else min(report.first_ms, lo)
        report.last_ms = hi if report.last_ms is None else max(report.last_ms, hi)
        self.gcd = math.gcd(self.gcd, *(t.bid for t in accepted), *(t.ask for t in accepted))
        if chunk[0][0] > done:
            fresh = accepted
        elif seq <= done:
            fresh = []
        else:  # the earlier import used another chunk size: its last chunk ended inside this one
            kept = {id(tick) for tick in accepted}
            fresh = [tick for line, tick in chunk if line > done and id(tick) in kept]
        report.already_imported += len(accepted) - len(fresh)
        return _Batch(fresh, seq, seq <= done, lo, hi)


def _decimals(gcd: int) -> int:
    """Return how many decimals the prices whose raw gcd is `gcd` need (9 at most)."""
    decimals = PRICE_DECIMALS
    while decimals > 0 and gcd % 10 ** (PRICE_DECIMALS - decimals + 1) == 0:
        decimals -= 1
    return decimals


def _digits(symbol: str, digits: int | None, gcd: int, report: ImportReport) -> int:
    seen = _decimals(gcd) if gcd else None
    if digits is not None:
        report.digits_from = "--digits"
    else:
        from aitrading.mt5.specs import DEFAULT_SPECS

        spec = DEFAULT_SPECS.get(symbol)
        if spec is not None:
            digits, report.digits_from = spec.digits, "symbol spec"
        else:
            digits, report.digits_from = seen or 0, "prices in the file"
    if seen is not None and seen > digits:
        report.warnings.append(
            f"prices have up to {seen} decimals but digits is {digits}: bar spreads are rounded to points"
        )
    report.digits = digits
    return digits


def _roll_up(m1: list[Bar], tf: Timeframe) -> list[Bar]:
    """Fold time-ordered M1 bars into `tf` bars: the same bars `aggregate_bars` builds from the ticks.

    Open is the first tick's bid and close the last one's, so they come from the first and last M1 bar;
    the smallest spread in points is the smallest of the M1 ones because rounding to points is monotonic.
    """
    span = tf.seconds
    out = []
    for start, group in itertools.groupby(m1, key=lambda b: b.time // span * span):
        bars = list(group)
        first = bars[0]
        out.append(
            Bar(
                feed=first.feed,
                symbol=first.symbol,
                timeframe=int(tf),
                time=start,
                open=first.open,
                high=max(b.high for b in bars),
                low=min(b.low for b in bars),
                close=bars[-1].close,
                tick_volume=sum(b.tick_volume for b in bars),
                spread=min(b.spread for b in bars),
                real_volume=sum(b.real_volume for b in bars),
            )
        )
    return out


async def _build_bars(store: TickStore, report: ImportReport, point_raw: int) -> None:
    """Rebuild every timeframe's bars of the whole days the file touches, a few days per query.

    Whole UTC days hold whole bars of every timeframe, so each window's M1 bars (built in SQL from all
    stored ticks of the series) roll up into complete higher-timeframe bars: one query and one write per
    window instead of one per timeframe.
    """
    if report.first_ms is None or report.last_ms is None:
        return
    lo, hi = report.first_ms // _DAY_MS * _DAY_MS, (report.last_ms // _DAY_MS + 1) * _DAY_MS
    counts = dict.fromkeys((tf.name for tf in Timeframe), 0)
    for start in range(lo, hi, _DAY_MS * _DAYS_PER_QUERY):
        end = min(start + _DAY_MS * _DAYS_PER_QUERY, hi)
        m1 = await store.aggregate_bars(report.feed, report.symbol, Timeframe.M1, start, end, point_raw)
        bars = list(m1)
        counts[Timeframe.M1.name] += len(m1)
        for tf in Timeframe:
            if tf is not Timeframe.M1:
                rolled = _roll_up(m1, tf)
                counts[tf.name] += len(rolled)
                bars += rolled
        await store.write_bars(bars)
    report.bars = counts


async def _warn_overlap(store: TickStore, report: ImportReport, batch: _Batch, after_ms: int | None) -> None:
    """Warn once if the store already held ticks of this series where this chunk goes (another source)."""
    lo = batch.first_ms if after_ms is None else max(batch.first_ms, after_ms + 1)
    if report.overlap or lo > batch.last_ms:
        return
    if await store.query_ticks(report.feed, report.symbol, lo, batch.last_ms + 1, limit=1):
        report.overlap = True
        report.warnings.append(
            f"the store already held {report.feed} {report.symbol} ticks in this file's time range (another "
            "file or the live feed): where they overlap, both are stored now"
        )


async def import_ticks(
    store: TickStore,
    path: Path | str,
    fmt: TickFormat | str,
    *,
    symbol: str,
    feed: str,
    tz: str | None = None,
    digits: int | None = None,
    chunk: int = 100_000,
    progress: Progress | None = None,
    options: CsvOptions | None = None,
    now_ms: Callable[[], int] | None = None,
) -> ImportReport:
    """Import a tick file into a started `store` and build its bars; return what happened.

    Raise `BadInputError` for a wrong argument or an unreadable file; bad rows never raise, they are
    counted in the report by reason.
    """
    started = time.perf_counter()
    _check_names(feed, symbol)
    if chunk < 1:
        raise BadInputError(f"chunk must be at least 1, got {chunk}")
    if digits is not None and not 0 <= digits <= PRICE_DECIMALS:
        raise BadInputError(f"--digits must be between 0 and {PRICE_DECIMALS}, got {digits}")
    fmt = TickFormat(fmt)
    path = Path(path)
    bad = BadRows()
    parser = TickParser(fmt, feed=feed, symbol=symbol, zone=tz, options=options, bad=bad)
    digest = await asyncio.to_thread(content_sha256, path)
    source = source_id(feed, symbol, digest)
    done = (await store.durable_marks()).get(source, 0)
    report = ImportReport(path=str(path), kind="ticks", format=fmt.value, feed=feed, symbol=symbol)
    report.source = source
    policy = ValidationPolicy(allow_locked=True)
    validator = TickValidator(now_ms or LiveClock().now_ms, policy)
    batches = _Batches(parser.ticks(TextSource(path, progress).lines()), chunk, validator, report, done)
    pending: asyncio.Task[int] | None = None
    after_ms: int | None = None
    try:
        while True:
            batch = await asyncio.to_thread(batches.next)  # parses while the previous chunk is written
            if pending is not None:
                report.imported += await pending
                pending = None
            if batch is None:
                break
            report.chunks += 1
            if batch.skip:
                report.chunks_already_imported += 1
                continue
            if batch.ticks:
                await _warn_overlap(store, report, batch, after_ms)
                after_ms = batch.last_ms if after_ms is None else max(after_ms, batch.last_ms)
            pending = asyncio.create_task(store.write_ticks(batch.ticks, {source: batch.seq}))
    finally:
        if pending is not None:
            report.imported += await pending
    report.parse_errors = bad.counts
    report.lines.update(bad.lines)
    report.rows = batches.parsed + bad.total
    report.decimals_seen = _decimals(batches.gcd) if batches.gcd else None
    point_raw = 10 ** (PRICE_DECIMALS - _digits(symbol, digits, batches.gcd, report))
    await _build_bars(store, report, point_raw)
    report.seconds = time.perf_counter() - started
    return report


async def import_bars(
    store: TickStore,
    path: Path | str,
    fmt: str = "mt5",
    *,
    symbol: str,
    feed: str,
    timeframe: Timeframe | str,
    tz: str | None,
    chunk: int = 50_000,
    progress: Progress | None = None,
) -> ImportReport:
    """Import an MT5 bar export into a started `store` (`write_bars` replaces bars of the same time)."""
    started = time.perf_counter()
    _check_names(feed, symbol)
    if fmt != "mt5":
        raise BadInputError(f"bar format {fmt!r} is not supported; use mt5 (MT5's bar export)")
    tf = timeframe if isinstance(timeframe, Timeframe) else _timeframe(timeframe)
    bad = BadRows()
    parser = BarParser(feed=feed, symbol=symbol, timeframe=tf, zone=tz, bad=bad)
    report = ImportReport(path=str(path), kind="bars", format=fmt, feed=feed, symbol=symbol)
    rows = parser.bars(TextSource(path, progress).lines())
    checked = _CheckedBars(rows, chunk, report)
    while bars := await asyncio.to_thread(checked.next):
        report.imported += await store.write_bars(bars)
        report.chunks += 1
    report.parse_errors = bad.counts
    report.lines.update(bad.lines)
    report.rows = checked.accepted + report.rejected.total() + bad.total
    report.bars[tf.name] = report.imported
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _CheckedBars:
    """Checks parsed bars chunk by chunk (called on a worker thread, one call at a time)."""

    rows: Iterator[tuple[int, Bar]]
    size: int
    report: ImportReport
    prev: int | None = None
    accepted: int = 0

    def next(self) -> list[Bar]:
        report, out = self.report, []
        for number, bar in self.rows:
            reason = check_bar(bar)
            if reason is None and bar.time == self.prev:
                reason = "duplicate"  # the next write would replace it: say so instead
            if reason is not None:
                report.reject(reason, number)
                continue
            self.prev = bar.time
            ms = bar.time * 1000
            report.first_ms = ms if report.first_ms is None else min(report.first_ms, ms)
            report.last_ms = ms if report.last_ms is None else max(report.last_ms, ms)
            out.append(bar)
            if len(out) >= self.size:
                break
        self.accepted += len(out)
        return out


def _timeframe(text: str) -> Timeframe:
    try:
        return Timeframe.parse(text)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
