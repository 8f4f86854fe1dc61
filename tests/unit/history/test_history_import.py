"""Importing real and generated history files into a chDB store: counts, UTC times, bars, exactly once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the environment
import pytest
from history_helpers import mt5_bar_export, mt5_tick_export

from aitrading.history import ImportReport, import_bars, import_ticks
from aitrading.history.importer import _roll_up
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks import TickStore

FAR = 2**62
AUDUSD = "truefx_AUDUSD_ticks_20200130-31.csv.gz"


def _ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


async def _all_ticks(store: TickStore, feed: str, symbol: str) -> list[Tick]:
    return await store.query_ticks(feed, symbol, 0, FAR, limit=1_000_000)


def _rows_add_up(report: ImportReport) -> None:
    accounted = report.parse_errors_total + report.rejected_total + report.imported + report.already_imported
    assert report.rows == accounted


async def test_truefx_audusd_accepts_every_tick_as_it_holds_no_exact_duplicates(
    store: TickStore, shared_data: Path
) -> None:
    """All 100,000 rows are imported: the exact-duplicate count is 0.

    The file has 179 rows whose timestamp equals the previous row's, but every one of them differs from
    that row in bid or ask (the quote moved within the millisecond): distinct ticks, not duplicates.
    No row repeats another row exactly anywhere in the file, adjacent or not (checked below with pandas,
    independently of the importer), so the validator's adjacent `duplicate` rule is all it takes, and the
    importer drops no non-adjacent repeats. The 3,498 locked quotes (bid == ask) are accepted like live.
    """
    raw = pd.read_csv(shared_data / AUDUSD, dtype=str)
    assert raw.duplicated().sum() == 0
    assert raw.timestamp.duplicated().sum() == 179

    report = await import_ticks(store, shared_data / AUDUSD, "truefx", symbol="AUDUSD", feed="truefx")

    assert (report.rows, report.imported, report.duplicates, report.rejected_total) == (
        100_000,
        100_000,
        0,
        0,
    )
    assert report.parse_errors_total == 0
    assert report.warnings == []
    assert report.time_range() == "2020-01-30 15:28:09.820 → 2020-01-31 20:59:54.501 UTC"
    assert (report.digits, report.digits_from) == (5, "symbol spec")
    ticks = await _all_ticks(store, "truefx", "AUDUSD")
    assert len(ticks) == 100_000
    assert sum(t.bid == t.ask for t in ticks) == 3_498
    assert ticks[0] == Tick(
        feed="truefx",
        symbol="AUDUSD",
        time_msc=_ms(2020, 1, 30, 15, 28, 9) + 820,
        bid=670_670_000,
        ask=670_700_000,
        flags=6,
    )
    print(f"\nTrueFX AUDUSD: {report.rows:,} ticks in {report.seconds:.2f} s = {report.rate:,.0f} ticks/s")


def _pandas_bars(path: Path, rule: str) -> list[tuple[int, ...]]:
    """Bid OHLC, tick count and smallest spread in points per bar, from the CSV alone."""
    frame = pd.read_csv(path)
    points = 100_000  # AUDUSD has 5 digits: one point is 1e-5 (10,000 raw)
    bid = np.rint(frame.bid.to_numpy() * points).astype(np.int64)
    ask = np.rint(frame.ask.to_numpy() * points).astype(np.int64)
    data = pd.DataFrame({"bid": bid, "spread": ask - bid}, index=pd.to_datetime(frame.timestamp, utc=True))
    agg = data.resample(rule).agg(
        open=("bid", "first"),
        high=("bid", "max"),
        low=("bid", "min"),
        close=("bid", "last"),
        ticks=("bid", "size"),
        spread=("spread", "min"),
    )
    agg = agg[agg.ticks > 0]
    seconds = (agg.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    scale = 10_000
    columns = (seconds, agg.open, agg.high, agg.low, agg.close, agg.ticks, agg.spread)
    return [
        (int(t), int(o) * scale, int(h) * scale, int(lo) * scale, int(c) * scale, int(n), int(s))
        for t, o, h, lo, c, n, s in zip(*columns, strict=True)
    ]


async def test_truefx_audusd_m1_and_h1_bars_equal_an_independent_pandas_resample(
    store: TickStore, shared_data: Path
) -> None:
    report = await import_ticks(store, shared_data / AUDUSD, "truefx", symbol="AUDUSD", feed="truefx")
    assert report.bars["M1"] == 1_772
    assert report.bars["H1"] == 30
    for tf, rule in ((Timeframe.M1, "1min"), (Timeframe.H1, "1h")):
        stored = await store.query_bars("truefx", "AUDUSD", tf, 0, FAR, limit=100_000)
        got = [(b.time, b.open, b.high, b.low, b.close, b.tick_volume, b.spread) for b in stored]
        assert got == _pandas_bars(shared_data / AUDUSD, rule), tf.name


async def test_bars_rolled_up_from_m1_equal_bars_aggregated_from_the_ticks(
    store: TickStore, shared_data: Path
) -> None:
    # 23:00 -> 01:36 UTC: crosses an H4 and a D1 boundary.
    path = shared_data / "dukascopy_EURUSD_ticks_20190101.csv"
    report = await import_ticks(store, path, "dukascopy", symbol="EURUSD", feed="duka")
    assert report.imported == 10_000
    assert report.bars["D1"] == 2
    assert report.bars["H4"] == 2
    m1 = await store.aggregate_bars("duka", "EURUSD", Timeframe.M1, 0, FAR, 10_000)
    for tf in Timeframe:
        from_ticks = await store.aggregate_bars("duka", "EURUSD", tf, 0, FAR, 10_000)
        assert _roll_up(m1, tf) == from_ticks, tf.name
        assert await store.query_bars("duka", "EURUSD", tf, 0, FAR) == from_ticks, tf.name


async def test_histdata_est_times_become_utc(store: TickStore, shared_data: Path) -> None:
    path = shared_data / "histdata_EURUSD_T_20200130-31.csv.gz"
    report = await import_ticks(store, path, "histdata", symbol="EURUSD", feed="histdata")
    assert (report.rows, report.imported, report.rejected_total, report.parse_errors_total) == (
        99_308,
        99_308,
        0,
        0,
    )
    # 2020-01-30 10:27:51.336 EST (fixed UTC-5) -> 15:27:51.336 UTC; the last 16:59:56.198 -> 21:59:56.198.
    assert report.time_range() == "2020-01-30 15:27:51.336 → 2020-01-31 21:59:56.198 UTC"
    first = (await store.query_ticks("histdata", "EURUSD", 0, FAR, limit=1))[0]
    assert (first.time_msc, first.bid, first.ask) == (
        _ms(2020, 1, 30, 15, 27, 51) + 336,
        1_102_740_000,
        1_102_760_000,
    )
    assert await store.count_ticks("histdata", "EURUSD") == 99_308


@pytest.mark.parametrize(
    ("name", "symbol", "digits", "first_bid", "first_ask"),
    [
        ("dukascopy_EURUSD_ticks_20190101.csv", "EURUSD", 5, 1_146_050_000, 1_146_430_000),
        ("dukascopy_USDJPY_ticks_20190101.csv", "USDJPY", 3, 109_676_000_000, 109_687_000_000),
    ],
)
async def test_dukascopy_samples_import_exactly_with_the_symbols_digits(
    store: TickStore, shared_data: Path, name: str, symbol: str, digits: int, first_bid: int, first_ask: int
) -> None:
    report = await import_ticks(store, shared_data / name, "dukascopy", symbol=symbol, feed="duka")
    assert (report.imported, report.rejected_total, report.digits) == (10_000, 0, digits)
    ticks = await _all_ticks(store, "duka", symbol)
    assert (ticks[0].time_msc, ticks[0].bid, ticks[0].ask) == (
        _ms(2019, 1, 1, 23) + ticks[0].time_msc % 1000,
        first_bid,
        first_ask,
    )
    point = 10 ** (9 - digits)
    first_minute = [t for t in ticks if t.time_msc < ticks[0].time_msc // 60_000 * 60_000 + 60_000]
    bar = (await store.query_bars("duka", symbol, Timeframe.M1, 0, FAR, limit=1))[0]
    assert bar.spread == min(t.ask - t.bid for t in first_minute) // point
    assert bar.tick_volume == len(first_minute)


async def test_truefx_usdjpy_2013_keeps_same_millisecond_quotes(store: TickStore, shared_data: Path) -> None:
    path = shared_data / "truefx_USDJPY_ticks_20130101.csv"
    report = await import_ticks(store, path, "truefx", symbol="USDJPY", feed="truefx")
    assert (report.rows, report.imported, report.duplicates) == (1_000, 1_000, 0)
    assert report.time_range() == "2013-01-01 22:00:00.295 → 2013-01-01 22:35:13.494 UTC"
    assert (report.digits, report.bars["M1"]) == (
        3,
        len({t.time_msc // 60_000 for t in await _all_ticks(store, "truefx", "USDJPY")}),
    )


async def test_mt5_tick_export_imports_in_utc_with_bars(store: TickStore, tmp_path: Path) -> None:
    report = await import_ticks(
        store, mt5_tick_export(tmp_path), "mt5", symbol="EURUSD", feed="broker", tz="Etc/GMT-2"
    )
    assert (report.rows, report.imported) == (5, 5)
    assert report.time_range() == "2020-01-30 15:28:09.820 → 2020-01-30 23:00:00.000 UTC"
    assert report.bars == {"M1": 3, "M5": 2, "M15": 2, "M30": 2, "H1": 2, "H4": 2, "D1": 1}
    (day,) = await store.query_bars("broker", "EURUSD", Timeframe.D1, 0, FAR)
    assert (day.open, day.close, day.tick_volume, day.spread) == (1_102_810_000, 1_103_000_000, 5, 2)


async def test_mt5_bar_exports_store_bars_at_their_utc_open_time(store: TickStore, tmp_path: Path) -> None:
    h1 = mt5_bar_export(
        tmp_path,
        "EURUSD_H1_202001300000_202001301100.csv",
        [
            "2020.01.30\t10:00:00\t1.10274\t1.10300\t1.10200\t1.10250\t1234\t0\t5",
            "2020.01.30\t11:00:00\t1.10250\t1.10260\t1.10240\t1.10255\t99\t0\t7",
            "2020.01.30\t11:00:00\t1.10250\t1.10260\t1.10240\t1.10255\t99\t0\t7",  # the same bar twice
            "2020.01.30\t12:00:00\t1.10250\t1.10200\t1.10240\t1.10255\t99\t0\t7",  # high below open
            "2020.01.30\t13:00:00\t1.10250\tx\t1.10240\t1.10255\t99\t0\t7",
            "2020.01.30\t13:01:00\t1.10250\t1.10260\t1.10240\t1.10255\t99\t0\t7",  # not an H1 time
        ],
    )
    report = await import_bars(store, h1, symbol="EURUSD", feed="broker", timeframe="H1", tz="Etc/GMT-2")
    assert (report.rows, report.imported, report.duplicates) == (6, 2, 1)
    assert report.rejected == {"duplicate": 1, "bad_ohlc": 1}
    assert report.parse_errors == {"bad_price": 1, "misaligned_time": 1}
    assert report.lines == {"duplicate": [4], "bad_ohlc": [5], "bad_price": [6], "misaligned_time": [7]}
    bars = await store.query_bars("broker", "EURUSD", Timeframe.H1, 0, FAR)
    assert bars[0] == Bar(
        feed="broker",
        symbol="EURUSD",
        timeframe=int(Timeframe.H1),
        time=_ms(2020, 1, 30, 8) // 1000,  # 10:00 broker time (UTC+2)
        open=1_102_740_000,
        high=1_103_000_000,
        low=1_102_000_000,
        close=1_102_500_000,
        tick_volume=1234,
        spread=5,
    )

    d1 = mt5_bar_export(
        tmp_path, "EURUSD_D1.csv", ["2020.01.30\t1.1\t1.2\t1.0\t1.15\t50000\t0\t3"], daily=True
    )
    report = await import_bars(
        store, d1, symbol="EURUSD", feed="broker", timeframe=Timeframe.D1, tz="Etc/GMT-2"
    )
    assert report.imported == 1
    (day,) = await store.query_bars("broker", "EURUSD", Timeframe.D1, 0, FAR)
    assert day.time == _ms(2020, 1, 29, 22) // 1000  # broker midnight (UTC+2) is 22:00 UTC the day before


async def test_reimport_of_the_same_content_is_skipped_and_changes_nothing(
    store: TickStore, shared_data: Path
) -> None:
    path = shared_data / "dukascopy_EURUSD_ticks_20190101.csv"
    first = await import_ticks(store, path, "dukascopy", symbol="EURUSD", feed="duka", chunk=3_000)
    bars_before = await store.query_bars("duka", "EURUSD", Timeframe.M1, 0, FAR)
    again = await import_ticks(store, path, "dukascopy", symbol="EURUSD", feed="duka", chunk=3_000)
    assert (first.imported, first.chunks, again.imported, again.already_imported) == (10_000, 4, 0, 10_000)
    assert again.is_already_imported
    assert again.chunks_already_imported == 4
    assert again.status().startswith("already imported: 4 chunk(s) (10,000 ticks)")
    assert await store.count_ticks("duka", "EURUSD") == 10_000
    assert await store.query_bars("duka", "EURUSD", Timeframe.M1, 0, FAR) == bars_before
    _rows_add_up(again)


async def test_crashed_import_resumes_after_its_last_durable_chunk_even_with_another_chunk_size(
    store: TickStore, shared_data: Path
) -> None:
    path = shared_data / "dukascopy_USDJPY_ticks_20190101.csv"
    write = store.write_ticks
    calls = 0

    async def crash_on_third_write(
        ticks: Sequence[Tick], marks: Mapping[str, int] = MappingProxyType({})
    ) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("power cut")
        return await write(ticks, marks)

    store.write_ticks = crash_on_third_write  # type: ignore[method-assign]  # a store that dies mid-import
    with pytest.raises(RuntimeError, match="power cut"):
        await import_ticks(store, path, "dukascopy", symbol="USDJPY", feed="duka", chunk=2_000)
    store.write_ticks = write  # type: ignore[method-assign]
    assert await store.count_ticks("duka", "USDJPY") == 4_000

    report = await import_ticks(store, path, "dukascopy", symbol="USDJPY", feed="duka", chunk=3_000)
    assert (report.imported, report.already_imported, report.chunks_already_imported) == (6_000, 4_000, 1)
    assert "already imported: 1 chunk(s) (4,000 ticks) skipped" in report.status()
    ticks = await _all_ticks(store, "duka", "USDJPY")
    assert len(ticks) == 10_000
    assert len({(t.time_msc, t.bid, t.ask) for t in ticks}) == 10_000


async def test_file_with_garbage_imports_the_good_rows_and_reports_the_bad_by_reason(
    store: TickStore, tmp_path: Path
) -> None:
    path = tmp_path / "dirty.csv"
    path.write_text(
        "timestamp,bid,ask\n"
        "2020-01-30 15:28:09.820,1.10281,1.10285\n"  # 2
        "2020-01-30 15:28:09.820,1.10281,1.10285\n"  # 3 exact repeat: duplicate
        "not a time,1.1,1.2\n"  # 4
        "2020-01-30 15:28:10.000,1.10290,1.10280\n"  # 5 crossed
        "2020-01-30 15:28:10.100,1.10282\n"  # 6
        "2020-01-30 15:28:10.200,0,1.1\n"  # 7 non-positive
        "2020-01-30 15:28:05.000,1.10282,1.10286\n"  # 8 five seconds back
        "2099-01-01 00:00:00.000,1.10282,1.10286\n"  # 9 after now: a wrong zone or a corrupt row
        "2020-01-30 15:28:10.300,1.10282,$\n"  # 10
        "2020-01-30 15:28:10.400,1.10282,1.10286\n"  # 11
    )
    report = await import_ticks(store, path, "truefx", symbol="EURUSD", feed="f")
    assert (report.rows, report.imported) == (10, 2)
    assert report.parse_errors == {"unparsable_time": 1, "missing_field": 1, "bad_price": 1}
    assert report.rejected == {
        "duplicate": 1,
        "crossed_quote": 1,
        "non_positive_price": 1,
        "time_backwards": 1,
        "future_time": 1,
    }
    assert report.lines == {
        "duplicate": [3],
        "unparsable_time": [4],
        "crossed_quote": [5],
        "missing_field": [6],
        "non_positive_price": [7],
        "time_backwards": [8],
        "future_time": [9],
        "bad_price": [10],
    }
    assert [t.time_msc % 1000 for t in await _all_ticks(store, "f", "EURUSD")] == [820, 400]
    _rows_add_up(report)


async def test_a_repeat_that_is_not_adjacent_is_a_real_tick(store: TickStore, tmp_path: Path) -> None:
    path = tmp_path / "aba.csv"
    path.write_text(
        "timestamp,bid,ask\n" + "".join(f"2020-01-30 15:28:09.820,{b},1.2\n" for b in ("1.1", "1.15", "1.1"))
    )
    report = await import_ticks(store, path, "truefx", symbol="EURUSD", feed="f")
    assert (report.imported, report.duplicates) == (3, 0)


async def test_overlap_with_ticks_from_another_source_is_warned(store: TickStore, tmp_path: Path) -> None:
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    one.write_text("timestamp,bid,ask\n2020-01-30 15:00:00,1.1,1.2\n2020-01-30 16:00:00,1.1,1.2\n")
    two.write_text("timestamp,bid,ask\n2020-01-30 15:30:00,1.1,1.2\n2020-01-30 17:00:00,1.1,1.2\n")
    first = await import_ticks(store, one, "truefx", symbol="EURUSD", feed="f")
    second = await import_ticks(store, two, "truefx", symbol="EURUSD", feed="f")
    assert first.warnings == []
    assert second.overlap
    assert "already held f EURUSD ticks in this file's time range" in second.warnings[0]


async def test_digits_of_an_unknown_symbol_come_from_the_prices(store: TickStore, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "timestamp,bid,ask\n2020-01-30 15:00:00,101.250,101.255\n2020-01-30 15:00:01,101.2,101.3\n"
    )
    report = await import_ticks(store, path, "truefx", symbol="XYZABC", feed="f")
    assert (report.digits, report.digits_from) == (3, "prices in the file")
    (bar,) = await store.query_bars("f", "XYZABC", Timeframe.M1, 0, FAR)
    assert bar.spread == 5
    explicit = await import_ticks(store, path, "truefx", symbol="XYZABC", feed="g", digits=2)
    assert explicit.digits == 2
    assert "prices have up to 3 decimals but digits is 2" in explicit.warnings[0]
