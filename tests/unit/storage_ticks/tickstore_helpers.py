"""Helpers shared by the tick-store tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aitrading.model.market import Tick
from aitrading.storage.ticks import TickStore


def make_ticks(
    n: int,
    *,
    start_ms: int = 1_704_067_200_000,
    step_ms: int = 250,
    feed: str = "demo",
    symbol: str = "EURUSD",
) -> list[Tick]:
    """`n` EURUSD-like ticks from `start_ms`, every `step_ms`, with distinct bids."""
    return [
        Tick(
            feed=feed,
            symbol=symbol,
            time_msc=start_ms + i * step_ms,
            bid=1_085_000_000 + 10_000 * (i % 97),
            ask=1_085_020_000 + 10_000 * (i % 97),
            volume=i,
            flags=6,
        )
        for i in range(n)
    ]


@dataclass
class Stores:
    """Opens store instances of one kind on one location; stops them all at the end of the test."""

    kind: str
    make: Callable[[], TickStore]
    opened: list[TickStore] = field(default_factory=list)

    async def open(self) -> TickStore:
        store = self.make()
        await store.start()
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        while self.opened:
            await self.opened.pop().stop()
