"""The simulated MetaTrader 5 terminal: synthetic or replayed ticks over an injected clock."""

from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.broker import SimBroker
from aitrading.mt5.sim.sources import ReplayTickSource, SyntheticTickSource, TickSource
from aitrading.mt5.sim.terminal import SimulatedTerminal

__all__ = [
    "ExecutionSettings",
    "ReplayTickSource",
    "SimAccount",
    "SimBroker",
    "SimulatedTerminal",
    "SyntheticTickSource",
    "TickSource",
]
