"""The HTTP-neutral parts of the history API: times, exact decimal text and cursors."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.common.errors import BadInputError
from aitrading.dbservice.history import (
    MAX_MS,
    decimal_string,
    decode_bar_cursor,
    decode_tick_cursor,
    encode_bar_cursor,
    encode_tick_cursor,
    iso_ms,
    iso_s,
    parse_time,
    point_raw_of,
    symbol_digits,
)
from aitrading.model.market import Timeframe
from aitrading.storage.ticks import TickCursor


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("1704153600123", 1_704_153_600_123),
        ("2024-01-02", 1_704_153_600_000),
        ("2024-01-02T00:00:00Z", 1_704_153_600_000),
        ("2024-01-02T00:00:00.123", 1_704_153_600_123),
        ("2024-01-02 02:00:00.123+02:00", 1_704_153_600_123),
        ("2024-01-02T00:00:00.123001Z", 1_704_153_600_124),  # below a millisecond rounds up
        (" 2024-01-02T00:00:00Z ", 1_704_153_600_000),
        ("9999-12-31T23:59:59.999Z", MAX_MS),
    ],
)
def test_times_parse_from_iso_or_epoch_ms_to_exact_utc_ms(text: str, ms: int) -> None:
    assert parse_time(text, "from") == ms


@pytest.mark.parametrize("text", ["", "soon", "-1", "1.5", "2024-13-01", "1969-12-31T23:59:59Z", "9" * 16])
def test_bad_times_are_rejected_naming_the_parameter(text: str) -> None:
    with pytest.raises(BadInputError, match=r"^to "):
        parse_time(text, "to")


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)))
def test_iso_ms_round_trips_through_parse_time(moment: datetime) -> None:
    ms = parse_time(moment.isoformat(), "from")
    micros = (moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert ms == -(-micros // 1000)
    assert parse_time(iso_ms(ms), "from") == ms


def test_iso_text_is_utc_with_z() -> None:
    assert iso_ms(1_704_153_600_005) == "2024-01-02T00:00:00.005Z"
    assert iso_s(1_704_153_660) == "2024-01-02T00:01:00Z"


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(min_value=0, max_value=9))
def test_decimal_string_is_the_exact_value_with_at_least_the_asked_places(raw: int, places: int) -> None:
    text = decimal_string(raw, min_places=places)
    assert Decimal(text) == Decimal(raw).scaleb(-9)
    assert "e" not in text.lower()
    decimals = text.partition(".")[2]
    assert len(decimals) >= places
    assert len(decimals) <= max(places, 9)


@pytest.mark.parametrize(
    ("raw", "places", "text"),
    [
        (1_085_000_000, 5, "1.08500"),
        (1_085_125_000, 5, "1.085125"),
        (100_000_000_000, 0, "100"),
        (-1_500_000_000, 2, "-1.50"),
        (0, 3, "0.000"),
        (0, 0, "0"),
        (1, 0, "0.000000001"),
    ],
)
def test_decimal_string_examples(raw: int, places: int, text: str) -> None:
    assert decimal_string(raw, min_places=places) == text


def test_digits_come_from_the_parameter_then_the_default_specifications() -> None:
    assert symbol_digits("EURUSD") == 5
    assert symbol_digits("EURUSD", 4) == 4
    assert symbol_digits("CUSTOM") is None
    assert point_raw_of(5) == 10_000
    assert point_raw_of(None) is None


@given(st.integers(0, MAX_MS), st.integers(0, 2**63 - 1))
def test_tick_cursors_round_trip(time_msc: int, skip: int) -> None:
    text = encode_tick_cursor(TickCursor(time_msc, skip))
    assert decode_tick_cursor(text, 0, MAX_MS) == (time_msc, skip)
    assert text.isascii()
    assert "=" not in text


@given(st.text(max_size=40))
def test_garbage_cursors_are_bad_input_never_a_crash(text: str) -> None:
    for decode in (
        lambda: decode_tick_cursor(text, 0, MAX_MS),
        lambda: decode_bar_cursor(text, Timeframe.M1, 0, MAX_MS // 1000),
    ):
        with contextlib.suppress(BadInputError):
            decode()


def test_bar_cursors_bind_their_timeframe_and_range() -> None:
    text = encode_bar_cursor(Timeframe.H1, 7200)
    assert decode_bar_cursor(text, Timeframe.H1, 0, 10_000) == 7200
    with pytest.raises(BadInputError, match="another timeframe"):
        decode_bar_cursor(text, Timeframe.M1, 0, 10_000)
    with pytest.raises(BadInputError, match="does not belong"):
        decode_bar_cursor(text, Timeframe.H1, 8000, 10_000)
    with pytest.raises(BadInputError, match="not a t cursor"):
        decode_tick_cursor(text, 0, MAX_MS)
