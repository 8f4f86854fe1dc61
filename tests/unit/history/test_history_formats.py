"""The history parsers: exact prices, times to UTC, every format's layout, encodings, bad rows by reason."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from history_helpers import mt5_tick_export
from hypothesis import given
from hypothesis import strategies as st

from aitrading.common.errors import BadInputError
from aitrading.history._fields import BadRow, ZoneConverter, parse_price, parse_wall_time, resolve_zone
from aitrading.history._text import TextSource
from aitrading.history.formats import CsvOptions, TickParser
from aitrading.model.market import Tick


def _ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def parse(path: Path, fmt: str, **kwargs: object) -> tuple[list[tuple[int, Tick]], TickParser]:
    parser = TickParser(fmt, feed="F", symbol=str(kwargs.pop("symbol", "EURUSD")), **kwargs)  # type: ignore[arg-type]
    return list(parser.ticks(TextSource(path).lines())), parser


# -- fields ---------------------------------------------------------------------------------------------


@given(st.decimals(min_value=0, max_value=10**8, places=9, allow_nan=False, allow_infinity=False))
def test_price_text_becomes_the_exact_raw_integer(value: Decimal) -> None:
    assert parse_price(f"{value:f}") == int(value.scaleb(9))


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "missing_field"), ("abc", "bad_price"), ("1.2.3", "bad_price"), ("nan", "bad_price")],
)
def test_price_that_is_no_number_is_a_bad_row_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(BadRow) as info:
        parse_price(text)
    assert info.value.reason == reason


def test_price_with_exponent_or_sign_is_still_exact() -> None:
    assert parse_price("1e-5") == 10_000
    assert parse_price(" 1.10274 ") == 1_102_740_000
    assert parse_price("-0.5") == -500_000_000  # the validator refuses it as non_positive_price


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31)))
def test_every_supported_time_layout_reads_the_same_instant(when: datetime) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    expected = (when - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
    ms = f"{when.microsecond // 1000:03d}"
    layouts = [
        when.strftime("%Y-%m-%d %H:%M:%S.") + ms,
        when.strftime("%Y.%m.%d %H:%M:%S.") + ms,
        when.strftime("%Y%m%d %H%M%S") + ms,  # HistData
        when.strftime("%d.%m.%Y %H:%M:%S.") + ms,  # Dukascopy
        when.strftime("%Y-%m-%dT%H:%M:%S.") + ms + "000",
    ]
    for text in layouts:
        assert parse_wall_time(text) == (expected, None), text


@pytest.mark.parametrize(
    ("text", "offset_min"),
    [
        ("2020-01-30 15:28:09.820000+00:00", 0),
        ("2020-01-30T15:28:09.820Z", 0),
        ("30.01.2020 17:28:09.820 GMT+0200", 120),
        ("2020-01-30 10:28:09.820-05:00", -300),
    ],
)
def test_time_with_its_own_offset_keeps_it(text: str, offset_min: int) -> None:
    _, offset = parse_wall_time(text)
    assert offset == offset_min * 60_000
    assert ZoneConverter(resolve_zone("Asia/Tokyo")).parse(text) == _ms(2020, 1, 30, 15, 28, 9) + 820


@pytest.mark.parametrize(
    "text", ["2020-13-01 00:00:00", "2020-02-30 00:00:00", "2020-01-01 24:00:00", "noon"]
)
def test_impossible_time_is_unparsable(text: str) -> None:
    with pytest.raises(BadRow, match="unparsable_time"):
        parse_wall_time(text)


def test_repeated_dst_hour_of_a_time_ordered_export_reads_as_two_passes() -> None:
    # Athens leaves summer time on 2020-10-25 04:00 EEST -> 03:00 EET: wall 03:00-03:59 happens twice.
    conv = ZoneConverter(resolve_zone("Europe/Athens"))
    walls = [
        "2020-10-25 02:59:00",
        "2020-10-25 03:30:00",
        "2020-10-25 03:10:00",
        "2020-10-25 03:40:00",
        "2020-10-25 04:00:00",
    ]
    got = [conv.parse(w) for w in walls]
    assert got == [
        _ms(2020, 10, 24, 23, 59),
        _ms(2020, 10, 25, 0, 30),  # first pass, UTC+3
        _ms(2020, 10, 25, 1, 10),  # second pass, UTC+2
        _ms(2020, 10, 25, 1, 40),
        _ms(2020, 10, 25, 2, 0),
    ]


def test_zone_names_and_offsets_resolve_and_unknown_ones_say_what_to_use() -> None:
    assert resolve_zone("+02:00").utcoffset(None) == timedelta(hours=2)
    assert resolve_zone("UTC-5").utcoffset(None) == timedelta(hours=-5)
    assert resolve_zone("Etc/GMT-2").utcoffset(datetime(2020, 1, 1)) == timedelta(hours=2)
    with pytest.raises(BadInputError, match="IANA name such as Europe/Athens"):
        resolve_zone("Mars/Olympus")


# -- formats --------------------------------------------------------------------------------------------


def test_histdata_sample_is_est_without_dst(shared_data: Path) -> None:
    rows, parser = parse(shared_data / "histdata_EURUSD_T_20200101_sample.csv", "histdata")
    assert len(rows) == 9_500
    assert parser.bad.total == 0
    # 2020-01-01 17:00:00.065 EST (UTC-5, also in summer: HistData ignores DST) = 22:00:00.065 UTC
    assert rows[0] == (
        1,
        Tick(
            feed="F",
            symbol="EURUSD",
            time_msc=_ms(2020, 1, 1, 22) + 65,
            bid=1_121_200_000,
            ask=1_121_720_000,
            flags=6,
        ),
    )


def test_mt5_tick_export_in_utf16_with_empty_cells_carries_the_unchanged_side(tmp_path: Path) -> None:
    rows, parser = parse(mt5_tick_export(tmp_path), "mt5", zone="Etc/GMT-2")
    assert parser.bad.total == 0
    assert parser.separator == "\t"
    ticks = [t for _, t in rows]
    assert [(t.time_msc, t.bid, t.ask, t.flags) for t in ticks[:3]] == [
        (_ms(2020, 1, 30, 15, 28, 9) + 820, 1_102_810_000, 1_102_850_000, 6),
        (_ms(2020, 1, 30, 15, 28, 9) + 900, 1_102_810_000, 1_102_860_000, 4),  # bid unchanged
        (_ms(2020, 1, 30, 15, 28, 10) + 15, 1_102_800_000, 1_102_860_000, 2),  # ask unchanged
    ]
    assert ticks[-1].time_msc == _ms(2020, 1, 30, 23)  # 01:00 broker time the next day


def test_mt5_without_zone_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"pass --tz, e\.g\. --tz Etc/GMT-2"):
        parse(mt5_tick_export(tmp_path), "mt5")


def test_mt5_row_with_an_empty_side_and_nothing_to_repeat_is_missing_price(tmp_path: Path) -> None:
    path = mt5_tick_export(
        tmp_path,
        [
            ("2020.01.30", "10:00:00.000", "", "1.1", "", "", "4"),
            ("2020.01.30", "10:00:00.100", "1.0", "", "", "", "2"),
        ],
    )
    rows, parser = parse(path, "mt5", zone="UTC")
    assert parser.bad.counts == {"missing_price": 1}
    assert parser.bad.lines == {"missing_price": [2]}
    assert [(t.bid, t.ask) for _, t in rows] == [(1_000_000_000, 1_100_000_000)]  # the ask of line 2


def test_dukascopy_native_export_has_ask_before_bid(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_Ticks.csv"
    path.write_text(
        "Gmt time,Ask,Bid,AskVolume,BidVolume\n30.01.2020 15:28:09.820,1.10285,1.10281,1.5,2.25\n"
    )
    ((_, tick),) = parse(path, "dukascopy")[0]
    assert (tick.time_msc, tick.bid, tick.ask) == (
        _ms(2020, 1, 30, 15, 28, 9) + 820,
        1_102_810_000,
        1_102_850_000,
    )


def test_dukascopy_sample_reads_by_header(shared_data: Path) -> None:
    rows, parser = parse(shared_data / "dukascopy_USDJPY_ticks_20190101.csv", "dukascopy", symbol="USDJPY")
    assert len(rows) == 10_000
    assert parser.bad.total == 0
    assert (rows[0][1].bid, rows[0][1].ask) == (109_676_000_000, 109_687_000_000)


@pytest.mark.parametrize(("pair", "other"), [("EUR/USD", "GBP/USD"), ("EURUSD", "GBPUSD")])
def test_truefx_native_headerless_rows_with_the_pair_first(tmp_path: Path, pair: str, other: str) -> None:
    path = tmp_path / "EURUSD-2020-01.csv"
    path.write_text(
        f"{pair},20200130 15:28:09.820,1.10281,1.10285\n"
        f"{pair},20200130 15:28:09.900,1.1028,1.1029\n"
        f"{other},20200130 15:28:10.000,1.3,1.31\n"
    )
    rows, parser = parse(path, "truefx")
    assert [(t.time_msc, t.bid) for _, t in rows] == [
        (_ms(2020, 1, 30, 15, 28, 9) + 820, 1_102_810_000),
        (_ms(2020, 1, 30, 15, 28, 9) + 900, 1_102_800_000),
    ]
    assert parser.bad.lines == {"other_symbol": [3]}


def test_csv_with_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("Date;Time;Bid;Ask\n2020-01-30;17:28:09.820;1,10281;1,10285\n")
    ((_, tick),) = parse(path, "csv", zone="Europe/Berlin")[0]
    assert (tick.time_msc, tick.bid, tick.ask) == (
        _ms(2020, 1, 30, 16, 28, 9) + 820,
        1_102_810_000,
        1_102_850_000,
    )


def test_csv_columns_by_number_with_epoch_milliseconds_detected(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("1.1,1580398089820,1.2\n")
    options = CsvOptions(time_col="2", bid_col="1", ask_col="3")
    ((_, tick),) = parse(path, "csv", options=options)[0]
    assert (tick.time_msc, tick.bid, tick.ask) == (1_580_398_089_820, 1_100_000_000, 1_200_000_000)


def test_csv_with_a_strptime_pattern_and_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("when\tb\ta\n01/30/2020 10:28:09.820\t1.1\t1.2\n")
    options = CsvOptions(time_col="when", bid_col="b", ask_col="a", time_format="%m/%d/%Y %H:%M:%S.%f")
    ((_, tick),) = parse(path, "csv", options=options, zone="America/New_York")[0]
    assert tick.time_msc == _ms(2020, 1, 30, 15, 28, 9) + 820


def test_csv_column_not_in_the_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("time,bid,ask\n2020-01-30 15:28:09,1.1,1.2\n")
    with pytest.raises(BadInputError, match="--bid-col 'BID price' is not in the header"):
        parse(path, "csv", options=CsvOptions(bid_col="BID price"))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-16-le"])
def test_encodings_and_gzip_are_read_transparently(tmp_path: Path, encoding: str) -> None:
    text = "timestamp,bid,ask\r\n2020-01-30 15:28:09.820,1.10281,1.10285\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(data))
    rows, parser = parse(path, "truefx")
    assert parser.bad.total == 0
    assert [t.bid for _, t in rows] == [1_102_810_000]


def test_garbage_rows_are_counted_by_reason_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "dirty.csv"
    path.write_bytes(
        b"timestamp,bid,ask\n"
        b"2020-01-30 15:28:09.820,1.10281,1.10285\n"  # 2 good
        b"yesterday,1.1,1.2\n"  # 3
        b"2020-01-30 15:28:10.000,1.1x,1.2\n"  # 4
        b"2020-01-30 15:28:10.100\n"  # 5
        b"\n"  # blank lines are not rows
        b"2020-01-30 15:28:10.200,1.1,\n"  # 7
        b"\xff\xfe\x00garbage,\x01,\x02\n"  # 8: undecodable bytes do not stop the file
        b"2020-01-30 15:28:10.300,1.10282,1.10286\n"  # 9 good
    )
    rows, parser = parse(path, "dukascopy")
    assert [line for line, _ in rows] == [2, 9]
    assert parser.bad.counts == {"unparsable_time": 2, "bad_price": 1, "missing_field": 2}
    assert parser.bad.lines == {"unparsable_time": [3, 8], "bad_price": [4], "missing_field": [5, 7]}
