"""Helpers shared by the terminals: dates as the package takes them, timeframe arithmetic, error texts."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from aitrading.mt5 import constants as c

__all__ = [
    "INVALID_PARAMS",
    "NOT_FOUND",
    "NO_IPC",
    "OK",
    "DateLike",
    "bucket_start",
    "is_timeframe",
    "timeframe_name",
    "to_ms",
]

DateLike = datetime | int | float
"""What the package accepts for a date: a `datetime` or seconds since the epoch."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DAY_S = 86_400
_WEEK_S = 7 * _DAY_S
_SUNDAY_OFFSET_S = 4 * _DAY_S  # 1970-01-01 was a Thursday; MT5 weeks open on Sunday 00:00

# Errors the simulated and forwarding terminals report through last_error(); texts follow the package's.
OK = (c.RES_S_OK, "Success")
NO_IPC = (c.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
NOT_FOUND = (c.RES_E_NOT_FOUND, "Terminal: Not found")
INVALID_PARAMS = (c.RES_E_INVALID_PARAMS, "Terminal: Invalid params")

_TIMEFRAMES: dict[int, str] = {
    value: name.removeprefix("TIMEFRAME_") for name, value in vars(c).items() if name.startswith("TIMEFRAME_")
}


def to_ms(value: object) -> int:
    """Return UTC epoch milliseconds of a package-style date.

    A `datetime` keeps its milliseconds (a naive one is read as UTC, the terminal's server time in the
    simulation); an `int` is whole seconds and a `float` fractional seconds, as the package takes them.
    Raise `TypeError` for anything else.
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _MS
    if isinstance(value, bool):
        raise TypeError("a date cannot be a bool")
    if isinstance(value, int | np.integer):
        return int(value) * 1000
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise TypeError(f"a date must be finite, got {value!r}")
        return math.floor(float(value) * 1000)
    raise TypeError(f"a date must be a datetime or seconds since the epoch, got {type(value).__name__}")


def is_timeframe(value: object) -> bool:
    """Tell whether `value` is one of the package's `TIMEFRAME_*` codes."""
    return isinstance(value, int) and not isinstance(value, bool) and value in _TIMEFRAMES


def timeframe_name(timeframe: int) -> str:
    """Return `M1`, `H4`, `MN1`, … for a timeframe code."""
    return _TIMEFRAMES[timeframe]


def _fixed_seconds(timeframe: int) -> int | None:
    """Return a timeframe's length in seconds, or None for MN1 (calendar months)."""
    if timeframe == c.TIMEFRAME_MN1:
        return None
    if timeframe == c.TIMEFRAME_W1:
        return _WEEK_S
    if timeframe & 0x4000:
        return (timeframe & 0x3FFF) * 3600
    return timeframe * 60


def bucket_start(times_s: npt.NDArray[np.int64], timeframe: int) -> npt.NDArray[np.int64]:
    """Return the open time of the `timeframe` bar each time (epoch seconds) falls in, like MT5.

    Intraday bars are aligned to midnight, weeks open on Sunday 00:00 and months on the 1st (server time,
    which is UTC in the simulation).
    """
    seconds = _fixed_seconds(timeframe)
    if seconds is None:
        months = times_s.astype("datetime64[s]").astype("datetime64[M]")
        return months.astype("datetime64[s]").astype(np.int64)
    if timeframe == c.TIMEFRAME_W1:
        return times_s - (times_s + _SUNDAY_OFFSET_S) % _WEEK_S
    return times_s - times_s % seconds
