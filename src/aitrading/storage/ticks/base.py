"""The tick store interface: ticks and bars in ClickHouse SQL, embedded (chDB) or on a server.

Contract highlights
-------------------
- **Exact values.** Prices, volumes, times and flags come back bit-for-bit as written (raw integers; see
  `aitrading.storage.ticks.sql`). A value a column cannot hold is refused with `BadInputError`.
- **Exactly-once ingest.** `write_ticks(ticks, marks)` makes the ingest marks (`source -> sequence`)
  durable atomically with the ticks: after a crash `durable_marks()` reports a sequence if and only if its
  ticks are stored. A write with no ticks (every tick rejected upstream) still records its marks.
- **Ranges are half-open**: `[from, to)`, in epoch milliseconds for ticks and epoch seconds for bars.
- **Keyset pagination.** Ticks come in store order: by `time_msc`, ties in the order they were written.
  The cursor is a `TickCursor(time_msc, skip)`: continue after the first `skip` ticks stamped `time_msc`.
  A caller builds it from the ticks it already has with `next_tick_cursor`, so pages need no hidden ids.
  Bar pages continue after a bar's `time` (bars are unique per time).
- **One writer per database.** Ingest marks, the write ordinal and crash recovery assume one process
  writes ticks (the data bridge). `write_ticks` and `durable_marks` belong to that writer alone: their
  first call recovers from a crash and deletes torn writes, which in another process could be the
  writer's INSERT in flight. Any number of processes may query.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from aitrading.common.lifecycle import Component
from aitrading.model.market import Bar, Tick, Timeframe

__all__ = ["TickCursor", "TickStore", "next_tick_cursor"]

_NO_MARKS: Mapping[str, int] = {}


class TickCursor(NamedTuple):
    """Where a tick page ends: after the first `skip` ticks stamped `time_msc`, in store order."""

    time_msc: int
    skip: int


def next_tick_cursor(
    page: Sequence[Tick], after: TickCursor | tuple[int, int] | None = None
) -> TickCursor | None:
    """Return the cursor that continues after `page`, which was fetched with cursor `after`.

    Returns None for an empty page (there is nothing after it). A page whose ticks all share the
    cursor's millisecond extends that cursor's `skip`.
    """
    if not page:
        return None
    last = page[-1].time_msc
    skip = 0
    for tick in reversed(page):
        if tick.time_msc != last:
            break
        skip += 1
    if after is not None and after[0] == last and skip == len(page):
        skip += after[1]
    return TickCursor(last, skip)


class TickStore(Component):
    """Append-only tick storage with exactly-once ingest marks, and idempotent bar storage."""

    name = "tick_store"

    @abstractmethod
    async def write_ticks(self, ticks: Sequence[Tick], marks: Mapping[str, int] = _NO_MARKS) -> int:
        """Append `ticks` and make `marks` (ingest source -> sequence) durable with them; return the count.

        Either every tick and the marks are stored, or (after a crash) neither is: recovery removes a torn
        write before the next write. Sequences only grow per source (a source that restarts its numbering
        needs a new name). A write whose marks are all durable already is a redelivery: it is skipped and
        returns 0. So retrying a write that raised (it may still have landed) stores it exactly once.

        Raise `BadInputError` for a value no column holds (nothing is written) and `TemporaryError` when
        the database fails (retry with backoff).
        """

    @abstractmethod
    async def durable_marks(self) -> dict[str, int]:
        """Return the highest durable sequence of every ingest source."""

    @abstractmethod
    async def query_ticks(
        self,
        feed: str,
        symbol: str,
        from_ms: int,
        to_ms: int,
        limit: int = 10_000,
        after: TickCursor | tuple[int, int] | None = None,
    ) -> list[Tick]:
        """Return up to `limit` ticks of `feed`/`symbol` in `[from_ms, to_ms)`, in store order.

        `after` continues a previous page (see `next_tick_cursor`).
        """

    @abstractmethod
    async def write_bars(self, bars: Sequence[Bar]) -> int:
        """Store `bars`; a bar with the key (feed, symbol, timeframe, time) of a stored one replaces it.

        Within one call the last bar of a key wins. Return the number of distinct bars written.
        """

    @abstractmethod
    async def query_bars(
        self,
        feed: str,
        symbol: str,
        timeframe: Timeframe | int,
        from_s: int,
        to_s: int,
        limit: int = 10_000,
        after: int | None = None,
    ) -> list[Bar]:
        """Return up to `limit` stored bars with open time in `[from_s, to_s)` and after `after`, by time."""

    @abstractmethod
    async def aggregate_bars(
        self, feed: str, symbol: str, timeframe: Timeframe, from_ms: int, to_ms: int, point_raw: int
    ) -> list[Bar]:
        """Build bars from the stored ticks in `[from_ms, to_ms)`, in SQL, like MT5 builds them.

        Open/high/low/close are bid prices in tick order; `tick_volume` counts ticks; `spread` is the
        smallest `ask - bid` of the bar in points of `point_raw` (a raw price; rounded half away from
        zero); `real_volume` sums the ticks' raw volumes. A range that cuts a bar yields that bar from
        the ticks inside the range only.
        """

    @abstractmethod
    async def symbols(self) -> list[tuple[str, str, int]]:
        """Return `(feed, symbol, tick count)` of every stored series, sorted."""

    @abstractmethod
    async def count_ticks(self, feed: str | None = None, symbol: str | None = None) -> int:
        """Return how many ticks are stored, optionally of one feed and/or symbol."""

    @abstractmethod
    async def ping(self) -> bool:
        """Return True if the database answers."""
