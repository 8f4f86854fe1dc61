"""FX market hours of the simulation, in UTC: the weekly close and the intraday sessions.

The market trades from Sunday 22:00 to Friday 22:00 UTC. Each day splits into sessions that differ in how
often quotes arrive and how wide the spread is: thin in Asia, busiest in the London/New York overlap, and
widest around the 21:00-22:00 rollover when liquidity providers step back.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = [
    "ASIA",
    "LONDON",
    "NEW_YORK",
    "OVERLAP",
    "ROLLOVER",
    "Session",
    "is_open",
    "next_change_ms",
    "next_open_ms",
    "session_at",
]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS
_SUNDAY_OFFSET_MS = 4 * _DAY_MS  # 1970-01-01 was a Thursday
_WEEK_OPEN_MS = 22 * _HOUR_MS  # Sunday 22:00, counted from Sunday 00:00
_WEEK_CLOSE_MS = 5 * _DAY_MS + 22 * _HOUR_MS  # Friday 22:00


@dataclass(frozen=True, slots=True)
class Session:
    """An intraday session: its name, spread multiplier and tick-rate multiplier."""

    name: str
    spread_factor: float
    rate_factor: float


ASIA = Session("asia", spread_factor=1.6, rate_factor=0.35)
LONDON = Session("london", spread_factor=1.0, rate_factor=1.0)
OVERLAP = Session("london-new-york", spread_factor=0.9, rate_factor=1.4)
NEW_YORK = Session("new-york", spread_factor=1.2, rate_factor=0.6)
ROLLOVER = Session("rollover", spread_factor=4.0, rate_factor=0.15)

# Session starting at each boundary hour; the list covers a whole UTC day.
_BOUNDARY_HOURS = (0, 7, 12, 16, 21, 22)
_SESSIONS = (ASIA, LONDON, OVERLAP, NEW_YORK, ROLLOVER, ASIA)
_BOUNDARIES_MS = tuple(hour * _HOUR_MS for hour in _BOUNDARY_HOURS)


def _week_ms(ms: int) -> int:
    return (ms + _SUNDAY_OFFSET_MS) % _WEEK_MS


def is_open(ms: int) -> bool:
    """Tell whether the market trades at `ms` (UTC epoch milliseconds)."""
    in_week = _week_ms(ms)
    return _WEEK_OPEN_MS <= in_week < _WEEK_CLOSE_MS


def next_open_ms(ms: int) -> int:
    """Return `ms` when the market is open, else the coming Sunday 22:00."""
    if is_open(ms):
        return ms
    in_week = _week_ms(ms)
    if in_week >= _WEEK_CLOSE_MS:
        return ms - in_week + _WEEK_MS + _WEEK_OPEN_MS
    return ms - in_week + _WEEK_OPEN_MS


def session_at(ms: int) -> Session:
    """Return the session in force at `ms` (meaningful while the market is open)."""
    index = bisect.bisect_right(_BOUNDARIES_MS, ms % _DAY_MS) - 1
    return _SESSIONS[index]


def next_change_ms(ms: int) -> int:
    """Return the first time after `ms` at which the session may change (a boundary hour)."""
    in_day = ms % _DAY_MS
    day_start = ms - in_day
    index = bisect.bisect_right(_BOUNDARIES_MS, in_day)
    if index == len(_BOUNDARIES_MS):
        return day_start + _DAY_MS
    return day_start + _BOUNDARIES_MS[index]
