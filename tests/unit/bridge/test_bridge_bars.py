"""Streaming bars against bars built independently with pandas `resample`, as `aggregate_bars` does."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitrading.bridge.bars import BarBuilder, BarUpdate
from aitrading.model.market import Bar, Tick, Timeframe

# --- the reference ------------------------------------------------------------------------------------------

FEED = "SIM"
SYMBOL = "EURUSD"
DIGITS = 5
POINT = 10_000  # 1e-5 as a raw (1e-9) price


def resample_bars(ticks: Sequence[Tick], tf: Timeframe, point_raw: int | None = POINT) -> list[Bar]:
    """Bars of one series: bid OHLC in (time, arrival) order, tick count, min spread in points, volume."""
    if not ticks:
        return []
    df = pd.DataFrame(
        {
            "t": [t.time_msc for t in ticks],
            "bid": [t.bid for t in ticks],
            "spread": [t.ask - t.bid for t in ticks],
            "vol": [t.volume for t in ticks],
            "n": range(len(ticks)),
        }
    )
    df = df.sort_values(["t", "n"], kind="stable")
    df.index = pd.to_datetime(df["t"], unit="ms")
    out = df.resample(pd.Timedelta(seconds=tf.seconds), origin="epoch", label="left", closed="left").agg(
        open=("bid", "first"),
        high=("bid", "max"),
        low=("bid", "min"),
        close=("bid", "last"),
        tick_volume=("bid", "count"),
        spread=("spread", "min"),
        real_volume=("vol", "sum"),
    )
    out = out[out["tick_volume"] > 0]  # MT5: bars exist only where ticks exist
    feed, symbol = ticks[0].feed, ticks[0].symbol
    bars = []
    for ts, row in out.iterrows():
        spread = int(row["spread"])
        points = 0 if point_raw is None else _round_half_away(spread, point_raw)
        bars.append(
            Bar(
                feed=feed,
                symbol=symbol,
                timeframe=int(tf),
                time=int(pd.Timestamp(ts).timestamp()),
                open=int(row["open"]),
                high=int(row["high"]),
                low=int(row["low"]),
                close=int(row["close"]),
                tick_volume=int(row["tick_volume"]),
                spread=points,
                real_volume=int(row["real_volume"]),
            )
        )
    return bars


def _round_half_away(raw: int, point: int) -> int:
    return int((Decimal(raw) / Decimal(point)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def latest(bars: Iterable[Bar]) -> dict[tuple[str, str, int, int], Bar]:
    """The last bar of each key (feed, symbol, timeframe, time): later ones replace earlier ones."""
    return {(b.feed, b.symbol, b.timeframe, b.time): b for b in bars}


def bars_of(updates: Iterable[BarUpdate]) -> list[Bar]:
    return [u.bar for u in updates]


def stream(
    seed: int,
    n: int = 6_000,
    *,
    start_ms: int = 1_704_153_600_000,  # 2024-01-02 00:00 UTC
    late_ms: int = 1_000,
    late_share: float = 0.05,
    symbol: str = SYMBOL,
) -> list[Tick]:
    """A multi-day tick stream with quiet minutes, long gaps, a weekend and late ticks within `late_ms`."""
    rng = random.Random(seed)
    ticks: list[Tick] = []
    t = start_ms
    max_t = t
    bid = 1_100_000_000
    for i in range(n):
        roll = rng.random()
        if roll < 0.002:
            t = max_t + rng.randint(40, 60) * 3_600_000  # a weekend
        elif roll < 0.01:
            t = max_t + rng.randint(5, 90) * 60_000  # a quiet stretch
        elif roll < 0.01 + late_share and i > 0:
            t = max_t - rng.randint(0, late_ms)  # late, within the validator's tolerance
        else:
            t = max_t + int(rng.expovariate(1 / 4_000))
        max_t = max(max_t, t)
        bid += rng.randint(-3, 3) * POINT
        spread = rng.choice([0, 5_000, 15_000, 25_000, 10_000 * rng.randint(1, 30)])  # half points round up
        ticks.append(
            Tick(
                feed=FEED,
                symbol=symbol,
                time_msc=t,
                bid=bid,
                ask=bid + spread,
                volume=rng.choice([0, 0, 100_000_000, rng.randint(1, 10**9)]),
            )
        )
    return ticks


def digits(feed: str, symbol: str) -> int | None:
    return DIGITS


def run(
    builder: BarBuilder, ticks: Sequence[Tick], *, clock_every: int = 0, grace_ms: int = 2_000
) -> list[BarUpdate]:
    """Feed `ticks` in batches of 50; with `clock_every`, also close bars by a clock running behind them."""
    updates: list[BarUpdate] = []
    max_t = 0
    for i in range(0, len(ticks), 50):
        batch = ticks[i : i + 50]
        updates += builder.add_many(batch)
        max_t = max([max_t, *(t.time_msc for t in batch)])
        if clock_every and (i // 50) % clock_every == 0:
            updates += builder.close_due(max_t + 1_500 - grace_ms)
    return updates


def all_bars(builder: BarBuilder, updates: Iterable[BarUpdate]) -> dict[tuple[str, str, int, int], Bar]:
    """Closed bars (latest version of each) plus the forming ones."""
    got = latest(bars_of(updates))
    forming = builder.forming(FEED, SYMBOL)
    assert not set(latest(forming)) & set(got), "a forming bar was also emitted as closed"
    return got | latest(forming)


def expected(
    ticks: Sequence[Tick], tfs: Iterable[Timeframe] = tuple(Timeframe)
) -> dict[tuple[str, str, int, int], Bar]:
    return latest(b for tf in tfs for b in resample_bars(ticks, tf))


# --- tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_streaming_bars_of_every_timeframe_equal_pandas_resample_over_days_with_gaps(seed: int) -> None:
    ticks = stream(seed)
    builder = BarBuilder(digits_of=digits)
    updates = run(builder, ticks)
    assert all_bars(builder, updates) == expected(ticks)
    assert any(u.correction for u in updates), "the stream has late ticks: some closed bars were corrected"


def test_bars_closed_by_the_clock_and_corrected_by_later_ticks_still_equal_pandas() -> None:
    ticks = stream(3, late_share=0.1)
    builder = BarBuilder(digits_of=digits)
    updates = run(builder, ticks, clock_every=1)
    assert all_bars(builder, updates) == expected(ticks)


def test_each_closed_bar_is_emitted_once_unless_a_late_tick_corrects_it() -> None:
    ticks = stream(4, late_share=0.0)
    builder = BarBuilder(digits_of=digits)
    updates = run(builder, ticks)
    keys = [(u.bar.timeframe, u.bar.time) for u in updates]
    assert len(keys) == len(set(keys))
    assert not any(u.correction for u in updates)
    # every bar but the forming one of each timeframe has closed
    assert len(updates) == len(expected(ticks)) - len(Timeframe)


def test_a_subset_of_timeframes_builds_from_the_smallest_of_them() -> None:
    ticks = stream(5, n=2_000)
    tfs = (Timeframe.M15, Timeframe.H4)
    builder = BarBuilder(tfs, digits)
    updates = run(builder, ticks)
    assert {u.bar.timeframe for u in updates} <= {int(tf) for tf in tfs}
    assert all_bars(builder, updates) == expected(ticks, tfs)


def test_bar_time_is_the_utc_open_time_aligned_to_the_timeframe() -> None:
    t = 1_704_209_400_123  # 2024-01-02 15:30:00.123 UTC
    builder = BarBuilder(digits_of=digits)
    builder.add(Tick(feed=FEED, symbol=SYMBOL, time_msc=t, bid=1_000_000_000, ask=1_000_020_000))
    times = {Timeframe(b.timeframe).name: b.time for b in builder.forming(FEED, SYMBOL)}
    day = 1_704_153_600  # 2024-01-02 00:00 UTC
    assert times == {
        "M1": day + 15 * 3600 + 30 * 60,
        "M5": day + 15 * 3600 + 30 * 60,
        "M15": day + 15 * 3600 + 30 * 60,
        "M30": day + 15 * 3600 + 30 * 60,
        "H1": day + 15 * 3600,
        "H4": day + 12 * 3600,
        "D1": day,
    }


def test_spread_is_the_smallest_of_the_bar_in_points_and_zero_when_digits_are_unknown() -> None:
    t = 1_704_153_600_000
    ticks = [
        Tick(feed=FEED, symbol=SYMBOL, time_msc=t + i, bid=1_000_000_000, ask=1_000_000_000 + s)
        for i, s in enumerate((30_000, 14_999, 25_000))
    ]
    later = Tick(feed=FEED, symbol=SYMBOL, time_msc=t + 60_000, bid=1_000_000_000, ask=1_000_010_000)
    known = BarBuilder([Timeframe.M1], digits)
    unknown = BarBuilder([Timeframe.M1])
    assert [u.bar.spread for u in known.add_many([*ticks, later])] == [1]  # 1.4999 points
    assert [u.bar.spread for u in unknown.add_many([*ticks, later])] == [0]
    halfway = BarBuilder([Timeframe.M1], digits)
    halfway.add_many(
        [ticks[0], Tick(feed=FEED, symbol=SYMBOL, time_msc=t + 5, bid=1_000_000_000, ask=1_000_025_000)]
    )
    assert [u.bar.spread for u in halfway.add(later)] == [3]  # 2.5 points round half away from zero


def test_quiet_market_bar_closes_by_the_clock_and_a_tick_arriving_after_is_a_correction() -> None:
    t0 = 1_704_153_600_000
    builder = BarBuilder([Timeframe.M1, Timeframe.H1], digits)
    first = Tick(feed=FEED, symbol=SYMBOL, time_msc=t0 + 10_000, bid=1_000_000_000, ask=1_000_010_000)
    builder.add(first)
    assert builder.close_due(t0 + 59_999) == []
    closed = builder.close_due(t0 + 60_000)
    assert [(u.bar.timeframe, u.correction) for u in closed] == [(int(Timeframe.M1), False)]
    straggler = Tick(feed=FEED, symbol=SYMBOL, time_msc=t0 + 59_000, bid=1_000_050_000, ask=1_000_060_000)
    fixed = builder.add(straggler)
    assert len(fixed) == 1
    assert fixed[0].correction
    assert (fixed[0].bar.tick_volume, fixed[0].bar.close, fixed[0].bar.high) == (
        2,
        1_000_050_000,
        1_000_050_000,
    )
    # the hour is still forming and holds both ticks exactly once
    (hour,) = [b for b in builder.forming(FEED, SYMBOL) if b.timeframe == Timeframe.H1]
    assert hour.tick_volume == 2


def test_late_tick_of_the_previous_period_corrects_the_closed_bar_and_the_forming_larger_bar() -> None:
    t0 = 1_704_153_600_000
    builder = BarBuilder([Timeframe.M1, Timeframe.M5], digits)

    def tick(t: int, bid: int) -> Tick:
        return Tick(feed=FEED, symbol=SYMBOL, time_msc=t0 + t, bid=bid, ask=bid + 10_000)

    builder.add(tick(59_000, 1_000_000_000))
    closed = builder.add(tick(60_100, 1_000_100_000))  # closes M1 00:00
    assert [(u.bar.time, u.correction) for u in closed] == [(t0 // 1000, False)]
    late = builder.add(tick(59_900, 999_000_000))  # 200 ms behind: belongs to the closed minute
    assert [(u.bar.time, u.bar.low, u.bar.close, u.bar.tick_volume, u.correction) for u in late] == [
        (t0 // 1000, 999_000_000, 999_000_000, 2, True)
    ]
    m5 = next(b for b in builder.forming(FEED, SYMBOL) if b.timeframe == Timeframe.M5)
    assert (m5.open, m5.low, m5.close, m5.tick_volume) == (1_000_000_000, 999_000_000, 1_000_100_000, 3)


def test_first_bars_after_start_are_partial_and_later_ones_are_not() -> None:
    t0 = 1_704_153_600_000
    builder = BarBuilder([Timeframe.M1, Timeframe.H1], digits)
    ticks = [
        Tick(
            feed=FEED,
            symbol=SYMBOL,
            time_msc=t0 + i * 30_000 + 30_000,
            bid=1_000_000_000 + i,
            ask=1_000_100_000,
        )
        for i in range(250)
    ]
    updates = builder.add_many(ticks)
    partial = {(Timeframe(u.bar.timeframe).name, u.bar.time - t0 // 1000) for u in updates if u.partial}
    assert partial == {("M1", 0), ("H1", 0)}
    assert any(not u.partial for u in updates if u.bar.timeframe == Timeframe.H1)


def test_tick_older_than_the_builders_memory_is_flagged_partial_not_merged() -> None:
    t0 = 1_704_153_600_000
    builder = BarBuilder([Timeframe.M1], digits, late_ms=1_000)

    def tick(t: int) -> Tick:
        return Tick(feed=FEED, symbol=SYMBOL, time_msc=t0 + t, bid=1_000_000_000 + t, ask=1_000_100_000 + t)

    builder.add_many([tick(1_000), tick(61_000), tick(125_000)])  # minute 0 is forgotten once 2:05 arrives
    (stale,) = builder.add(tick(30_000))
    assert stale.partial
    assert stale.bar.tick_volume == 1  # it could not know the rest: the pipeline rebuilds it from the store


@st.composite
def tick_streams(draw: st.DrawFn) -> list[Tick]:
    steps = draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.integers(-1_000, 0),  # late, within the validator's tolerance
                    st.integers(0, 90_000),
                    st.integers(0, 3 * 86_400_000),  # gaps of up to three days
                ),
                st.integers(-40, 40),
                st.integers(-5_000, 60_000),
                st.integers(0, 10**9),
            ),
            min_size=1,
            max_size=120,
        )
    )
    t = max_t = draw(st.integers(1_600_000_000_000, 1_800_000_000_000))
    bid = 1_100_000_000
    ticks = []
    for dt, step, spread, volume in steps:
        t = max_t + dt
        max_t = max(max_t, t)
        bid = max(POINT, bid + step * 1_000)
        ticks.append(Tick(feed=FEED, symbol=SYMBOL, time_msc=t, bid=bid, ask=bid + spread, volume=volume))
    return ticks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=tick_streams(), clock=st.booleans())
def test_any_tick_sequence_gives_the_bars_of_pandas_resample(ticks: list[Tick], clock: bool) -> None:
    builder = BarBuilder(digits_of=digits)
    updates = []
    max_t = 0
    for tick in ticks:
        updates += builder.add(tick)
        max_t = max(max_t, tick.time_msc)
        if clock:
            updates += builder.close_due(max_t - 500)  # a clock a little behind the feed
    assert all_bars(builder, updates) == expected(ticks)


def test_late_ticks_into_an_hour_that_had_no_ticks_build_a_whole_closed_hour_bar() -> None:
    t0 = 1_704_153_600_000  # 00:00

    def tick(t: int, bid: int) -> Tick:
        return Tick(feed=FEED, symbol=SYMBOL, time_msc=t0 + t, bid=bid, ask=bid + 10_000)

    builder = BarBuilder([Timeframe.M1, Timeframe.H1], digits)
    hour = 3_600_000
    ticks = [
        tick(600_000, 1_000_000_000),  # 00:10
        tick(2 * hour + 500, 1_000_100_000),  # 02:00:00.5 — nothing in 01:00
        tick(2 * hour - 300, 1_000_200_000),  # 01:59:59.7, late
        tick(2 * hour - 100, 1_000_300_000),  # 01:59:59.9, late
    ]
    updates = builder.add_many(ticks)
    one_am = [u for u in updates if u.bar.timeframe == Timeframe.H1 and u.bar.time == (t0 + hour) // 1000]
    assert [(u.bar.tick_volume, u.bar.open, u.bar.close, u.partial, u.correction) for u in one_am] == [
        (1, 1_000_200_000, 1_000_200_000, False, False),
        (2, 1_000_200_000, 1_000_300_000, False, True),
    ]
    assert all_bars(builder, updates) == expected(ticks, (Timeframe.M1, Timeframe.H1))
