"""The simulated MetaTrader 5 terminal: synthetic or replayed ticks over an injected clock."""

from aitrading.mt5.sim.sources import ReplayTickSource, SyntheticTickSource, TickSource
from aitrading.mt5.sim.terminal import SimAccount, SimulatedTerminal

__all__ = ["ReplayTickSource", "SimAccount", "SimulatedTerminal", "SyntheticTickSource", "TickSource"]
