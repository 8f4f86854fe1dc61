"""The embedded chDB store: persistence on disk, the one-path-per-process registry, its driver."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from tickstore_helpers import make_ticks

from aitrading.common.errors import ConfigError, OperationalError
from aitrading.common.lifecycle import ComponentState
from aitrading.model.market import Bar, Timeframe
from aitrading.storage.ticks import ChDBTickStore, ClickHouseTickStore, make_tick_store
from aitrading.storage.ticks._core import TickCore
from aitrading.storage.ticks.chdb_store import ChDBDriver

END = 2**62


async def test_ticks_bars_and_marks_persist_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ticks"
    ticks = make_ticks(500)
    bar = Bar(
        feed="demo",
        symbol="EURUSD",
        timeframe=Timeframe.H1,
        time=3600,
        open=1,
        high=3,
        low=0,
        close=2,
        tick_volume=9,
    )
    first = ChDBTickStore(path)
    await first.start()
    await first.write_ticks(ticks, {"agent": 11})
    await first.write_bars([bar])
    await first.stop()
    assert path.is_dir()

    second = ChDBTickStore(path)
    await second.start()
    try:
        assert await second.query_ticks("demo", "EURUSD", 0, END) == ticks
        assert await second.query_bars("demo", "EURUSD", Timeframe.H1, 0, END) == [bar]
        assert await second.durable_marks() == {"agent": 11}
    finally:
        await second.stop()


async def test_stores_on_one_path_share_the_engine_and_the_write_order(tmp_path: Path) -> None:
    one, two = ChDBTickStore(tmp_path / "db"), ChDBTickStore(tmp_path / "db" / ".." / "db")
    await one.start()
    await two.start()
    try:
        first = make_ticks(1, start_ms=5_000)[0]
        second = msgspec.structs.replace(first, bid=1)
        await one.write_ticks([first], {"a": 1})
        await two.write_ticks([second], {"b": 1})
        await asyncio.gather(
            *(store.write_ticks(make_ticks(10, start_ms=10_000)) for store in (one, two) * 3)
        )

        assert await one.query_ticks("demo", "EURUSD", 5_000, 5_001) == [first, second]
        assert await one.count_ticks() == await two.count_ticks() == 62
        assert await two.durable_marks() == {"a": 1, "b": 1}
        await one.stop()
        assert await two.ping() is True  # the engine lives while any store on the path runs
    finally:
        await one.stop()
        await two.stop()


async def test_a_second_path_is_refused_while_one_is_open_and_allowed_after(tmp_path: Path) -> None:
    first = ChDBTickStore(tmp_path / "a")
    other = ChDBTickStore(tmp_path / "b")
    await first.start()
    try:
        with pytest.raises(OperationalError, match="one chDB path at a time"):
            await other.start()
        assert other.state is ComponentState.FAULTED
    finally:
        await first.stop()

    again = ChDBTickStore(tmp_path / "b")
    await again.start()
    try:
        assert await again.count_ticks() == 0
    finally:
        await again.stop()


async def test_a_store_that_is_not_started_refuses_work_and_fails_its_ping(tmp_path: Path) -> None:
    store = ChDBTickStore(tmp_path / "db")

    assert await store.ping() is False
    with pytest.raises(OperationalError, match="not started"):
        await store.count_ticks()


async def test_string_parameters_with_escapes_match_exactly(chdb_store: ChDBTickStore) -> None:
    odd = ["a\\0", "tab\there", "quote'`", "new\nline", "\\N", "nul\x00byte"]
    for symbol in odd:
        await chdb_store.write_ticks(make_ticks(2, symbol=symbol))

    for symbol in odd:
        assert [t.symbol for t in await chdb_store.query_ticks("demo", symbol, 0, END)] == [symbol, symbol]
        assert await chdb_store.count_ticks("demo", symbol) == 2


@pytest.mark.parametrize("stream_insert", [True, False], ids=["arrow-stream", "python-table-function"])
def test_both_chdb_insert_paths_store_the_same_rows(tmp_path: Path, stream_insert: bool) -> None:
    driver = ChDBDriver(str(tmp_path / "db"), stream_insert=stream_insert)
    try:
        core = TickCore(driver)
        core.create_schema()
        ticks = make_ticks(1000)
        core.write_ticks(ticks, {"a": 1})
        assert core.query_ticks("demo", "EURUSD", 0, END, 5000, None) == ticks
    finally:
        driver.close()


def test_the_factory_builds_the_configured_store(tmp_path: Path) -> None:
    embedded = make_tick_store("chdb", chdb_path=tmp_path / "db")
    server = make_tick_store("clickhouse", clickhouse_url="http://default:secret@127.0.0.1:8123/ticks")

    assert isinstance(embedded, ChDBTickStore)
    assert embedded.path == str((tmp_path / "db").resolve())
    assert isinstance(server, ClickHouseTickStore)
    assert server.url == "http://default:***@127.0.0.1:8123/ticks"


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("chdb", {}, "needs chdb_path"),
        ("clickhouse", {"chdb_path": "x"}, "needs clickhouse_url"),
        ("duckdb", {}, "unknown tick store kind"),
    ],
)
def test_the_factory_names_what_is_missing(kind: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_tick_store(kind, **kwargs)  # type: ignore[arg-type]
