"""Shared by the decision tests: flat H1 bars of feed F, EURUSD, published as the bridge does."""

from __future__ import annotations

from aitrading.common.bus import Bus
from aitrading.model.market import Bar
from aitrading.model.values import price_raw


async def publish_flat_bars(bus: Bus, closes: list[int], start: int) -> None:
    """Publish one H1 bar per close (open = high = low = close), the first at hour `start`."""
    for i, c in enumerate(closes, start):
        p = price_raw(c)
        bar = Bar(
            feed="F",
            symbol="EURUSD",
            timeframe=16385,
            time=i * 3600,
            open=p,
            high=p,
            low=p,
            close=p,
            tick_volume=1,
        )
        await bus.publish("md.bar.F.EURUSD.H1", bar)
