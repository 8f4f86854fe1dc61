"""Module-level functions with the `MetaTrader5` package's names, forwarding to the selected terminal.

`use(terminal)` selects the process-wide terminal; afterwards `import aitrading.mt5 as mt5` reads like the
real package::

    mt5.use(SimulatedTerminal(clock, specs, SyntheticTickSource(seed=7)))
    if not mt5.initialize():
        raise SystemExit(mt5.last_error())
    ticks = mt5.copy_ticks_from("EURUSD", since, 1000, mt5.COPY_TICKS_ALL)

Until a terminal is selected every function fails the package's way (None or False) and `last_error()`
says to call `use`. Services that hold more than one terminal keep `Terminal` objects instead.
"""

from __future__ import annotations

import threading
from typing import Any

from aitrading.mt5 import constants as c
from aitrading.mt5._internal import DateLike
from aitrading.mt5.terminal import Records, Terminal
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

__all__ = [
    "account_info",
    "copy_rates_from",
    "copy_rates_from_pos",
    "copy_rates_range",
    "copy_ticks_from",
    "copy_ticks_range",
    "current",
    "history_deals_get",
    "history_orders_get",
    "initialize",
    "last_error",
    "login",
    "order_calc_margin",
    "order_calc_profit",
    "order_check",
    "order_send",
    "orders_get",
    "positions_get",
    "shutdown",
    "symbol_info",
    "symbol_info_tick",
    "symbol_select",
    "symbols_get",
    "symbols_total",
    "terminal_info",
    "use",
    "version",
]

_NO_TERMINAL = (c.RES_E_INTERNAL_FAIL_CONNECT, "No terminal selected: call aitrading.mt5.use(terminal) first")
_lock = threading.Lock()
_terminal: Terminal | None = None


def use(terminal: Terminal | None) -> Terminal | None:
    """Select the terminal the module-level functions talk to (None deselects); return the previous one."""
    global _terminal
    with _lock:
        previous, _terminal = _terminal, terminal
    return previous


def current() -> Terminal | None:
    """Return the selected terminal, if any."""
    return _terminal


def initialize(
    path: str | None = None,
    *,
    login: int | None = None,
    password: str | None = None,
    server: str | None = None,
    timeout: int | None = None,
    portable: bool = False,
) -> bool:
    """Connect to the terminal (and log in when `login` is given); return whether it worked."""
    t = _terminal
    if t is None:
        return False
    return t.initialize(
        path, login=login, password=password, server=server, timeout=timeout, portable=portable
    )


def login(
    login: int, password: str | None = None, server: str | None = None, timeout: int | None = None
) -> bool:
    """Log in to a trading account; return whether it worked."""
    t = _terminal
    return False if t is None else t.login(login, password, server, timeout)


def shutdown() -> None:
    """Close the connection to the terminal."""
    t = _terminal
    if t is not None:
        t.shutdown()


def last_error() -> tuple[int, str]:
    """Return `(code, message)` of the last call on the selected terminal."""
    t = _terminal
    return _NO_TERMINAL if t is None else t.last_error()


def version() -> tuple[int, int, str] | None:
    """Return `(version, build, release date)` of the terminal."""
    t = _terminal
    return None if t is None else t.version()


def terminal_info() -> TerminalInfo | None:
    """Return the terminal's state and settings."""
    t = _terminal
    return None if t is None else t.terminal_info()


def account_info() -> AccountInfo | None:
    """Return the logged-in trading account."""
    t = _terminal
    return None if t is None else t.account_info()


def symbols_total() -> int | None:
    """Return how many symbols the terminal knows."""
    t = _terminal
    return None if t is None else t.symbols_total()


def symbols_get(group: str | None = None) -> tuple[SymbolInfo, ...] | None:
    """Return the symbols matching the `group` mask (all when None)."""
    t = _terminal
    return None if t is None else t.symbols_get(group)


def symbol_info(symbol: str) -> SymbolInfo | None:
    """Return every property of `symbol`."""
    t = _terminal
    return None if t is None else t.symbol_info(symbol)


