"""`Terminal`: the functions of the `MetaTrader5` module as the methods of one object.

A terminal is the real package (Windows), mt5linux (a Wine terminal over RPyC) or the simulated terminal;
code written against this protocol runs on all three. Methods keep the package's names, arguments and
error convention: on failure they return None (False for the boolean ones) and `last_error()` tells why as
`(code, message)` with a `RES_*` code.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from aitrading.mt5._internal import DateLike
from aitrading.mt5.types import (
    AccountInfo,
    OrderCheckResult,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
)

__all__ = ["DateLike", "Records", "Terminal"]

Records = npt.NDArray[np.void]
"""A numpy structured array with `TICK_DTYPE` or `RATE_DTYPE` rows."""


@runtime_checkable
class Terminal(Protocol):
    """The MetaTrader5 module's API, one instance per terminal connection."""

    # --- connection -------------------------------------------------------------------------------------
    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        """Connect to the terminal (and log in when `login` is given); return whether it worked."""
        ...

    def login(
        self, login: int, password: str | None = None, server: str | None = None, timeout: int | None = None
    ) -> bool:
        """Log in to a trading account; return whether it worked."""
        ...

    def shutdown(self) -> None:
        """Close the connection to the terminal."""
        ...

    def last_error(self) -> tuple[int, str]:
        """Return `(code, message)` of the last call: `(RES_S_OK, "Success")` or a `RES_E_*` code."""
        ...

    def version(self) -> tuple[int, int, str] | None:
        """Return `(version, build, release date)` of the terminal."""
        ...

    def terminal_info(self) -> TerminalInfo | None:
        """Return the terminal's state and settings."""
        ...

    def account_info(self) -> AccountInfo | None:
        """Return the logged-in trading account."""
        ...

    # --- symbols and market data ------------------------------------------------------------------------
    def symbols_total(self) -> int | None:
        """Return how many symbols the terminal knows."""
        ...

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        """Return the symbols matching `group` (`"*USD*"`, `"*,!*JPY*"`; all when None)."""
        ...

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        """Return every property of `symbol`."""
        ...

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        """Return the last tick of `symbol`."""
        ...

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        """Add `symbol` to Market Watch (or remove it); return whether it worked."""
        ...

    def copy_ticks_from(self, symbol: str, date_from: DateLike, count: int, flags: int) -> Records | None:
        """Return up to `count` ticks with `time_msc` at or after `date_from`, oldest first."""
        ...

    def copy_ticks_range(
        self, symbol: str, date_from: DateLike, date_to: DateLike, flags: int
    ) -> Records | None:
        """Return the ticks with `time_msc` in `[date_from, date_to]`, oldest first."""
        ...

    def copy_rates_from(self, symbol: str, timeframe: int, date_from: DateLike, count: int) -> Records | None:
        """Return the `count` bars opened at or before `date_from`, oldest first."""
        ...

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Records | None:
        """Return `count` bars ending `start_pos` bars before the current one (0 = current), oldest first."""
        ...

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: DateLike, date_to: DateLike
    ) -> Records | None:
        """Return the bars opened in `[date_from, date_to]`, oldest first."""
        ...

    # --- trading ----------------------------------------------------------------------------------------
    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        """Return the margin, in account currency, an `ORDER_TYPE_*` `action` would need."""
        ...

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float | None:
        """Return the profit, in account currency, of a trade from `price_open` to `price_close`."""
        ...

    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        """Check whether a trade request would be accepted, without sending it."""
        ...

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        """Send a trade request to the trade server."""
        ...

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        """Return the open positions, filtered by symbol, group mask or ticket."""
        ...

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        """Return the active (pending) orders, filtered by symbol, group mask or ticket."""
        ...

    def history_orders_get(
        self,
        date_from: DateLike | None = None,
        date_to: DateLike | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        """Return orders from the history, by time range (and group), by ticket or by position."""
        ...

    def history_deals_get(
        self,
        date_from: DateLike | None = None,
        date_to: DateLike | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        """Return deals from the history, by time range (and group), by order ticket or by position."""
        ...
