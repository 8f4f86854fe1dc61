"""The simulated terminal answers market-data calls like MT5, over time that moves only with its clock."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mt5_helpers import (
    HOUR_MS,
    MONDAY,
    MONDAY_MS,
    clock_at,
    generate,
    model_tick,
    ms_datetime,
    must,
    replay_terminal,
    synthetic_terminal,
)

import aitrading.mt5 as mt5
from aitrading.common.clock import TestClock
from aitrading.common.errors import ConfigError
from aitrading.model.values import price_raw
from aitrading.mt5 import SimulatedTerminal, SyntheticTickSource, default_specs

ALL = mt5.COPY_TICKS_ALL


def _rows(array: np.ndarray[Any, Any]) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in array.tolist()]


# --- connection and errors ---------------------------------------------------------------------------------


def test_calls_before_initialize_fail_with_no_ipc_connection() -> None:
    terminal = SimulatedTerminal(clock_at(), default_specs("EURUSD"), SyntheticTickSource(start_ms=MONDAY_MS))
    assert terminal.symbol_info_tick("EURUSD") is None
    assert terminal.last_error() == (mt5.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
    assert terminal.copy_ticks_from("EURUSD", MONDAY, 10, ALL) is None
    assert terminal.initialize() is True
    assert terminal.last_error() == (mt5.RES_S_OK, "Success")
    terminal.shutdown()
    assert terminal.account_info() is None


def test_unknown_symbol_and_bad_arguments_return_none_with_the_reason() -> None:
    clock = clock_at(MONDAY_MS + HOUR_MS)
    terminal = synthetic_terminal(clock)
    assert terminal.symbol_info("NOPE") is None
    assert terminal.last_error()[0] == mt5.RES_E_NOT_FOUND
    assert terminal.copy_rates_from_pos("EURUSD", 60, 0, 10) is None  # 60 is MT4's H1, not MT5's
    assert terminal.last_error()[0] == mt5.RES_E_INVALID_PARAMS
    assert terminal.copy_ticks_from("EURUSD", "yesterday", 10, ALL) is None
    assert terminal.last_error()[0] == mt5.RES_E_INVALID_PARAMS
    assert terminal.copy_ticks_from("EURUSD", MONDAY, 0, ALL) is None
    assert terminal.copy_ticks_from("EURUSD", MONDAY, 10, 99) is None
    assert terminal.copy_ticks_from("EURUSD", MONDAY, 10, ALL) is not None
    assert terminal.last_error() == (mt5.RES_S_OK, "Success")


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("order_send", ({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0},)),
        ("order_check", ({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0},)),
        ("order_calc_margin", (0, "EURUSD", 1.0, 1.085)),
        ("order_calc_profit", (0, "EURUSD", 1.0, 1.085, 1.086)),
        ("positions_get", ()),
        ("orders_get", ()),
        ("history_deals_get", (MONDAY, MONDAY)),
        ("history_orders_get", (MONDAY, MONDAY)),
    ],
)
def test_trading_calls_answer_once_connected_and_fail_with_no_ipc_before(
    method: str, args: tuple[object, ...]
) -> None:
    terminal = synthetic_terminal(clock_at(MONDAY_MS + HOUR_MS))
    terminal.shutdown()
    assert getattr(terminal, method)(*args) is None
    assert terminal.last_error() == (mt5.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
    assert terminal.initialize()
    assert getattr(terminal, method)(*args) is not None
    assert terminal.last_error() == (mt5.RES_S_OK, "Success")
    assert must(terminal.account_info()).trade_allowed is True
    assert must(terminal.terminal_info()).trade_allowed is True


def test_terminal_needs_symbols_and_positive_history_limits() -> None:
    source = SyntheticTickSource()
    with pytest.raises(ConfigError):
        SimulatedTerminal(clock_at(), {}, source)
    with pytest.raises(ConfigError):
        SimulatedTerminal(clock_at(), default_specs("EURUSD"), source, history_ticks=0)


# --- symbols -----------------------------------------------------------------------------------------------


def test_symbol_info_reports_the_spec_and_the_live_quote() -> None:
    terminal = synthetic_terminal(clock_at(MONDAY_MS + HOUR_MS), "EURJPY", "USDJPY", "XAUUSD")
    info = must(terminal.symbol_info("EURJPY"))
    tick = must(terminal.symbol_info_tick("EURJPY"))
    assert (info.name, info.digits, info.point, info.trade_contract_size) == ("EURJPY", 3, 0.001, 100_000.0)
    assert (info.currency_base, info.currency_profit, info.currency_margin) == ("EUR", "JPY", "EUR")
    assert (info.volume_min, info.volume_max, info.volume_step) == (0.01, 100.0, 0.01)
    assert info.trade_stops_level == 20
    assert (info.bid, info.ask, info.time) == (tick.bid, tick.ask, tick.time)
    assert info.spread == round((tick.ask - tick.bid) * 1000)
    assert info.bidlow <= info.bid <= info.bidhigh
    assert info.asklow <= info.ask <= info.askhigh
    usdjpy = must(terminal.symbol_info_tick("USDJPY"))
    assert info.trade_tick_value == pytest.approx(100_000 * 0.001 / ((usdjpy.bid + usdjpy.ask) / 2))
    gold = must(terminal.symbol_info("XAUUSD"))
    assert (gold.digits, gold.trade_contract_size, gold.trade_tick_value) == (2, 100.0, 1.0)


def test_symbols_get_filters_by_group_mask_and_select_is_reported() -> None:
    terminal = synthetic_terminal(clock_at(MONDAY_MS + 1000), *sorted(mt5.DEFAULT_SPECS))
    assert terminal.symbols_total() == 11
    assert {s.name for s in must(terminal.symbols_get("*JPY*"))} == {"USDJPY", "EURJPY", "GBPJPY", "AUDJPY"}
    assert {s.name for s in must(terminal.symbols_get("*,!*USD*"))} == {"EURJPY", "GBPJPY", "AUDJPY"}
    assert {s.name for s in must(terminal.symbols_get("EUR*,GBP*,!*JPY"))} == {"EURUSD", "GBPUSD"}
    assert terminal.symbol_select("EURUSD", False) is True
    assert must(terminal.symbol_info("EURUSD")).visible is False
    assert terminal.symbol_select("NOPE") is False


def test_symbol_info_tick_is_the_latest_tick_and_moves_only_with_the_clock() -> None:
    clock = clock_at(MONDAY_MS + HOUR_MS)
    terminal = synthetic_terminal(clock)
    first = must(terminal.symbol_info_tick("EURUSD"))
    assert must(terminal.symbol_info_tick("EURUSD")) == first
    truth = generate("EURUSD", MONDAY_MS, MONDAY_MS + HOUR_MS)
    assert first.time_msc == truth[-1].time_msc
    assert first.bid == truth[-1].bid / 1e9
    clock.advance(600)
    later = must(terminal.symbol_info_tick("EURUSD"))
    assert later.time_msc > first.time_msc
    assert later.time == later.time_msc // 1000


# --- ticks -------------------------------------------------------------------------------------------------


def test_copied_ticks_match_the_source_exactly() -> None:
    clock = clock_at(MONDAY_MS + HOUR_MS)
    terminal = synthetic_terminal(clock)
    ticks = must(terminal.copy_ticks_range("EURUSD", MONDAY, clock.utcnow(), ALL))
    assert ticks.dtype == mt5.TICK_DTYPE
    truth = generate("EURUSD", MONDAY_MS, MONDAY_MS + HOUR_MS)
    assert ticks["time_msc"].tolist() == [t.time_msc for t in truth]
    assert ticks["bid"].tolist() == [float(f"{t.bid / 1e9:.5f}") for t in truth]
    assert ticks["ask"].tolist() == [float(f"{t.ask / 1e9:.5f}") for t in truth]
    assert [price_raw(bid) for bid in ticks["bid"].tolist()] == [t.bid for t in truth]  # floats round-trip
    assert [price_raw(ask) for ask in ticks["ask"].tolist()] == [t.ask for t in truth]
    assert (ticks["time"] == ticks["time_msc"] // 1000).all()
    assert ticks["flags"].tolist() == [t.flags for t in truth]


@settings(max_examples=40, deadline=None)
@given(pick=st.integers(min_value=0, max_value=10**6), offset=st.sampled_from([-1, 0, 1]))
def test_copy_ticks_from_a_ms_datetime_returns_exactly_the_ticks_at_or_after_it(
    pick: int, offset: int
) -> None:
    clock = clock_at(MONDAY_MS + HOUR_MS)
    terminal = synthetic_terminal(clock)
    everything = must(terminal.copy_ticks_range("EURUSD", MONDAY, clock.utcnow(), ALL))
    since_ms = int(everything["time_msc"][pick % len(everything)]) + offset
    got = must(terminal.copy_ticks_from("EURUSD", ms_datetime(since_ms), 100_000, ALL))
    expected = everything[everything["time_msc"] >= since_ms]
    assert _rows(got) == _rows(expected)
    assert got["time_msc"][0] >= since_ms


def test_copy_ticks_from_takes_int_seconds_and_honours_count() -> None:
    clock = clock_at(MONDAY_MS + HOUR_MS)
    terminal = synthetic_terminal(clock)
    seconds = MONDAY_MS // 1000 + 600
    got = must(terminal.copy_ticks_from("EURUSD", seconds, 5, ALL))
    everything = must(terminal.copy_ticks_range("EURUSD", MONDAY, clock.utcnow(), ALL))
    assert _rows(got) == _rows(everything[everything["time_msc"] >= seconds * 1000][:5])
    assert _rows(must(terminal.copy_ticks_from("EURUSD", float(seconds), 5, ALL))) == _rows(got)


def test_copy_ticks_filters_info_and_trade_ticks() -> None:
    ticks = [model_tick(MONDAY_MS + i) for i in range(5)]
    trade_flags = mt5.TICK_FLAG_LAST | mt5.TICK_FLAG_VOLUME
    ticks.append(
        msgspec.structs.replace(
            ticks[0], time_msc=MONDAY_MS + 9, flags=trade_flags, last=ticks[0].bid, volume=10**8
        )
    )
    terminal = replay_terminal(clock_at(MONDAY_MS + 1000), ticks)
    assert len(must(terminal.copy_ticks_from("EURUSD", MONDAY, 100, ALL))) == 6
    assert len(must(terminal.copy_ticks_from("EURUSD", MONDAY, 100, mt5.COPY_TICKS_INFO))) == 5
    trades = must(terminal.copy_ticks_from("EURUSD", MONDAY, 100, mt5.COPY_TICKS_TRADE))
    assert trades["time_msc"].tolist() == [MONDAY_MS + 9]
    assert (trades["volume"][0], trades["volume_real"][0], trades["last"][0]) == (1, 1.0, 1.085)
    assert (
        len(
            must(terminal.copy_ticks_range("EURUSD", MONDAY, ms_datetime(MONDAY_MS + 3), mt5.COPY_TICKS_INFO))
        )
        == 4
    )


def _poll_everything(
    terminal: SimulatedTerminal, clock: TestClock, steps_ms: list[int], batch: int, start_ms: int
) -> list[tuple[Any, ...]]:
    """Poll like the PC agent: resume at the last time_msc, skip the ticks already taken at that ms."""
    seen: list[tuple[Any, ...]] = []
    cursor_ms, taken = start_ms, 0
    for step in [*steps_ms, 0]:
        clock.advance(ns=step * 1_000_000)
        while True:
            asked = taken + batch
            rows = _rows(must(terminal.copy_ticks_from("EURUSD", ms_datetime(cursor_ms), asked, ALL)))
            skipped = 0
            fresh = []
            for row in rows:
                time_msc: int = row[5]
                assert time_msc >= cursor_ms
                if time_msc == cursor_ms and skipped < taken:
                    skipped += 1
                    continue
                fresh.append(row)
            for row in fresh:
                taken = taken + 1 if row[5] == cursor_ms else 1
                cursor_ms = row[5]
            seen.extend(fresh)
            if len(rows) < asked:
                break
    return seen


@settings(max_examples=30, deadline=None)
@given(
    steps=st.lists(st.integers(min_value=0, max_value=120_000), min_size=1, max_size=40),
    batch=st.integers(min_value=1, max_value=50),
)
def test_polling_from_the_last_time_msc_reconstructs_the_synthetic_stream(
    steps: list[int], batch: int
) -> None:
    clock = clock_at(MONDAY_MS)
    terminal = synthetic_terminal(clock)
    seen = _poll_everything(terminal, clock, steps, batch, MONDAY_MS)
    end_ms = clock.now_ms()
    truth = must(terminal.copy_ticks_range("EURUSD", MONDAY, ms_datetime(end_ms), ALL))
    assert seen == _rows(truth)
    assert [row[5] for row in seen] == [t.time_msc for t in generate("EURUSD", MONDAY_MS, end_ms)]


@settings(max_examples=60, deadline=None)
@given(
    clusters=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.integers(min_value=1, max_value=5)),
        min_size=1,
        max_size=30,
    ),
    steps=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=40),
    batch=st.integers(min_value=1, max_value=4),
)
def test_polling_keeps_every_tick_that_shares_a_millisecond(
    clusters: list[tuple[int, int]], steps: list[int], batch: int
) -> None:
    ticks, ms, n = [], MONDAY_MS, 0
    for gap, size in clusters:
        ms += gap
        for _ in range(size):
            n += 1
            ticks.append(model_tick(ms, bid=f"1.{8000 + n:05d}", ask=f"1.{8010 + n:05d}"))
    clock = clock_at(MONDAY_MS - 1)
    terminal = replay_terminal(clock, ticks)
    seen = _poll_everything(terminal, clock, [*steps, 200], batch, MONDAY_MS)
    assert [(row[5], row[1]) for row in seen] == [(t.time_msc, t.bid / 1e9) for t in ticks]


# --- bars --------------------------------------------------------------------------------------------------

TIMEFRAME_SECONDS = {
    mt5.TIMEFRAME_M1: 60,
    mt5.TIMEFRAME_M5: 300,
    mt5.TIMEFRAME_M15: 900,
    mt5.TIMEFRAME_H1: 3600,
    mt5.TIMEFRAME_H4: 14400,
    mt5.TIMEFRAME_D1: 86400,
}


def _aggregate(ticks: np.ndarray[Any, Any], seconds: int, digits: int) -> list[tuple[Any, ...]]:
    """Build MT5 bars from ticks the plain way: bid OHLC, tick count, smallest spread in points."""
    bars: dict[int, list[Any]] = {}
    spreads: dict[int, list[int]] = defaultdict(list)
    for row in ticks.tolist():
        second, bid, ask = row[5] // 1000, row[1], row[2]
        key = second - second % seconds
        spreads[key].append(round((ask - bid) * 10**digits))
        if key not in bars:
            bars[key] = [key, bid, bid, bid, bid, 0, 0, 0]
        bar = bars[key]
        bar[2], bar[3], bar[4] = max(bar[2], bid), min(bar[3], bid), bid
        bar[5] += 1
    return [(*bar[:6], min(spreads[key]), 0) for key, bar in sorted(bars.items())]


@pytest.mark.parametrize("timeframe", sorted(TIMEFRAME_SECONDS))
def test_copy_rates_range_equals_an_independent_aggregation_of_the_ticks(timeframe: int) -> None:
    clock = clock_at(MONDAY_MS + 30 * HOUR_MS)
    terminal = synthetic_terminal(clock, "USDJPY", history_seconds=7 * 86_400)
    ticks = must(terminal.copy_ticks_range("USDJPY", MONDAY, clock.utcnow(), ALL))
    midnight = datetime(2024, 3, 4, tzinfo=UTC)
    rates = must(terminal.copy_rates_range("USDJPY", timeframe, midnight, clock.utcnow()))
    assert rates.dtype == mt5.RATE_DTYPE
    assert _rows(rates) == _aggregate(ticks, TIMEFRAME_SECONDS[timeframe], 3)


def test_copy_rates_from_and_from_pos_count_back_from_the_date_and_the_current_bar() -> None:
    clock = clock_at(MONDAY_MS + 5 * HOUR_MS + 30 * 60_000)
    terminal = synthetic_terminal(clock)
    h1 = must(terminal.copy_rates_range("EURUSD", mt5.TIMEFRAME_H1, MONDAY, clock.utcnow()))
    assert h1["time"].tolist() == [MONDAY_MS // 1000 + 3600 * i for i in range(6)]  # the last is forming
    assert _rows(must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 0, 2))) == _rows(h1[-2:])
    assert _rows(must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 1, 3))) == _rows(h1[-4:-1])
    assert _rows(must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 0, 100))) == _rows(h1)
    assert len(must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 10, 5))) == 0
    at_0830 = ms_datetime(MONDAY_MS + 2 * HOUR_MS + 30 * 60_000)
    assert _rows(must(terminal.copy_rates_from("EURUSD", mt5.TIMEFRAME_H1, at_0830, 2))) == _rows(h1[1:3])
    assert _rows(
        must(terminal.copy_rates_from("EURUSD", mt5.TIMEFRAME_H1, MONDAY_MS // 1000 + 7200, 1))
    ) == _rows(h1[2:3])


def test_weekly_and_monthly_bars_open_on_sunday_and_on_the_first() -> None:
    clock = clock_at(MONDAY_MS + 2 * HOUR_MS)
    terminal = synthetic_terminal(clock)
    weekly = must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_W1, 0, 5))
    monthly = must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_MN1, 0, 5))
    daily = must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_D1, 0, 5))
    assert weekly["time"].tolist() == [int(datetime(2024, 3, 3, tzinfo=UTC).timestamp())]
    assert monthly["time"].tolist() == [int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())]
    assert _rows(weekly)[0][1:] == _rows(monthly)[0][1:] == _rows(daily)[0][1:]


# --- bounded history ---------------------------------------------------------------------------------------


def test_history_keeps_a_bounded_window_of_ticks_but_longer_bars() -> None:
    clock = clock_at(MONDAY_MS)
    terminal = synthetic_terminal(clock, history_seconds=3600, history_ticks=2_000, history_m1_bars=600)
    for _ in range(24):  # 12 hours: 720 M1 bars and ~30,000 ticks pass through
        clock.advance(1800)
        terminal.symbol_info_tick("EURUSD")
    ticks = must(terminal.copy_ticks_from("EURUSD", MONDAY, 10**9, ALL))
    assert len(ticks) <= 2_000 + 1024
    assert ticks["time_msc"][0] >= clock.now_ms() - 3600_000 - 30 * 60_000
    m1 = must(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10**6))
    assert 600 <= len(m1) <= 600 + 64
    assert clock.now_ms() // 1000 - 120 <= m1["time"][-1] < clock.now_ms() // 1000  # no bar before its tick


def test_a_long_clock_jump_is_caught_up_and_still_bounded() -> None:
    clock = clock_at(MONDAY_MS)
    terminal = synthetic_terminal(clock, history_seconds=600, history_ticks=500)
    clock.advance(6 * 3600)
    ticks = must(terminal.copy_ticks_from("EURUSD", MONDAY, 10**9, ALL))
    assert 0 < len(ticks) <= 500 + 1024
    h1 = must(terminal.copy_rates_range("EURUSD", mt5.TIMEFRAME_H1, MONDAY, clock.utcnow()))
    assert len(h1) == 6  # 06:00 … 11:00; at 12:00:00.000 the 12:00 bar has no tick yet
    assert sum(h1["tick_volume"].tolist()) == len(generate("EURUSD", MONDAY_MS, clock.now_ms()))
