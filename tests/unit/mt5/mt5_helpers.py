"""Shared builders for the aitrading.mt5 tests: a clock on a known Monday and simulated terminals."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aitrading.common.clock import NS_PER_MS, TestClock
from aitrading.model.market import Tick as ModelTick
from aitrading.mt5 import ReplayTickSource, SimulatedTerminal, SyntheticTickSource, default_specs

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MONDAY = datetime(2024, 3, 4, 6, 0, tzinfo=UTC)  # Monday 06:00 UTC, late in the Asian session
MONDAY_MS = (MONDAY - EPOCH) // timedelta(milliseconds=1)
HOUR_MS = 3_600_000


def ms_datetime(ms: int) -> datetime:
    """Return the aware UTC datetime of `ms`, exact to the millisecond."""
    return EPOCH + timedelta(milliseconds=ms)


def clock_at(ms: int = MONDAY_MS) -> TestClock:
    return TestClock(ms * NS_PER_MS)


def synthetic_terminal(
    clock: TestClock,
    *symbols: str,
    seed: int = 7,
    start_ms: int = MONDAY_MS,
    **kwargs: Any,
) -> SimulatedTerminal:
    """Return an initialized simulated terminal over a synthetic feed starting at `start_ms`."""
    source = SyntheticTickSource(seed=seed, start_ms=start_ms)
    terminal = SimulatedTerminal(clock, default_specs(*(symbols or ("EURUSD",))), source, **kwargs)
    assert terminal.initialize()
    return terminal


def replay_terminal(
    clock: TestClock, ticks: Iterable[ModelTick], *symbols: str, **kwargs: Any
) -> SimulatedTerminal:
    terminal = SimulatedTerminal(
        clock, default_specs(*(symbols or ("EURUSD",))), ReplayTickSource(ticks), **kwargs
    )
    assert terminal.initialize()
    return terminal


def model_tick(ms: int, bid: str = "1.08500", ask: str = "1.08510", symbol: str = "EURUSD") -> ModelTick:
    from aitrading.model.values import price_raw

    return ModelTick(
        feed="REPLAY", symbol=symbol, time_msc=ms, bid=price_raw(bid), ask=price_raw(ask), flags=6
    )


def generate(symbol: str, start_ms: int, end_ms: int, *, seed: int = 7) -> list[ModelTick]:
    """Return every synthetic tick of `symbol` in `[start_ms, end_ms]`, straight from a fresh source."""
    source = SyntheticTickSource(seed=seed, start_ms=start_ms)
    ticks: list[ModelTick] = source.advance(end_ms, default_specs(symbol)).get(symbol, [])
    return ticks


def must(value: T | None) -> T:
    """Return `value`, failing the test when a terminal call returned None."""
    assert value is not None
    return value
