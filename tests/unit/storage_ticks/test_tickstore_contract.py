"""The tick-store contract, run against every implementation (see conftest)."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tickstore_helpers import Stores, make_ticks

from aitrading.common.errors import BadInputError
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks import TickCursor, TickStore, next_tick_cursor

INT64 = st.integers(-(2**63), 2**63 - 1)
END = 2**63 - 1
_example = itertools.count()

ticks_strategy = st.lists(
    st.builds(
        Tick,
        feed=st.sampled_from(["a", "MetaQuotes-Demo", "Ünïcode feed", "x\x00y"]),
        symbol=st.text(min_size=1, max_size=12),
        time_msc=st.integers(0, END - 1) | st.integers(1_600_000_000_000, 1_600_000_000_010),
        bid=INT64,
        ask=INT64,
        last=INT64,
        volume=INT64,
        flags=st.integers(0, 2**32 - 1),
    ),
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticks=ticks_strategy)
async def test_ticks_round_trip_bit_exact_in_time_then_write_order(
    store: TickStore, ticks: list[Tick]
) -> None:
    tag = f"{next(_example)}:"  # the store outlives examples; a fresh feed name per example isolates them
    ticks = [msgspec.structs.replace(t, feed=tag + t.feed) for t in ticks]

    assert await store.write_ticks(ticks) == len(ticks)

    for feed, symbol in {(t.feed, t.symbol) for t in ticks}:
        expected = sorted(
            (t for t in ticks if (t.feed, t.symbol) == (feed, symbol)), key=lambda t: t.time_msc
        )
        assert await store.query_ticks(feed, symbol, 0, END, limit=1000) == expected


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    times=st.lists(st.integers(0, 6), min_size=0, max_size=30).map(sorted),
    limit=st.integers(1, 7),
    window=st.tuples(st.integers(0, 7), st.integers(0, 8)),
)
async def test_keyset_pages_concatenate_to_the_whole_range(
    store: TickStore, times: list[int], limit: int, window: tuple[int, int]
) -> None:
    symbol = f"S{next(_example)}"
    ticks = [Tick(feed="f", symbol=symbol, time_msc=1000 + t, bid=i, ask=i + 1) for i, t in enumerate(times)]
    await store.write_ticks(ticks[: len(ticks) // 2])
    await store.write_ticks(ticks[len(ticks) // 2 :])
    lo, hi = 1000 + window[0], 1000 + window[1]

    pages: list[Tick] = []
    cursor: TickCursor | None = None
    while True:
        page = await store.query_ticks("f", symbol, lo, hi, limit=limit, after=cursor)
        assert len(page) <= limit
        if not page:
            break
        pages += page
        cursor = next_tick_cursor(page, cursor)

    assert pages == [t for t in ticks if lo <= t.time_msc < hi]


async def test_range_is_half_open_and_filters_feed_and_symbol(store: TickStore) -> None:
    await store.write_ticks(make_ticks(10, start_ms=0, step_ms=10) + make_ticks(3, symbol="GBPUSD"))

    got = await store.query_ticks("demo", "EURUSD", 20, 50)

    assert [t.time_msc for t in got] == [20, 30, 40]
    assert await store.query_ticks("other", "EURUSD", 0, 100) == []


async def test_counts_and_symbols_cover_every_series(store: TickStore) -> None:
    await store.write_ticks(make_ticks(5) + make_ticks(2, symbol="GBPUSD") + make_ticks(1, feed="live"))

    assert await store.symbols() == [("demo", "EURUSD", 5), ("demo", "GBPUSD", 2), ("live", "EURUSD", 1)]
    assert await store.count_ticks() == 8
    assert await store.count_ticks("demo") == 7
    assert await store.count_ticks(symbol="EURUSD") == 6
    assert await store.count_ticks("demo", "GBPUSD") == 2
    assert await store.ping() is True


async def test_marks_survive_a_new_store_instance_and_ticks_are_counted_once(stores: Stores) -> None:
    first = await stores.open()
    await first.write_ticks(make_ticks(100), {"agent-1": 7})
    await first.write_ticks(make_ticks(10, start_ms=1_800_000_000_000), {"agent-1": 8, "agent-2": 3})
    await first.write_ticks([], {"agent-3": 42})  # every tick of that batch was rejected upstream
    await first.stop()

    second = await stores.open()

    assert await second.durable_marks() == {"agent-1": 8, "agent-2": 3, "agent-3": 42}
    assert await second.count_ticks() == 110


async def test_a_redelivered_write_is_skipped_and_marks_only_grow(store: TickStore) -> None:
    assert await store.write_ticks(make_ticks(3), {"a": 5}) == 3
    assert await store.write_ticks(make_ticks(3), {"a": 5}) == 0
    assert await store.write_ticks(make_ticks(3), {"a": 4}) == 0
    assert await store.write_ticks(make_ticks(2, start_ms=5), {"a": 4, "b": 1}) == 2  # b's batch is new

    assert await store.durable_marks() == {"a": 5, "b": 1}
    assert await store.count_ticks() == 5


async def test_unrepresentable_values_are_refused_and_nothing_is_written(store: TickStore) -> None:
    too_big = Tick(feed="f", symbol="s", time_msc=1, bid=2**63, ask=0)
    negative_time = Tick(feed="f", symbol="s", time_msc=-1, bid=1, ask=2)
    wide_flags = Tick(feed="f", symbol="s", time_msc=1, bid=1, ask=2, flags=2**32)

    for bad in (too_big, negative_time, wide_flags):
        with pytest.raises(BadInputError):
            await store.write_ticks([*make_ticks(2), bad], {"a": 1})
    with pytest.raises(BadInputError):
        await store.write_ticks(make_ticks(1), {"": 1})
    with pytest.raises(BadInputError):
        await store.write_ticks(make_ticks(1), {"a": -1})

    assert await store.count_ticks() == 0
    assert await store.durable_marks() == {}


def _bar(time: int, close: int, **over: int) -> Bar:
    values = {"open": 100, "high": 120, "low": 90, "close": close, "tick_volume": 10, "spread": 2} | over
    return Bar(feed="demo", symbol="EURUSD", timeframe=Timeframe.M1, time=time, **values)


async def test_writing_the_same_bar_twice_keeps_one(store: TickStore) -> None:
    await store.write_bars([_bar(60, 110)])
    await store.write_bars([_bar(60, 110)])

    assert await store.query_bars("demo", "EURUSD", Timeframe.M1, 0, 10_000) == [_bar(60, 110)]


async def test_a_later_version_of_a_bar_replaces_the_earlier(store: TickStore) -> None:
    await store.write_bars([_bar(60, 110), _bar(120, 111)])
    await store.write_bars([_bar(60, 115, high=130, tick_volume=12)])
    assert await store.write_bars([_bar(180, 1), _bar(180, 2)]) == 1  # within one call, the last wins

    got = await store.query_bars("demo", "EURUSD", Timeframe.M1, 0, 10_000)

    assert got == [_bar(60, 115, high=130, tick_volume=12), _bar(120, 111), _bar(180, 2)]
    assert await store.query_bars("demo", "EURUSD", Timeframe.H1, 0, 10_000) == []


async def test_bar_pages_continue_after_the_last_bar_time(store: TickStore) -> None:
    await store.write_bars([_bar(60 * i, i) for i in range(10)])

    first = await store.query_bars("demo", "EURUSD", Timeframe.M1, 60, 600, limit=4)
    second = await store.query_bars("demo", "EURUSD", Timeframe.M1, 60, 600, limit=4, after=first[-1].time)
    third = await store.query_bars("demo", "EURUSD", Timeframe.M1, 60, 600, limit=4, after=second[-1].time)

    assert [b.time // 60 for b in first + second + third] == list(range(1, 10))
