"""Read ticks from an MT5 terminal and store them as numbered batches in the durable buffer.

Each symbol has a cursor: the `time_msc` of the last tick taken and how many ticks at exactly that
millisecond were taken. A poll asks `copy_ticks_from(symbol, cursor time, …)`, skips ticks before the
cursor and the first `taken` ticks at the cursor's millisecond, and takes the rest; so a tick that
arrives later in a millisecond already read is still taken once, and no tick between polls is missed.
Ticks are grouped into batches of at most `batch_max`, stored every `flush_ms` together with the cursors
they advance (one transaction, see `DurableBuffer.append`). After a crash the agent re-reads from the
stored cursors: the ticks it had read but not stored come back from the terminal.

Prices convert exactly to raw integers; nothing else is filtered (validation is the bridge's job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from aitrading.agent._internal import RateMeter, ms_datetime
from aitrading.agent.buffer import Cursor, DurableBuffer
from aitrading.agent.terminal import COPY_TICKS_ALL, TickSource
from aitrading.common import metrics
from aitrading.common.clock import Clock
from aitrading.model.market import Tick
from aitrading.model.values import price_raw, volume_raw

__all__ = ["TickStreamer"]

_T = TypeVar("_T")
_NS_PER_MS = 1_000_000
_MAX_EXTRA = 1_048_576
_ERROR_PAUSE_S = 1.0
_log = structlog.get_logger("agent.streamer")

_ticks_read = metrics.counter("agent_ticks_read", "Ticks the agent read from MT5 terminals", ("src",))
_batches_stored = metrics.counter("agent_batches_stored", "Tick batches stored in the agent buffer", ("src",))
_poll_errors = metrics.counter("agent_poll_errors", "Failed copy_ticks_from calls", ("src",))


class TickStreamer:
    """Poll one terminal's symbols and append batches of one source (`<device>/<feed>`) to the buffer.

    Terminal calls run on a private one-thread executor (MT5 calls block and are not meant to run
    concurrently) unless `offload=False`, which calls the terminal on the event loop (simulated terminals).
    """

    def __init__(
        self,
        terminal: TickSource,
        buffer: DurableBuffer,
        *,
        src: str,
        feed: str,
        symbols: Sequence[str],
        clock: Clock,
        batch_max: int = 2_000,
        flush_ms: int = 50,
        poll_ms: int = 20,
        poll_count: int = 10_000,
        offload: bool = True,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        if batch_max < 1 or poll_count < 1:
            raise ValueError("batch_max and poll_count must be positive")
        self.src = src
        self.feed = feed
        self.symbols = tuple(symbols)
        self.batch_max = batch_max
        self.flush_ms = flush_ms
        self.poll_ms = poll_ms
        self.poll_count = poll_count
        self.read = RateMeter(clock)
        self.last_error = ""
        self._terminal = terminal
        self._buffer = buffer
        self._clock = clock
        self._on_batch = on_batch
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"mt5-{feed}") if offload else None
        self._cursors: dict[str, Cursor] = {}
        self._extra: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._pending: list[Tick] = []
        self._touched: set[str] = set()
        self._pending_since = 0
        self._stopping = asyncio.Event()
        self._loaded = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def load(self) -> None:
        """Load the stored cursors; a symbol never read starts now, and that start is stored at once."""
        stored = await asyncio.to_thread(self._buffer.cursors, self.src)
        now = Cursor(self._clock.now_ms(), 0)
        fresh = {s: now for s in self.symbols if s not in stored}
        if fresh:
            await asyncio.to_thread(self._buffer.init_cursors, self.src, fresh)
        self._cursors = {s: stored.get(s, now) for s in self.symbols}
        self._loaded = True

    async def run(self) -> None:
        """Poll and flush until `stop()`; then store the partial batch."""
        if not self._loaded:
            await self.load()
        try:
            while not self._stopping.is_set():
                try:
                    await self.poll_once()
                    if self._pending and self._due():
                        await self.flush()
                except Exception as exc:  # terminal or store failure: nothing is lost (see flush), go on
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    _log.exception("streamer_error", src=self.src)
                    await self._clock.sleep(_ERROR_PAUSE_S)
                await self._clock.sleep(self.poll_ms / 1000)
        finally:
            await self.flush()

    def stop(self) -> None:
        """Ask `run` to finish after its current poll (it stores the partial batch)."""
        self._stopping.set()

    def close(self) -> None:
        """Release the terminal thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- work --------------------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Read every symbol once; return how many new ticks were taken."""
        if not self._loaded:
            await self.load()
        taken = 0
        for symbol in self.symbols:
            taken += await self._poll_symbol(symbol)
        if taken:
            self.read.add(taken)
            _ticks_read.labels(self.src).inc(taken)
        return taken

    async def flush(self) -> int | None:
        """Store the pending ticks as one batch; return its sequence number (`None` if nothing pended)."""
        if not self._pending:
            return None
        ticks, touched = self._pending, self._touched
        updates = {s: self._cursors[s] for s in touched}
        self._pending, self._touched = [], set()
        store = asyncio.ensure_future(
            asyncio.to_thread(self._buffer.append, self.src, self.feed, ticks, updates)
        )
        try:
            seq = await asyncio.shield(store)
        except asyncio.CancelledError:
            await asyncio.wait({store})  # a thread cannot be interrupted: let the transaction end first
            raise
        except Exception:
            await self._rewind()  # not stored: read these ticks again rather than lose them
            raise
        _batches_stored.labels(self.src).inc()
        if self._on_batch is not None:
            self._on_batch(self.src, seq)
        return seq

    @property
    def pending(self) -> int:
        """Ticks read but not yet stored."""
        return len(self._pending)

    def cursor(self, symbol: str) -> Cursor:
        """Return the in-memory cursor of `symbol` (ahead of the stored one by the pending ticks)."""
        return self._cursors[symbol]

    def limit_batch(self, max_ticks: int) -> None:
        """Lower `batch_max` to what the bridge accepts (from its welcome)."""
        if 0 < max_ticks < self.batch_max:
            self.batch_max = max_ticks

    # -- internals ---------------------------------------------------------------------------------

    async def _poll_symbol(self, symbol: str) -> int:
        ms, taken = self._cursors[symbol]
        base = self.poll_count + taken
        count = base + self._extra[symbol]
        rows = await self._call(
            self._terminal.copy_ticks_from, symbol, ms_datetime(ms), count, COPY_TICKS_ALL
        )
        if rows is None:
            code, text = await self._call(self._terminal.last_error)
            self.last_error = f"copy_ticks_from({symbol}) failed: {code} {text}"
            _poll_errors.labels(self.src).inc()
            return 0
        n = len(rows)
        if n == 0:
            return 0
        times = rows["time_msc"].tolist()
        bids, asks, lasts = rows["bid"].tolist(), rows["ask"].tolist(), rows["last"].tolist()
        volumes, flags = rows["volume_real"].tolist(), rows["flags"].tolist()
        feed = self.feed
        seen = 0  # ticks at millisecond `ms` met so far in this answer
        new = 0
        for i in range(n):
            t = times[i]
            if t < ms:
                continue  # before the cursor (terminals may round date_from down to the second)
            if t == ms:
                seen += 1
                if seen <= taken:
                    continue  # taken by an earlier poll
                taken += 1
            else:
                ms, taken, seen = t, 1, 1
            self._pending.append(
                Tick(
                    feed=feed,
                    symbol=symbol,
                    time_msc=t,
                    bid=price_raw(bids[i]),
                    ask=price_raw(asks[i]),
                    last=price_raw(lasts[i]),
                    volume=volume_raw(volumes[i]),
                    flags=int(flags[i]),
                )
            )
            self._cursors[symbol] = Cursor(ms, taken)
            self._touched.add(symbol)
            new += 1
            if len(self._pending) == 1:
                self._pending_since = self._clock.monotonic_ns()
            if len(self._pending) >= self.batch_max:
                await self.flush()
        if n < count:
            self._extra[symbol] = 0  # the answer reached the newest tick
        elif new == 0:
            # Full of ticks before the cursor (date_from read to the second): ask for twice as many next time.
            self._extra[symbol] = min(_MAX_EXTRA, max(2 * self._extra[symbol], base))
        return new

    def _due(self) -> bool:
        return self._clock.monotonic_ns() - self._pending_since >= self.flush_ms * _NS_PER_MS

    async def _rewind(self) -> None:
        stored = await asyncio.to_thread(self._buffer.cursors, self.src)
        for symbol in self.symbols:
            if symbol in stored:
                self._cursors[symbol] = stored[symbol]
        self._pending, self._touched = [], set()

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
