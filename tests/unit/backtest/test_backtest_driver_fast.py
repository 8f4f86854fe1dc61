"""The backtest driver's per-event code (one frame per quote in `run_ticks`, the quotes of a bar in a list
in `run_bars`) does what the layered methods do: the same orders, deals, equity samples, event counts,
progress calls and latency samples as a driver that goes through `_market`, `_strategies_tick`, `_count`,
`_sample` and `bar_ticks` — and `bar_quotes` is `bar_ticks` in a list."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.backtest.data import bar_quotes, bar_ticks
from aitrading.backtest.engine import Backtest, BacktestConfig, Costs, Progress
from aitrading.model.commands import TradeCommand
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies import load_strategy
from aitrading.strategies.base import OrderIntent


@settings(max_examples=300, deadline=None)
@given(
    time=st.integers(0, 2**40),
    prices=st.lists(st.integers(1, 10**9), min_size=4, max_size=4),
    seconds=st.sampled_from([60, 3600, 86400]),
    spread=st.integers(0, 500),
    ohlc=st.booleans(),
)
def test_bar_quotes_are_bar_ticks_in_a_list(
    time: int, prices: list[int], seconds: int, spread: int, ohlc: bool
) -> None:
    o, c = prices[0], prices[3]
    high, low = max(prices), min(prices)
    bar = Bar(
        feed="F",
        symbol="EURUSD",
        timeframe=16385,
        time=time,
        open=o,
        high=high,
        low=low,
        close=c,
        tick_volume=1,
    )
    assert bar_quotes(bar, seconds, spread, ohlc=ohlc) == list(bar_ticks(bar, seconds, spread, ohlc=ohlc))


class _Layered(Backtest):
    """The driver as it was: every step through its method, `bar_ticks` generators."""

    async def _tick(self, tick: Tick, progress: Progress | None) -> None:
        await self._market(tick)
        await self._strategies_tick(tick)
        self._count(progress)
        self._sample()

    async def run_bars(self, bars: Iterable[Bar], progress: Progress | None = None) -> None:
        import time

        spread, ohlc = self.spread_raw, self.config.ohlc
        remaining = iter(bars)
        following = next(remaining, None)
        while following is not None:
            bar, following = following, next(remaining, None)
            quotes = bar_ticks(bar, Timeframe(bar.timeframe).seconds, spread, ohlc=ohlc)
            if following is None and self.config.end_at == "open":
                await self._market(next(quotes))
                self._count(progress)
                break
            for tick in quotes:
                await self._market(tick)
            started = time.perf_counter_ns()
            intents: list[OrderIntent] = []
            for s in self.strategies:
                intents += s.on_bar(bar, self.ctx)
            await self._decide(intents, bar.symbol, bar.close / PRICE_SCALE, time.perf_counter_ns() - started)
            self._count(progress)
            self._sample(force=True)
        await self._finish()


def _walk(n: int, seed: int) -> list[Tick]:
    rng = random.Random(seed)
    price, t, out = 110_000_000, 1_700_000_000_000, []
    for _ in range(n):
        price += rng.randint(-3000, 3000)
        t += rng.randint(1, 40) * rng.choice([250, 1000, 1001])  # equity sample times met exactly too
        out.append(Tick(feed="BT", symbol="EURUSD", time_msc=t, bid=price, ask=price + rng.randint(0, 900)))
    return out


def _bars(n: int, seed: int) -> list[Bar]:
    rng = random.Random(seed)
    price, out = 110_000_000, []
    for i in range(n):
        o = price
        c = o + rng.randint(-200_000, 200_000)
        high, low = max(o, c) + rng.randint(0, 50_000), min(o, c) - rng.randint(0, 50_000)
        out.append(
            Bar(
                feed="BT",
                symbol="EURUSD",
                timeframe=16385,
                time=1_700_000_000 + 3600 * i,
                open=o,
                high=high,
                low=low,
                close=c,
                tick_volume=1,
            )
        )
        price = c
    return out


async def _observe(kind: type[Backtest], cfg: BacktestConfig, data: list[Any], *, ticks: bool) -> Any:
    seen: list[int] = []
    async with kind(cfg, [load_strategy("ema_cross", {"fast": "3", "slow": "8"})]) as bt:
        if ticks:
            await bt.run_ticks(data, progress=seen.append)
        else:
            await bt.run_bars(data, progress=seen.append)
        commands = [m.request for m in bt.orders_seen if isinstance(m, TradeCommand)]
        return (
            [msgspec.structs.replace(c, tenant="t") for c in commands],
            [(d.time_ns, d.price, d.volume, d.profit) for d in bt.deals()],
            bt.equity,
            bt.events,
            len(bt.latency_ns),
            seen,
            dict(bt.decision.counters),
        )


@pytest.mark.parametrize("equity_every_s", [1, 60])
async def test_run_ticks_is_the_layered_driver(equity_every_s: int) -> None:
    ticks = _walk(3000, 7)
    cfg = BacktestConfig(symbol="EURUSD", equity_every_s=equity_every_s)
    fast = await _observe(Backtest, cfg, ticks, ticks=True)
    assert fast == await _observe(_Layered, cfg, ticks, ticks=True)
    assert len(fast[0]) >= 20  # it trades
    assert fast[5] == [1000, 2000, 3000]


@pytest.mark.parametrize(("ohlc", "end_at"), [(False, "close"), (True, "close"), (True, "open")])
async def test_run_bars_is_the_layered_driver(ohlc: bool, end_at: Any) -> None:
    bars = _bars(2500, 11)
    cfg = BacktestConfig(symbol="EURUSD", ohlc=ohlc, end_at=end_at, costs=Costs(spread_points=5))
    fast = await _observe(Backtest, cfg, bars, ticks=False)
    assert fast == await _observe(_Layered, cfg, bars, ticks=False)
    assert len(fast[0]) >= 20
