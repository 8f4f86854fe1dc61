"""Bars over HTTP: built from ticks (checked against pandas), stored, merged in `auto`, paginated."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from dbservice_helpers import (
    FEED,
    HOUR_MS,
    T0_MS,
    WIDE_FROM,
    WIDE_TO,
    as_exact,
    auth,
    expected_bars,
    stored_bar,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitrading.model.market import Tick, Timeframe
from aitrading.storage.ticks import TickStore


async def _bars(client: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    query = {"feed": FEED, "symbol": "EURUSD", "from": WIDE_FROM, "to": WIDE_TO, **params}
    resp = await client.get("/api/v1/bars", params=query, headers=auth(token))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def _walk(client: httpx.AsyncClient, token: str, **params: Any) -> list[dict[str, Any]]:
    bars: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = await _bars(client, token, **params, **({"cursor": cursor} if cursor else {}))
        bars += body["bars"]
        cursor = body["next_cursor"]
        if cursor is None:
            return bars
        assert len(body["bars"]) == params["limit"]


@pytest.mark.parametrize("tf", ["M1", "M5", "M15", "M30", "H1", "H4", "D1"])
async def test_bars_from_ticks_equal_an_independent_pandas_aggregation(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick], tf: str
) -> None:
    body = await _bars(client, token, timeframe=tf, source="ticks", limit=50_000)
    expected = expected_bars(eurusd, Timeframe[tf], 5, T0_MS - 24 * HOUR_MS, T0_MS + 8 * 24 * HOUR_MS)
    assert [as_exact(b) for b in body["bars"]] == expected
    assert body["next_cursor"] is None
    assert {b["source"] for b in body["bars"]} == {"ticks"}
    assert (body["timeframe"], body["digits"]) == (tf, 5)


@pytest.mark.parametrize(
    ("tf", "limit", "to"),
    [("M1", 1, "2024-01-02T00:30:00Z"), ("M1", 7, WIDE_TO), ("M5", 13, WIDE_TO), ("H1", 2, WIDE_TO),
     ("D1", 1, WIDE_TO)],
)  # fmt: skip
async def test_bar_pages_walk_every_bar_exactly_once_in_order(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick], tf: str, limit: int, to: str
) -> None:
    walked = await _walk(client, token, timeframe=tf, source="ticks", limit=limit, to=to)
    whole = (await _bars(client, token, timeframe=tf, source="ticks", limit=50_000, to=to))["bars"]
    assert walked == whole
    assert len(whole) == len({b["time_s"] for b in whole}) > 1


async def test_bars_are_whole_bars_opening_in_the_range(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick]
) -> None:
    # From 00:30 to 02:30: H1 bars open at 01:00 and 02:00; the 02:00 bar holds its ticks up to 03:00.
    body = await _bars(
        client, token, timeframe="H1", source="ticks", **{"from": str(T0_MS + 1_800_000)},
        to="2024-01-02T02:30:00Z",
    )  # fmt: skip
    expected = expected_bars(eurusd, Timeframe.H1, 5, T0_MS + HOUR_MS, T0_MS + 3 * HOUR_MS)
    assert [as_exact(b) for b in body["bars"]] == expected
    assert [b["time"] for b in body["bars"]] == ["2024-01-02T01:00:00Z", "2024-01-02T02:00:00Z"]


async def test_bar_prices_are_exact_strings_padded_to_the_symbol_digits(
    client: httpx.AsyncClient, token: str
) -> None:
    body = await _bars(client, token, timeframe="M1", source="ticks", limit=5)
    for bar in body["bars"]:
        for key in ("open", "high", "low", "close"):
            assert isinstance(bar[key], str)
            assert len(bar[key].split(".")[1]) >= 5
        assert isinstance(bar["real_volume"], str)
    gold = await _bars(client, token, symbol="XAUUSD", timeframe="D1")
    (bar,) = gold["bars"]
    assert (bar["open"], bar["spread"], gold["digits"]) == ("2350.10", 25, 2)


async def test_digits_parameter_builds_bars_of_an_unknown_symbol(
    client: httpx.AsyncClient, token: str
) -> None:
    body = await _bars(client, token, symbol="CUSTOM", timeframe="M1", source="ticks", digits=9)
    (bar,) = body["bars"]
    assert (bar["open"], bar["close"], bar["spread"], bar["real_volume"]) == (
        "9007199.254740993",
        "9007199.254740993",
        2,
        "0.10000001",
    )
    assert body["digits"] == 9


async def test_digits_parameter_changes_the_spread_points(client: httpx.AsyncClient, token: str) -> None:
    five = await _bars(client, token, timeframe="H1", source="ticks")
    four = await _bars(client, token, timeframe="H1", source="ticks", digits=4)
    assert [b["open"] for b in five["bars"]] == [b["open"] for b in four["bars"]]
    assert [b["spread"] for b in five["bars"]] != [b["spread"] for b in four["bars"]]


# -- stored bars and auto -------------------------------------------------------------------------------


@pytest.fixture
async def with_stored(store: TickStore) -> list[int]:
    """Store M1 bars at 00:05 and 00:06 (ticks exist there too) and one at 00:02 of Jan 1 (no ticks)."""
    times = [T0_MS // 1000 + 300, T0_MS // 1000 + 360, T0_MS // 1000 - 86_400 + 120]
    await store.write_bars([stored_bar(t, 2_000_000_000 + i) for i, t in enumerate(times)])
    return times


async def test_stored_bars_win_in_auto_and_ticks_fill_the_other_periods(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick], with_stored: list[int]
) -> None:
    auto = (await _bars(client, token, timeframe="M1", limit=50_000))["bars"]
    built = expected_bars(eurusd, Timeframe.M1, 5, 0, 2**62)
    stored_periods = set(with_stored)
    assert stored_periods & {b["time_s"] for b in built} == set(with_stored[:2])  # ticks there too
    assert [b["time_s"] for b in auto] == sorted(
        [b["time_s"] for b in built if b["time_s"] not in stored_periods] + with_stored
    )
    by_time = {b["time_s"]: b for b in auto}
    for i, t in enumerate(with_stored):
        assert by_time[t]["source"] == "stored"
        assert Decimal(by_time[t]["open"]) == Decimal(2_000_000_000 + i).scaleb(-9)
        assert by_time[t]["tick_volume"] == 42
    assert [as_exact(b) for b in auto if b["source"] == "ticks"] == [
        b for b in built if b["time_s"] not in stored_periods
    ]


async def test_stored_source_reads_only_stored_bars_and_ticks_source_ignores_them(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick], with_stored: list[int]
) -> None:
    stored = (await _bars(client, token, timeframe="M1", source="stored"))["bars"]
    assert [(b["time_s"], b["source"], b["open"]) for b in stored] == [
        (with_stored[2], "stored", "2.000000002"),
        (with_stored[0], "stored", "2.00000"),
        (with_stored[1], "stored", "2.000000001"),
    ]
    assert (stored[0]["high"], stored[0]["real_volume"], stored[0]["spread"]) == ("2.000050002", "5", 3)
    ticks = (await _bars(client, token, timeframe="M1", source="ticks", limit=50_000))["bars"]
    assert [as_exact(b) for b in ticks] == expected_bars(eurusd, Timeframe.M1, 5, 0, 2**62)
    assert (await _bars(client, token, timeframe="H1", source="stored"))["bars"] == []


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
async def test_auto_pages_walk_the_merged_bars_exactly_once(
    client: httpx.AsyncClient, token: str, with_stored: list[int], limit: int
) -> None:
    to = "2024-01-02T00:40:00Z"
    walked = await _walk(client, token, timeframe="M1", limit=limit, to=to)
    whole = (await _bars(client, token, timeframe="M1", limit=50_000, to=to))["bars"]
    assert walked == whole
    assert [b["source"] for b in whole].count("stored") == 3


@pytest.mark.parametrize("limit", [1, 2])
async def test_stored_pages_walk_every_stored_bar_once(
    client: httpx.AsyncClient, token: str, with_stored: list[int], limit: int
) -> None:
    walked = await _walk(client, token, timeframe="M1", source="stored", limit=limit)
    assert [b["time_s"] for b in walked] == sorted(with_stored)


async def test_auto_serves_stored_bars_of_a_symbol_without_digits_or_ticks(
    client: httpx.AsyncClient, token: str, store: TickStore
) -> None:
    await store.write_bars([stored_bar(T0_MS // 1000 + 86_400, 7_000_000_000, symbol="NODIGITS")])
    body = await _bars(client, token, symbol="NODIGITS", timeframe="M1")
    assert [(b["open"], b["source"]) for b in body["bars"]] == [("7", "stored")]
    assert body["digits"] is None


@given(
    tf=st.sampled_from(list(Timeframe)),
    source=st.sampled_from(["ticks", "auto", "stored"]),
    from_ms=st.integers(T0_MS - HOUR_MS, T0_MS + 30 * HOUR_MS),
    span_ms=st.integers(0, 30 * HOUR_MS),
    pages=st.integers(1, 6),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_range_and_page_size_walks_to_the_expected_bars(
    client: httpx.AsyncClient,
    token: str,
    eurusd: list[Tick],
    with_stored: list[int],
    tf: Timeframe,
    source: str,
    from_ms: int,
    span_ms: int,
    pages: int,
) -> None:
    to_ms = from_ms + span_ms
    built = expected_bars(eurusd, tf, 5, from_ms, to_ms)
    stored = [t for t in with_stored if from_ms <= t * 1000 < to_ms] if tf is Timeframe.M1 else []
    expected: list[tuple[int, str]] = []
    if source != "stored":
        expected += [(b["time_s"], "ticks") for b in built if source == "ticks" or b["time_s"] not in stored]
    if source != "ticks":
        expected += [(t, "stored") for t in stored]
    expected.sort()
    limit = max(1, -(-len(expected) // pages))
    walked = await _walk(
        client, token, timeframe=tf.name, source=source, limit=limit, **{"from": str(from_ms)}, to=str(to_ms)
    )
    assert [(b["time_s"], b["source"]) for b in walked] == expected
    built_by_time = {b["time_s"]: b for b in built}
    assert all(as_exact(b) == built_by_time[b["time_s"]] for b in walked if b["source"] == "ticks")
