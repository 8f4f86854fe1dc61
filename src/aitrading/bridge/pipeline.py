"""The ingest pipeline: validated ticks go to the bus at once and to the store in large batches.

A batch is acknowledged to its agent only after the store write that holds it returned, and the source's
sequence number is stored atomically with the ticks (see `TickStore.write_ticks`), so a bridge that dies
at any point loses nothing that was acked and stores nothing twice: on restart it loads the durable marks,
acks redelivered batches at or below them as duplicates and stores only the rest.

Bars
----
Accepted ticks also feed a `BarBuilder` (M1 … D1). A bar it closes (or corrects, see `bridge.bars`) is
published at once on `md.bar.<feed>.<symbol>.<tf>` and written with `write_bars` in the same flush as the
ticks that closed it, after `write_ticks` succeeded and before the acks. A background task closes the bars
of quiet markets by the clock, `bar_grace_ms` after their period ended (ticks reach us a little after
their feed time; a tick that still comes later corrects the closed bar).

Bars are derived data, so the bridge does not make them durable on their own; it repairs them instead:

- **Forming bars are not persisted.** After a restart the builder starts empty, so the bars of the
  periods in which it first sees a symbol lack the ticks stored before the restart. The builder flags
  them `partial`; when such a bar closes, the writer rebuilds it from the stored ticks with
  `aggregate_bars` (by then every tick of its period that reached the bridge is stored), then writes and
  publishes the rebuilt bar. A sink that cannot aggregate publishes it as built and does not store it: an
  incomplete bar must never replace a whole one.
- **Closed bars not yet written when the bridge died** (it closed them at most a flush before) are
  rebuilt by the same query: the first rebuild of each symbol and timeframe reaches back
  `bar_repair_lookback_ms` (default one hour, whole periods) and rewrites those bars too (in the store
  only: they were published when they closed); `write_bars` replaces, so rewriting a stored bar is
  harmless. A bar still missing after that (the symbol stayed
  silent for longer than the lookback after the crash) is a period without a stored bar, which history
  queries build from the ticks (`aggregate_bars`), so no reader sees a wrong bar, only a computed one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

from aitrading.bridge.bars import BarBuilder, BarUpdate, point_raw_of
from aitrading.common import metrics
from aitrading.common.bus import Bus
from aitrading.common.clock import Clock
from aitrading.common.errors import BadInputError, TemporaryError
from aitrading.model.ids import bar_subject, tick_subject
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.values import price_float

__all__ = ["AckCallback", "BarSink", "BarSource", "IngestPipeline", "TickSink"]

_log = structlog.get_logger("bridge.pipeline")

AckCallback = Callable[[str, int, int, int, bool], Awaitable[None]]
"""Called with (src, seq, accepted, rejected, duplicate) once a batch is durable."""

TICKS_IN = metrics.counter("bridge_ticks_received", "Ticks received from agents", ("feed",))
TICKS_OK = metrics.counter("bridge_ticks_accepted", "Ticks accepted, published and stored", ("feed",))
TICKS_BAD = metrics.counter("bridge_ticks_rejected", "Ticks rejected by validation", ("feed", "reason"))
BATCHES_DUP = metrics.counter("bridge_batches_duplicate", "Redelivered batches dropped (already stored)")
STORE_ROWS = metrics.counter("bridge_store_ticks_written", "Ticks written to the tick store")
STORE_ERRORS = metrics.counter("bridge_store_write_errors", "Failed tick store writes (retried)")
STORE_SECONDS = metrics.histogram(
    "bridge_store_write_seconds",
    "Tick store write time per flush",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LAST_BID = metrics.gauge("bridge_last_bid", "Last accepted bid per symbol", ("feed", "symbol"))
LAST_ASK = metrics.gauge("bridge_last_ask", "Last accepted ask per symbol", ("feed", "symbol"))
PENDING = metrics.gauge("bridge_store_pending_ticks", "Accepted ticks waiting for the store")
BARS_CLOSED = metrics.counter("bridge_bars_closed", "Bars closed and published", ("timeframe", "how"))
BARS_WRITTEN = metrics.counter("bridge_store_bars_written", "Bars written to the tick store")
BARS_REBUILT = metrics.counter("bridge_bars_rebuilt", "Bars rebuilt from stored ticks after a restart")
BAR_ERRORS = metrics.counter("bridge_store_bar_errors", "Failed bar writes or rebuilds", ("kind",))

_RETRYABLE = (TemporaryError, OSError, RuntimeError)
_REPAIR_POINT = 10**18  # a point no spread reaches: the spread of a symbol whose digits are unknown is 0


class TickSink(Protocol):
    """What the pipeline needs of the tick store."""

    async def write_ticks(self, ticks: Sequence[Tick], marks: Mapping[str, int] = ...) -> int: ...

    async def durable_marks(self) -> dict[str, int]: ...


@runtime_checkable
class BarSink(Protocol):
    """What the pipeline needs of the store to keep bars (optional: without it bars are only published)."""

    async def write_bars(self, bars: Sequence[Bar]) -> int: ...


@runtime_checkable
class BarSource(Protocol):
    """What the pipeline needs of the store to rebuild partial bars from the stored ticks (optional)."""

    async def aggregate_bars(
        self, feed: str, symbol: str, timeframe: Timeframe, from_ms: int, to_ms: int, point_raw: int
    ) -> list[Bar]: ...


class LatestCache(Protocol):
    """What the pipeline needs of the cache: the latest tick per symbol."""

    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> None: ...


@dataclass(slots=True)
class _Waiter:
    src: str
    seq: int
    accepted: int
    rejected: int
    duplicate: bool
    on_durable: AckCallback


@dataclass(slots=True)
class _Pending:
    ticks: list[Tick] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    waiters: list[_Waiter] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    partial: list[Bar] = field(default_factory=list)
    first_ns: int = 0

    def empty(self) -> bool:
        return not (self.waiters or self.bars or self.partial)


class IngestPipeline:
    """Publishes accepted ticks and the bars they close, batches both into the store, acks once durable."""

    def __init__(
        self,
        bus: Bus,
        store: TickSink,
        clock: Clock,
        *,
        flush_ms: int = 200,
        flush_ticks: int = 50_000,
        max_pending_ticks: int = 1_000_000,
        cache: LatestCache | None = None,
        codec: Callable[[Tick], bytes] | None = None,
        bars: BarBuilder | None = None,
        bar_clock_ms: int = 1_000,
        bar_grace_ms: int = 2_000,
        bar_repair_lookback_ms: int = 3_600_000,
    ) -> None:
        self._bus = bus
        self._store = store
        self._clock = clock
        self._flush_ns = flush_ms * 1_000_000
        self._flush_ticks = flush_ticks
        self._max_pending = max_pending_ticks
        self._cache = cache
        self._codec = codec
        self.bars = bars if bars is not None else BarBuilder()
        self._bar_clock_s = bar_clock_ms / 1000
        self._bar_grace_ms = bar_grace_ms
        self._repair_lookback_ms = bar_repair_lookback_ms
        self._bar_sink = store if isinstance(store, BarSink) else None
        self._bar_source = store if isinstance(store, BarSource) else None
        self._repaired: set[tuple[str, str, int]] = set()  # (feed, symbol, tf) rebuilt with the lookback
        self._tick_subjects: dict[tuple[str, str], str] = {}
        self._bar_subjects: dict[tuple[str, str, int], str] = {}
        self._bar_counts: dict[tuple[int, str], Any] = {}  # prometheus children by (timeframe, how)
        self._pending = _Pending()
        self._durable: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._closing = False
        self.healthy = True

    async def start(self) -> None:
        """Load durable marks from the store and start the writer and the bar clock."""
        self._durable = dict(await self._store.durable_marks())
        self._in_flight = dict(self._durable)
        self._task = asyncio.create_task(self._writer(), name="bridge-store-writer")
        if self._bar_clock_s > 0:
            self._clock_task = asyncio.create_task(self._bar_clock(), name="bridge-bar-clock")

    async def stop(self) -> None:
        """Flush everything pending (acking it) and stop the writer; forming bars are not closed."""
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
            self._clock_task = None
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def durable(self, src: str) -> int:
        """Return the last sequence number of `src` whose ticks are in the store (0 if none)."""
        return self._durable.get(src, 0)

    @property
    def pending_ticks(self) -> int:
        return len(self._pending.ticks)

    async def submit(
        self,
        src: str,
        seq: int,
        feed: str,
        accepted: list[Tick],
        rejected: Counter[str],
        on_durable: AckCallback,
    ) -> None:
        """Take one validated batch; `on_durable` fires once it is stored (or at once for a duplicate)."""
        n_rej = sum(rejected.values())
        if seq <= self._durable.get(src, 0):
            BATCHES_DUP.inc()
            await on_durable(src, seq, 0, 0, True)
            return
        if seq <= self._in_flight.get(src, 0):
            # Already queued by an earlier connection of the same source: ack when that write lands.
            BATCHES_DUP.inc()
            self._touch()
            self._pending.waiters.append(_Waiter(src, seq, 0, 0, True, on_durable))
            return
        while len(self._pending.ticks) >= self._max_pending and not self._closing:
            self._room.clear()
            await self._room.wait()
        TICKS_IN.labels(feed).inc(len(accepted) + n_rej)
        if accepted:
            TICKS_OK.labels(feed).inc(len(accepted))
        for reason, n in rejected.items():
            TICKS_BAD.labels(feed, reason).inc(n)
        self._in_flight[src] = seq
        self._touch()  # start the flush timer
        pending = self._pending
        pending.ticks.extend(accepted)
        pending.marks[src] = seq
        pending.waiters.append(_Waiter(src, seq, len(accepted), n_rej, False, on_durable))
        PENDING.set(len(pending.ticks))
        publish = self._bus.publish
        subjects = self._tick_subjects
        for tick in accepted:
            subject = subjects.get((tick.feed, tick.symbol))
            if subject is None:
                subject = subjects[(tick.feed, tick.symbol)] = tick_subject(tick.feed, tick.symbol)
            await publish(subject, tick)
        updates = self.bars.add_many(accepted)
        if updates:
            await self._take_bars(updates, "tick")
        if len(pending.ticks) >= self._flush_ticks:
            self._wake.set()

    async def close_bars(self, now_ms: int | None = None) -> int:
        """Close the bars whose period ended `bar_grace_ms` before `now_ms` (default: the clock's now).

        The bar clock calls it every `bar_clock_ms`; return how many bars closed.
        """
        now = self._clock.now_ms() if now_ms is None else now_ms
        updates = self.bars.close_due(now - self._bar_grace_ms)
        if updates:
            await self._take_bars(updates, "clock")
        return len(updates)

    def _touch(self) -> None:
        """Start the flush timer if nothing is pending yet."""
        if self._pending.empty():
            self._pending.first_ns = self._clock.monotonic_ns()
            self._wake.set()

    async def _take_bars(self, updates: list[BarUpdate], how: str) -> None:
        # Queue every bar before the first await: the writer may swap the pending batch while we publish,
        # and a bar must land in the batch of the ticks that closed it or a later one, never an old one.
        self._touch()
        pending = self._pending
        ready: list[Bar] = []
        counts = self._bar_counts
        for bar, partial, correction in updates:
            kind = (bar.timeframe, "correction" if correction else how)
            count = counts.get(kind)
            if count is None:
                count = counts[kind] = BARS_CLOSED.labels(Timeframe(kind[0]).name, kind[1])
            count.inc()
            if partial:
                pending.partial.append(bar)  # published once rebuilt from the store
            else:
                pending.bars.append(bar)
                ready.append(bar)
        for bar in ready:
            await self._publish_bar(bar)

    async def _publish_bar(self, bar: Bar) -> None:
        key = (bar.feed, bar.symbol, bar.timeframe)
        subject = self._bar_subjects.get(key)
        if subject is None:
            subject = self._bar_subjects[key] = bar_subject(bar.feed, bar.symbol, bar.timeframe)
        await self._bus.publish(subject, bar)

    async def _bar_clock(self) -> None:
        while True:
            await asyncio.sleep(self._bar_clock_s)
            try:
                await self.close_bars()
            except Exception:  # a bus hiccup must not stop the clock; the next pass retries
                _log.exception("bar_clock_failed")

    async def _writer(self) -> None:
        while True:
            if self._pending.empty():
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._pending.first_ns + self._flush_ns - self._clock.monotonic_ns()
            if due > 0 and len(self._pending.ticks) < self._flush_ticks and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due / 1e9)
                continue
            batch, self._pending = self._pending, _Pending()
            PENDING.set(0)
            self._room.set()
            if batch.waiters:
                await self._write_until_durable(batch)
                for src, seq in batch.marks.items():
                    if seq > self._durable.get(src, 0):
                        self._durable[src] = seq
            if batch.bars or batch.partial:
                await self._write_bars(batch)
            await self._after_durable(batch)

    async def _write_until_durable(self, batch: _Pending) -> None:
        delay = 0.05
        while True:
            started = self._clock.monotonic_ns()
            try:
                await self._store.write_ticks(batch.ticks, batch.marks)
            except _RETRYABLE as exc:
                STORE_ERRORS.inc()
                self.healthy = False
                _log.warning("store_write_failed", error=str(exc), ticks=len(batch.ticks), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.healthy = True
            STORE_SECONDS.observe((self._clock.monotonic_ns() - started) / 1e9)
            STORE_ROWS.inc(len(batch.ticks))
            return

    async def _write_bars(self, batch: _Pending) -> None:
        """Rebuild the partial bars from the stored ticks, publish them, write every bar of the batch."""
        bars = batch.bars
        if batch.partial:
            bars = bars + await self._rebuild(batch.partial)
        if self._bar_sink is None or not bars:
            return
        delay = 0.05
        while True:
            try:
                BARS_WRITTEN.inc(await self._bar_sink.write_bars(bars))
                self.healthy = True
                return
            except _RETRYABLE as exc:
                BAR_ERRORS.labels("write").inc()
                self.healthy = False
                _log.warning("bar_write_failed", error=str(exc), bars=len(bars), retry_in=delay)
                if self._closing and delay >= 1.0:
                    return  # stopping: the bars are derived, the next start repairs them
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except BadInputError as exc:  # derived from stored ticks, so not expected; never kill the writer
                BAR_ERRORS.labels("rejected").inc()
                _log.error("bar_write_rejected", error=str(exc), bars=len(bars))
                return

    async def _rebuild(self, partial: list[Bar]) -> list[Bar]:
        """Return the partial bars rebuilt from the stored ticks (and lost bars before them), published.

        Without a store that aggregates, the partial bars are published as built and not stored.
        """
        source = self._bar_source
        if source is None:
            for bar in partial:
                await self._publish_bar(bar)
            return []
        out: list[Bar] = []
        for bar in {(b.feed, b.symbol, b.timeframe, b.time): b for b in partial}.values():
            tf = Timeframe(bar.timeframe)
            tf_ms = tf.seconds * 1000
            start = bar.time * 1000
            key = (bar.feed, bar.symbol, int(tf))
            from_ms = start
            if key not in self._repaired:
                from_ms = max(0, start - self._repair_lookback_ms)
                from_ms -= from_ms % tf_ms  # whole periods only: a cut bar would replace a whole one
            point = point_raw_of(self.bars.digits(bar.feed, bar.symbol)) or _REPAIR_POINT
            try:
                got = await source.aggregate_bars(bar.feed, bar.symbol, tf, from_ms, start + tf_ms, point)
            except Exception as exc:  # the next partial bar or a history query rebuilds it from the ticks
                BAR_ERRORS.labels("rebuild").inc()
                _log.warning("bar_rebuild_failed", error=str(exc), symbol=bar.symbol, tf=tf.name)
                continue
            self._repaired.add(key)
            BARS_REBUILT.inc(len(got))
            out.extend(got)
            for b in got:
                if b.time == bar.time:
                    await self._publish_bar(b)
        return out

    async def _after_durable(self, batch: _Pending) -> None:
        latest: dict[tuple[str, str], Tick] = {}
        for tick in batch.ticks:
            prev = latest.get((tick.feed, tick.symbol))
            if prev is None or tick.time_msc >= prev.time_msc:
                latest[(tick.feed, tick.symbol)] = tick
        for (feed, symbol), tick in latest.items():
            LAST_BID.labels(feed, symbol).set(price_float(tick.bid))
            LAST_ASK.labels(feed, symbol).set(price_float(tick.ask))
        if self._cache is not None and self._codec is not None and latest:
            by_feed: dict[str, dict[str, bytes]] = {}
            for (feed, symbol), tick in latest.items():
                by_feed.setdefault(feed, {})[symbol] = self._codec(tick)
            for feed, mapping in by_feed.items():
                try:
                    await self._cache.hset(f"md:last:{feed}", mapping)
                except Exception as exc:  # the cache is an accelerator; losing it is not fatal
                    _log.warning("cache_update_failed", error=str(exc))
        for waiter in batch.waiters:
            try:
                await waiter.on_durable(
                    waiter.src, waiter.seq, waiter.accepted, waiter.rejected, waiter.duplicate
                )
            except Exception as exc:  # the agent's connection may be gone; it learns from the welcome
                _log.info("ack_undeliverable", src=waiter.src, seq=waiter.seq, error=str(exc))
