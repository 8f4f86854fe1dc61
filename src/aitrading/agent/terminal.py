"""What the agent needs from an MT5 terminal: the tick-reading subset of the `MetaTrader5` module.

The real package, mt5linux and the simulated terminal (`aitrading.mt5`) all satisfy `TickSource`
structurally, so the agent does not import any of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["COPY_TICKS_ALL", "TICK_DTYPE_FIELDS", "TickSource"]

COPY_TICKS_ALL = -1
"""MT5's `COPY_TICKS_ALL`: every tick (bid/ask and trade changes)."""

TICK_DTYPE_FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")
"""Fields of the numpy structured array `copy_ticks_from` returns, in MT5's order."""


@runtime_checkable
class TickSource(Protocol):
    """The part of the `MetaTrader5` module the streamer calls.

    `copy_ticks_from` returns a numpy structured array with the fields of `TICK_DTYPE_FIELDS` in
    `time_msc` order, or `None` on failure (then `last_error()` says why). `date_from` is an aware UTC
    datetime or integer seconds since the epoch.
    """

    def symbol_info_tick(self, symbol: str) -> Any:
        """Return the latest tick of `symbol` (a named tuple) or `None`."""
        ...

    def copy_ticks_from(self, symbol: str, date_from: datetime | int, count: int, flags: int) -> Any:
        """Return up to `count` ticks of `symbol` from `date_from` on, oldest first."""
        ...

    def symbols_get(self, *args: Any, **kwargs: Any) -> Any:
        """Return the terminal's symbols (named tuples with `name` and `visible`) or `None`."""
        ...

    def last_error(self) -> tuple[int, str]:
        """Return the code and description of the last failure."""
        ...
