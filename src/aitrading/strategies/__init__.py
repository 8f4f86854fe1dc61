"""Strategies: the versioned interface, the built-ins, user strategies by import path, the safe wrapper.

See `base` for the interface, docs/adr/0016-strategies-and-backtester.md for the design.
"""

from aitrading.strategies.base import (
    FLAT,
    INTERFACE_VERSION,
    LONG,
    SHORT,
    OrderIntent,
    Signal,
    Strategy,
    StrategyConfig,
    StrategyContext,
)
from aitrading.strategies.builtin import BollingerBreakout, MACross, RSIReversion
from aitrading.strategies.loader import BUILTIN, SafeStrategy, load_strategy
from aitrading.strategies.ml import MLProbability, ProbabilityModel

__all__ = [
    "BUILTIN",
    "FLAT",
    "INTERFACE_VERSION",
    "LONG",
    "SHORT",
    "BollingerBreakout",
    "MACross",
    "MLProbability",
    "OrderIntent",
    "ProbabilityModel",
    "RSIReversion",
    "SafeStrategy",
    "Signal",
    "Strategy",
    "StrategyConfig",
    "StrategyContext",
    "load_strategy",
]
