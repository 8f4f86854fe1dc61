"""Bars built in SQL from stored ticks equal an independent pandas resample of the same ticks."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the environment
import pytest

from aitrading.common.errors import BadInputError
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks import TickStore
from aitrading.storage.ticks._core import spread_points

POINT = 10_000  # 5-digit FX: one point is 0.00001 = 10,000 raw
START = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _random_ticks(seed: int, n: int, span_ms: int) -> list[Tick]:
    rng = np.random.default_rng(seed)
    times = START + rng.integers(0, span_ms, n)
    times[: n // 10] = times[n // 10 : 2 * (n // 10)]  # plenty of ticks sharing a millisecond
    bids = 1_085_000_000 + POINT * rng.integers(-500, 500, n)
    spreads = POINT * rng.integers(0, 30, n) + rng.choice(
        [0, POINT // 2, 3 * POINT // 4], n
    )  # some half-points
    return [
        Tick(
            feed="demo",
            symbol="EURUSD",
            time_msc=int(t),
            bid=int(b),
            ask=int(b + s),
            volume=int(v),
        )
        for t, b, s, v in zip(times, bids, spreads, rng.integers(0, 10**8, n), strict=True)
    ]


def _pandas_bars(ticks: list[Tick], rule: str, timeframe: Timeframe, lo: int, hi: int) -> list[Bar]:
    frame = pd.DataFrame(
        [(t.time_msc, t.bid, t.ask - t.bid, t.volume) for t in ticks], columns=["t", "bid", "spread", "vol"]
    )
    frame = frame[(frame.t >= lo) & (frame.t < hi)]
    frame = frame.sort_values("t", kind="stable")  # tick order: by time, then as written
    frame.index = pd.to_datetime(frame.t, unit="ms")
    agg = frame.resample(rule).agg(
        open=("bid", "first"),
        high=("bid", "max"),
        low=("bid", "min"),
        close=("bid", "last"),
        ticks=("bid", "size"),
        spread=("spread", "min"),
        vol=("vol", "sum"),
    )
    agg = agg[agg.ticks > 0]
    epoch_s = (agg.index - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    return [
        Bar(
            feed="demo",
            symbol="EURUSD",
            timeframe=timeframe,
            time=int(s),
            open=int(r.open),
            high=int(r.high),
            low=int(r.low),
            close=int(r.close),
            tick_volume=int(r.ticks),
            # points, rounded half away from zero, computed with floats independently of the store
            spread=int(np.sign(r.spread) * np.floor(abs(r.spread) / POINT + 0.5)),
            real_volume=int(r.vol),
        )
        for s, r in zip(epoch_s, agg.itertuples(), strict=True)
    ]


@pytest.mark.parametrize(("timeframe", "rule"), [(Timeframe.M1, "1min"), (Timeframe.H1, "1h")])
async def test_aggregated_bars_equal_a_pandas_resample(
    store: TickStore, timeframe: Timeframe, rule: str
) -> None:
    ticks = _random_ticks(seed=timeframe, n=3000, span_ms=5 * 3_600_000)
    parts = (ticks[2000:], ticks[:1000], ticks[1000:2000])  # written out of time order
    for part in parts:
        await store.write_ticks(part)
    written = [tick for part in parts for tick in part]  # ties within a millisecond keep this order
    lo, hi = START + 1_234_567, START + 4 * 3_600_000 + 89_000  # cuts a bar at each end

    got = await store.aggregate_bars("demo", "EURUSD", timeframe, lo, hi, POINT)

    assert got == _pandas_bars(written, rule, timeframe, lo, hi)
    assert len(got) > (4 if timeframe is Timeframe.H1 else 200)


async def test_aggregating_an_empty_range_gives_no_bars(store: TickStore) -> None:
    assert await store.aggregate_bars("demo", "EURUSD", Timeframe.M1, START, START + 60_000, POINT) == []
    assert await store.aggregate_bars("demo", "EURUSD", Timeframe.M1, START, START, POINT) == []


async def test_aggregating_needs_a_positive_point_and_a_known_timeframe(store: TickStore) -> None:
    with pytest.raises(BadInputError, match="point_raw"):
        await store.aggregate_bars("demo", "EURUSD", Timeframe.M1, START, START + 60_000, 0)
    with pytest.raises(BadInputError, match="unknown timeframe"):
        await store.aggregate_bars("demo", "EURUSD", 7, START, START + 60_000, POINT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "points"),
    [(0, 0), (20_000, 2), (25_000, 3), (24_999, 2), (-25_000, -3), (-24_999, -2), (7_500, 1), (4_999, 0)],
)
def test_spread_points_round_half_away_from_zero(raw: int, points: int) -> None:
    assert spread_points(raw, POINT) == points
