"""The synthetic feed: deterministic per seed, shut at weekends, prices on the grid, sessions that differ."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mt5_helpers import EPOCH, HOUR_MS, MONDAY_MS, generate

from aitrading.common.errors import ConfigError
from aitrading.model.market import Tick as ModelTick
from aitrading.model.values import PRICE_DECIMALS
from aitrading.mt5 import DEFAULT_SPECS, SyntheticTickSource, default_specs
from aitrading.mt5.sim import market_hours

FRIDAY_20 = datetime(2024, 3, 8, 20, 0, tzinfo=UTC)
FRIDAY_20_MS = int((FRIDAY_20 - EPOCH).total_seconds()) * 1000


def test_same_seed_gives_the_same_ticks() -> None:
    assert generate("EURUSD", MONDAY_MS, MONDAY_MS + HOUR_MS, seed=3) == generate(
        "EURUSD", MONDAY_MS, MONDAY_MS + HOUR_MS, seed=3
    )


def test_different_seeds_give_different_ticks() -> None:
    one = generate("EURUSD", MONDAY_MS, MONDAY_MS + HOUR_MS, seed=1)
    two = generate("EURUSD", MONDAY_MS, MONDAY_MS + HOUR_MS, seed=2)
    assert [t.bid for t in one] != [t.bid for t in two]


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=HOUR_MS), max_size=12))
def test_ticks_do_not_depend_on_how_time_is_sliced(cuts: list[int]) -> None:
    whole = generate("GBPUSD", MONDAY_MS, MONDAY_MS + HOUR_MS, seed=11)
    source = SyntheticTickSource(seed=11, start_ms=MONDAY_MS)
    specs = default_specs("GBPUSD")
    pieces = []
    for cut in [*sorted(cuts), HOUR_MS]:
        pieces.extend(source.advance(MONDAY_MS + cut, specs).get("GBPUSD", []))
    assert pieces == whole


def test_symbols_walk_independently_of_which_others_are_listed() -> None:
    alone = SyntheticTickSource(seed=5, start_ms=MONDAY_MS).advance(
        MONDAY_MS + HOUR_MS, default_specs("USDJPY")
    )
    together = SyntheticTickSource(seed=5, start_ms=MONDAY_MS).advance(MONDAY_MS + HOUR_MS, default_specs())
    assert alone["USDJPY"] == together["USDJPY"]


def test_no_ticks_from_friday_22_to_sunday_22_utc() -> None:
    ticks = generate("EURUSD", FRIDAY_20_MS, FRIDAY_20_MS + 3 * 24 * HOUR_MS)
    close_ms = FRIDAY_20_MS + 2 * HOUR_MS
    open_ms = close_ms + 48 * HOUR_MS
    assert ticks
    assert not [t for t in ticks if close_ms <= t.time_msc < open_ms]
    assert any(t.time_msc < close_ms for t in ticks)
    assert any(t.time_msc >= open_ms for t in ticks)
    assert all(market_hours.is_open(t.time_msc) for t in ticks)


def test_a_walk_started_on_saturday_begins_at_the_sunday_open() -> None:
    saturday_ms = FRIDAY_20_MS + 24 * HOUR_MS
    ticks = generate("EURUSD", saturday_ms, saturday_ms + 2 * 24 * HOUR_MS)
    assert ticks[0].time_msc >= FRIDAY_20_MS + 50 * HOUR_MS  # Sunday 22:00


@pytest.mark.parametrize("symbol", sorted(DEFAULT_SPECS))
def test_prices_sit_on_the_symbol_digits_with_bid_below_ask(symbol: str) -> None:
    spec = DEFAULT_SPECS[symbol]
    step = 10 ** (PRICE_DECIMALS - spec.digits)
    ticks = generate(symbol, MONDAY_MS, MONDAY_MS + 2 * HOUR_MS)
    assert len(ticks) > 500
    for tick in ticks:
        assert tick.bid % step == 0
        assert tick.ask % step == 0
        assert 0 < tick.bid < tick.ask
        assert tick.flags
        assert tick.flags & ~6 == 0
    times = [t.time_msc for t in ticks]
    assert times == sorted(times)


def test_prices_start_near_the_profile_and_move_with_its_volatility() -> None:
    ticks = generate("EURUSD", MONDAY_MS, MONDAY_MS + 24 * HOUR_MS)
    first, last = ticks[0].bid / 10**PRICE_DECIMALS, ticks[-1].bid / 10**PRICE_DECIMALS
    assert abs(first - 1.085) < 0.001
    assert 0.0005 < max(t.bid for t in ticks) / 1e9 - min(t.bid for t in ticks) / 1e9 < 0.05
    assert abs(last / first - 1) < 0.03  # 7 % a year is ~0.45 % a day; 6 sigma is far inside


def _spreads_and_counts(ticks: list[ModelTick], start_hour: int, end_hour: int) -> tuple[float, int]:
    chosen = [t for t in ticks if start_hour <= (t.time_msc // HOUR_MS) % 24 < end_hour]
    return statistics.median(t.ask - t.bid for t in chosen), len(chosen)


def test_spreads_widen_in_asia_and_most_at_rollover_and_ticks_follow_the_session() -> None:
    ticks = generate("EURUSD", MONDAY_MS - 6 * HOUR_MS + 24 * HOUR_MS, MONDAY_MS + 42 * HOUR_MS)  # Tue 00-24
    overlap_spread, overlap_count = _spreads_and_counts(ticks, 12, 16)
    london_spread, london_count = _spreads_and_counts(ticks, 7, 11)
    asia_spread, asia_count = _spreads_and_counts(ticks, 1, 5)
    rollover_spread, rollover_count = _spreads_and_counts(ticks, 21, 22)
    assert overlap_spread <= london_spread < asia_spread < rollover_spread
    assert rollover_spread >= 3 * london_spread
    assert overlap_count > london_count > asia_count  # same 4-hour spans
    assert rollover_count < asia_count / 4


def test_a_symbol_without_a_profile_is_a_config_error_naming_it() -> None:
    from aitrading.model.symbols import SymbolSpec

    spec = SymbolSpec(
        name="BTCUSD",
        digits=2,
        contract_size=Decimal(1),
        currency_base="BTC",
        currency_profit="USD",
        currency_margin="USD",
    )
    with pytest.raises(ConfigError, match="BTCUSD"):
        SyntheticTickSource(start_ms=MONDAY_MS).advance(MONDAY_MS + 1000, {"BTCUSD": spec})


def test_without_a_start_the_walk_begins_at_the_first_advance_minus_the_warmup() -> None:
    source = SyntheticTickSource(seed=1, warmup_s=3600)
    ticks = source.advance(MONDAY_MS + HOUR_MS, default_specs("EURUSD"))["EURUSD"]
    assert source.start_ms == MONDAY_MS
    assert ticks[0].time_msc < MONDAY_MS + 60_000
    assert ticks == generate("EURUSD", MONDAY_MS, MONDAY_MS + HOUR_MS, seed=1)


def test_market_hours_edges() -> None:
    close = FRIDAY_20_MS + 2 * HOUR_MS
    assert market_hours.is_open(close - 1)
    assert not market_hours.is_open(close)
    assert not market_hours.is_open(close + 47 * HOUR_MS)
    assert market_hours.is_open(close + 48 * HOUR_MS)
    assert market_hours.next_open_ms(close) == close + 48 * HOUR_MS
    assert market_hours.next_open_ms(close + 30 * HOUR_MS) == close + 48 * HOUR_MS
    assert market_hours.next_open_ms(MONDAY_MS) == MONDAY_MS
    assert market_hours.session_at(MONDAY_MS) is market_hours.ASIA
    assert market_hours.session_at(MONDAY_MS + 15 * HOUR_MS) is market_hours.ROLLOVER
    assert market_hours.next_change_ms(MONDAY_MS) == MONDAY_MS + HOUR_MS  # 07:00 London
    assert market_hours.next_change_ms(MONDAY_MS + 16 * HOUR_MS + 5) == MONDAY_MS + 18 * HOUR_MS  # midnight


def test_always_open_source_ticks_through_the_weekend_and_rate_factor_scales_arrivals() -> None:
    from aitrading.mt5.sim import SyntheticTickSource
    from aitrading.mt5.specs import DEFAULT_SPECS

    saturday_noon = 1_763_812_800_000  # 2025-11-22 12:00 UTC
    specs = {"EURUSD": DEFAULT_SPECS["EURUSD"]}
    closed = SyntheticTickSource(seed=1, start_ms=saturday_noon)
    assert closed.advance(saturday_noon + 600_000, specs) == {}
    slow = SyntheticTickSource(seed=1, start_ms=saturday_noon, always_open=True)
    fast = SyntheticTickSource(seed=1, start_ms=saturday_noon, always_open=True, rate_factor=4.0)
    n_slow = len(slow.advance(saturday_noon + 600_000, specs)["EURUSD"])
    n_fast = len(fast.advance(saturday_noon + 600_000, specs)["EURUSD"])
    assert n_slow > 0
    assert n_fast > 2 * n_slow
