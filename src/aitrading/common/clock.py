"""Injected clocks: domain code asks a `Clock` for the time and never calls `datetime.now()`.

Time is UTC nanoseconds since the Unix epoch. `LiveClock` reads the system clock; `TestClock` is set and
advanced by tests and backtests so the same code runs over replayed time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "LiveClock", "TestClock", "ms_to_datetime", "ns_to_datetime"]

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


def ns_to_datetime(ns: int) -> datetime:
    """Return the aware UTC datetime for `ns` nanoseconds since the epoch (microsecond precision)."""
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, tz=UTC)


def ms_to_datetime(ms: int) -> datetime:
    """Return the aware UTC datetime for `ms` milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@runtime_checkable
class Clock(Protocol):
    """A source of UTC time."""

    def now_ns(self) -> int:
        """Return UTC nanoseconds since the epoch."""
        ...

    def now_ms(self) -> int:
        """Return UTC milliseconds since the epoch."""
        ...

    def utcnow(self) -> datetime:
        """Return the current time as an aware UTC datetime."""
        ...

    def monotonic_ns(self) -> int:
        """Return a monotonic nanosecond counter for measuring durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of this clock's time."""
        ...


class LiveClock:
    """The system clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def now_ms(self) -> int:
        return time.time_ns() // NS_PER_MS

    def utcnow(self) -> datetime:
        return ns_to_datetime(time.time_ns())

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TestClock:
    """A clock that moves only when told to; `sleep` advances it instead of waiting."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_ns: int = 1_704_067_200 * NS_PER_S) -> None:
        self._ns = start_ns

    def now_ns(self) -> int:
        return self._ns

    def now_ms(self) -> int:
        return self._ns // NS_PER_MS

    def utcnow(self) -> datetime:
        return ns_to_datetime(self._ns)

    def monotonic_ns(self) -> int:
        return self._ns

    def set_ns(self, ns: int) -> None:
        """Move the clock to `ns`; time never goes backwards."""
        if ns < self._ns:
            raise ValueError(f"TestClock cannot go back from {self._ns} to {ns}")
        self._ns = ns

    def advance(self, seconds: float = 0.0, *, ns: int = 0) -> None:
        """Move the clock forward by `seconds` plus `ns` nanoseconds."""
        self.set_ns(self._ns + int(seconds * NS_PER_S) + ns)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)
