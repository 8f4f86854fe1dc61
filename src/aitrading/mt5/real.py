"""Terminals backed by a real MetaTrader 5: the `MetaTrader5` package (Windows) and `mt5linux` (Wine).

Both import their package only when constructed, so importing `aitrading.mt5` never needs them. Every
`Terminal` method forwards unchanged: results are the package's own named tuples and numpy arrays, which
carry the same fields as `aitrading.mt5.types`.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from aitrading.common.errors import OperationalError
from aitrading.mt5._internal import DateLike
from aitrading.mt5.terminal import Records
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

__all__ = ["Mt5LinuxTerminal", "Mt5PackageMissingError", "RealTerminal"]


class Mt5PackageMissingError(OperationalError):
    """The package that talks to a real MetaTrader 5 terminal is not installed here."""


def _import(package: str, hint: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise Mt5PackageMissingError(f"the {package!r} package is not installed: {hint}") from exc


class _ForwardingTerminal:
    """Forward every `Terminal` method to an object with the MetaTrader5 module's functions."""

    def __init__(self, mt5: Any) -> None:
        self._mt5 = mt5

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
        # The package rejects explicit None for its optional arguments, so pass only what was given.
        args = (path,) if path is not None else ()
        given = {"login": login, "password": password, "server": server, "timeout": timeout}
        kwargs: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
        if portable:
            kwargs["portable"] = True
        return bool(self._mt5.initialize(*args, **kwargs))

    def login(
        self, login: int, password: str | None = None, server: str | None = None, timeout: int | None = None
    ) -> bool:
        given = {"password": password, "server": server, "timeout": timeout}
        return bool(
            self._mt5.login(login, **{key: value for key, value in given.items() if value is not None})
        )

    def shutdown(self) -> None:
        self._mt5.shutdown()

    def last_error(self) -> tuple[int, str]:
        code, message = self._mt5.last_error()
        return int(code), str(message)

    def version(self) -> tuple[int, int, str] | None:
        result = self._mt5.version()
        return None if result is None else (int(result[0]), int(result[1]), str(result[2]))

    def terminal_info(self) -> TerminalInfo | None:
        return cast("TerminalInfo | None", self._mt5.terminal_info())

    def account_info(self) -> AccountInfo | None:
        return cast("AccountInfo | None", self._mt5.account_info())

    def symbols_total(self) -> int | None:
        return cast("int | None", self._mt5.symbols_total())

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        if group is None:
            return cast("tuple[SymbolInfo, ...] | None", self._mt5.symbols_get())
        return cast("tuple[SymbolInfo, ...] | None", self._mt5.symbols_get(group=group))

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        return cast("SymbolInfo | None", self._mt5.symbol_info(symbol))

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        return cast("Tick | None", self._mt5.symbol_info_tick(symbol))

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        return bool(self._mt5.symbol_select(symbol, enable))

    def copy_ticks_from(self, symbol: str, date_from: DateLike, count: int, flags: int) -> Records | None:
        return cast("Records | None", self._mt5.copy_ticks_from(symbol, date_from, count, flags))

    def copy_ticks_range(
        self, symbol: str, date_from: DateLike, date_to: DateLike, flags: int
    ) -> Records | None:
        return cast("Records | None", self._mt5.copy_ticks_range(symbol, date_from, date_to, flags))

    def copy_rates_from(self, symbol: str, timeframe: int, date_from: DateLike, count: int) -> Records | None:
        return cast("Records | None", self._mt5.copy_rates_from(symbol, timeframe, date_from, count))

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Records | None:
        return cast("Records | None", self._mt5.copy_rates_from_pos(symbol, timeframe, start_pos, count))

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: DateLike, date_to: DateLike
    ) -> Records | None:
        return cast("Records | None", self._mt5.copy_rates_range(symbol, timeframe, date_from, date_to))

    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        return cast("float | None", self._mt5.order_calc_margin(action, symbol, volume, price))

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float | None:
        result = self._mt5.order_calc_profit(action, symbol, volume, price_open, price_close)
        return cast("float | None", result)

    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        return cast("OrderCheckResult | None", self._mt5.order_check(request))

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        return cast("OrderSendResult | None", self._mt5.order_send(request))

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        kwargs = _given(symbol=symbol, group=group, ticket=ticket)
        return cast("tuple[TradePosition, ...] | None", self._mt5.positions_get(**kwargs))

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        kwargs = _given(symbol=symbol, group=group, ticket=ticket)
        return cast("tuple[TradeOrder, ...] | None", self._mt5.orders_get(**kwargs))

    def history_orders_get(
        self,
        date_from: DateLike | None = None,
        date_to: DateLike | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        args = (date_from, date_to) if date_from is not None and date_to is not None else ()
        kwargs = _given(group=group, ticket=ticket, position=position)
        return cast("tuple[TradeOrder, ...] | None", self._mt5.history_orders_get(*args, **kwargs))

    def history_deals_get(
        self,
        date_from: DateLike | None = None,
        date_to: DateLike | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        args = (date_from, date_to) if date_from is not None and date_to is not None else ()
        kwargs = _given(group=group, ticket=ticket, position=position)
        return cast("tuple[TradeDeal, ...] | None", self._mt5.history_deals_get(*args, **kwargs))


def _given(**kwargs: Any) -> dict[str, Any]:
    return {key: value for key, value in kwargs.items() if value is not None}


class RealTerminal(_ForwardingTerminal):
    """The official `MetaTrader5` package talking to a terminal on the same Windows machine.

    `module` injects an object with the package's functions (tests, wrappers); by default the package is
    imported here, raising `Mt5PackageMissingError` with the fix when it is not installed.
    """

    def __init__(self, module: Any = None) -> None:
        if module is None:
            module = _import(
                "MetaTrader5",
                "it exists only for Windows; run `pip install MetaTrader5` on the machine with the MT5 "
                "terminal, use Mt5LinuxTerminal for a terminal under Wine, or the simulated terminal",
            )
        super().__init__(module)


class Mt5LinuxTerminal(_ForwardingTerminal):
    """A MetaTrader 5 terminal under Wine, reached through `mt5linux` (RPyC) at `host:port`.

    The Wine side runs the official package behind `python -m mt5linux` (default port 18812). `client`
    injects a ready `mt5linux.MetaTrader5`-like object; by default one is connected here, raising
    `Mt5PackageMissingError` with the fix when `mt5linux` is not installed.
    """

    def __init__(self, host: str = "localhost", port: int = 18812, *, client: Any = None) -> None:
        if client is None:
            package = _import(
                "mt5linux",
                "run `pip install mt5linux` here and start `python -m mt5linux` in the Wine Python that has "
                "the MetaTrader5 package, or use the simulated terminal",
            )
            client = package.MetaTrader5(host=host, port=port)
        self.host = host
        self.port = port
        super().__init__(client)
