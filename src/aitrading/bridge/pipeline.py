"""The ingest pipeline: validated ticks go to the bus at once and to the store in large batches.

A batch is acknowledged to its agent only after the store write that holds it returned, and the source's
sequence number is stored atomically with the ticks (see `TickStore.write_ticks`), so a bridge that dies
at any point loses nothing that was acked and stores nothing twice: on restart it loads the durable marks,
acks redelivered batches at or below them as duplicates and stores only the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from aitrading.common import metrics
from aitrading.common.bus import Bus
from aitrading.common.bus.subjects import token
from aitrading.common.clock import Clock
from aitrading.common.errors import TemporaryError
from aitrading.model.market import Tick
from aitrading.model.values import price_float

__all__ = ["AckCallback", "IngestPipeline", "TickSink"]

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


class TickSink(Protocol):
    """What the pipeline needs of the tick store."""

    async def write_ticks(self, ticks: Sequence[Tick], marks: Mapping[str, int] = ...) -> int: ...

    async def durable_marks(self) -> dict[str, int]: ...


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
    first_ns: int = 0


class IngestPipeline:
    """Publishes accepted ticks, batches them into the store and acks sources once durable."""

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
    ) -> None:
        self._bus = bus
        self._store = store
        self._clock = clock
        self._flush_ns = flush_ms * 1_000_000
        self._flush_ticks = flush_ticks
        self._max_pending = max_pending_ticks
        self._cache = cache
        self._codec = codec
        self._pending = _Pending()
        self._durable: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.healthy = True

    async def start(self) -> None:
        """Load durable marks from the store and start the writer."""
        self._durable = dict(await self._store.durable_marks())
        self._in_flight = dict(self._durable)
        self._task = asyncio.create_task(self._writer(), name="bridge-store-writer")

    async def stop(self) -> None:
        """Flush everything pending (acking it) and stop the writer."""
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
            if not self._pending.waiters:
                self._pending.first_ns = self._clock.monotonic_ns()
                self._wake.set()
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
        pending = self._pending
        if not pending.waiters:
            pending.first_ns = self._clock.monotonic_ns()
            self._wake.set()  # start the flush timer
        pending.ticks.extend(accepted)
        pending.marks[src] = seq
        pending.waiters.append(_Waiter(src, seq, len(accepted), n_rej, False, on_durable))
        PENDING.set(len(pending.ticks))
        publish = self._bus.publish
        for tick in accepted:
            await publish(f"md.tick.{token(tick.feed)}.{token(tick.symbol)}", tick)
        if len(pending.ticks) >= self._flush_ticks:
            self._wake.set()

    async def _writer(self) -> None:
        while True:
            if not self._pending.waiters:
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
            await self._write_until_durable(batch)
            for src, seq in batch.marks.items():
                if seq > self._durable.get(src, 0):
                    self._durable[src] = seq
            await self._after_durable(batch)

    async def _write_until_durable(self, batch: _Pending) -> None:
        delay = 0.05
        while True:
            started = self._clock.monotonic_ns()
            try:
                await self._store.write_ticks(batch.ticks, batch.marks)
            except (TemporaryError, OSError, RuntimeError) as exc:
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
