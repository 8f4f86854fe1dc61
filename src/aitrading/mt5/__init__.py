"""MetaTrader5-compatible API: the package's functions, constants and result types, over any terminal.

`import aitrading.mt5 as mt5` reads like the official `MetaTrader5` package once a terminal is selected
with `mt5.use(...)`: the simulated terminal (`SimulatedTerminal`), the real package on Windows
(`RealTerminal`) or a Wine terminal through mt5linux (`Mt5LinuxTerminal`). The two real adapters load
lazily, so importing this package never needs `MetaTrader5` or `mt5linux`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aitrading.mt5 import api, constants
from aitrading.mt5.api import *  # noqa: F403 - the MetaTrader5 function names, listed in api.__all__
from aitrading.mt5.constants import *  # noqa: F403 - the package's flat namespace of constants
from aitrading.mt5.sim import ReplayTickSource, SimAccount, SimulatedTerminal, SyntheticTickSource
from aitrading.mt5.specs import DEFAULT_PROFILES, DEFAULT_SPECS, SyntheticProfile, default_specs
from aitrading.mt5.terminal import Terminal
from aitrading.mt5.types import (
    RATE_DTYPE,
    TICK_DTYPE,
    AccountInfo,
    OrderCheckResult,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
    TradeRequest,
)

if TYPE_CHECKING:
    from aitrading.mt5.real import Mt5LinuxTerminal, Mt5PackageMissingError, RealTerminal

_LAZY = frozenset({"Mt5LinuxTerminal", "Mt5PackageMissingError", "RealTerminal"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from aitrading.mt5 import real

        return getattr(real, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_PROFILES",
    "DEFAULT_SPECS",
    "RATE_DTYPE",
    "TICK_DTYPE",
    "AccountInfo",
    "Mt5LinuxTerminal",
    "Mt5PackageMissingError",
    "OrderCheckResult",
    "OrderSendResult",
    "RealTerminal",
    "ReplayTickSource",
    "SimAccount",
    "SimulatedTerminal",
    "SymbolInfo",
    "SyntheticProfile",
    "SyntheticTickSource",
    "Terminal",
    "TerminalInfo",
    "Tick",
    "TradeDeal",
    "TradeOrder",
    "TradePosition",
    "TradeRequest",
    "default_specs",
]
__all__ += api.__all__
__all__ += constants.__all__