def symbol_info_tick(symbol: str) -> Tick | None:
    """Return the last tick of `symbol`."""
    t = _terminal
    return None if t is None else t.symbol_info_tick(symbol)


def symbol_select(symbol: str, enable: bool = True) -> bool:
    """Add `symbol` to Market Watch (or remove it); return whether it worked."""
    t = _terminal
    return False if t is None else t.symbol_select(symbol, enable)


def copy_ticks_from(symbol: str, date_from: DateLike, count: int, flags: int) -> Records | None:
    """Return up to `count` ticks at or after `date_from`, oldest first."""
    t = _terminal
    return None if t is None else t.copy_ticks_from(symbol, date_from, count, flags)


def copy_ticks_range(symbol: str, date_from: DateLike, date_to: DateLike, flags: int) -> Records | None:
    """Return the ticks in `[date_from, date_to]`, oldest first."""
    t = _terminal
    return None if t is None else t.copy_ticks_range(symbol, date_from, date_to, flags)


def copy_rates_from(symbol: str, timeframe: int, date_from: DateLike, count: int) -> Records | None:
    """Return the `count` bars opened at or before `date_from`, oldest first."""
    t = _terminal
    return None if t is None else t.copy_rates_from(symbol, timeframe, date_from, count)


def copy_rates_from_pos(symbol: str, timeframe: int, start_pos: int, count: int) -> Records | None:
    """Return `count` bars ending `start_pos` bars before the current one, oldest first."""
    t = _terminal
    return None if t is None else t.copy_rates_from_pos(symbol, timeframe, start_pos, count)


def copy_rates_range(symbol: str, timeframe: int, date_from: DateLike, date_to: DateLike) -> Records | None:
    """Return the bars opened in `[date_from, date_to]`, oldest first."""
    t = _terminal
    return None if t is None else t.copy_rates_range(symbol, timeframe, date_from, date_to)


def order_calc_margin(action: int, symbol: str, volume: float, price: float) -> float | None:
    """Return the margin, in account currency, the order would need."""
    t = _terminal
    return None if t is None else t.order_calc_margin(action, symbol, volume, price)


def order_calc_profit(
    action: int, symbol: str, volume: float, price_open: float, price_close: float
) -> float | None:
    """Return the profit, in account currency, of a trade from `price_open` to `price_close`."""
    t = _terminal
    return None if t is None else t.order_calc_profit(action, symbol, volume, price_open, price_close)


def order_check(request: dict[str, Any]) -> OrderCheckResult | None:
    """Check whether a trade request would be accepted, without sending it."""
    t = _terminal
    return None if t is None else t.order_check(request)


def order_send(request: dict[str, Any]) -> OrderSendResult | None:
    """Send a trade request to the trade server."""
    t = _terminal
    return None if t is None else t.order_send(request)


def positions_get(
    *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
) -> tuple[TradePosition, ...] | None:
    """Return the open positions, filtered by symbol, group mask or ticket."""
    t = _terminal
    return None if t is None else t.positions_get(symbol=symbol, group=group, ticket=ticket)


def orders_get(
    *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
) -> tuple[TradeOrder, ...] | None:
    """Return the active orders, filtered by symbol, group mask or ticket."""
    t = _terminal
    return None if t is None else t.orders_get(symbol=symbol, group=group, ticket=ticket)


def history_orders_get(
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    *,
    group: str | None = None,
    ticket: int | None = None,
    position: int | None = None,
) -> tuple[TradeOrder, ...] | None:
    """Return orders from the history by time range, ticket or position."""
    t = _terminal
    if t is None:
        return None
    return t.history_orders_get(date_from, date_to, group=group, ticket=ticket, position=position)


def history_deals_get(
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    *,
    group: str | None = None,
    ticket: int | None = None,
    position: int | None = None,
) -> tuple[TradeDeal, ...] | None:
    """Return deals from the history by time range, order ticket or position."""
    t = _terminal
    if t is None:
        return None
    return t.history_deals_get(date_from, date_to, group=group, ticket=ticket, position=position)
