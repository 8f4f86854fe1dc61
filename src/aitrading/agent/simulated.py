"""Simulated MT5 terminals for the agent: the synthetic market, or a history file replayed as live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aitrading.common.clock import Clock
from aitrading.common.config import PlatformConfig
from aitrading.common.errors import ConfigError

if TYPE_CHECKING:
    from aitrading.mt5.sim import SimulatedTerminal

__all__ = ["build_simulated_terminal", "replayed_symbols"]


def build_simulated_terminal(config: PlatformConfig, clock: Clock) -> SimulatedTerminal:
    """Return an initialized simulated terminal for the configured symbols."""
    from aitrading.mt5.sim import ExecutionSettings, SimAccount, SimulatedTerminal, SyntheticTickSource
    from aitrading.mt5.specs import DEFAULT_SPECS

    sim = config.simulator
    if sim.replay_file is not None:
        return _replay_terminal(config, clock)
    unknown = [s for s in sim.symbols if s not in DEFAULT_SPECS]
    if unknown:
        raise ConfigError(
            f"simulator.symbols: no spec for {', '.join(unknown)}; known: {', '.join(sorted(DEFAULT_SPECS))}"
        )
    source = SyntheticTickSource(
        seed=sim.seed,
        feed=sim.feed,
        warmup_s=5.0,
        always_open=sim.always_open,
        rate_factor=sim.rate_factor,
    )
    terminal = SimulatedTerminal(
        clock,
        [DEFAULT_SPECS[s] for s in sim.symbols],
        source,
        feed=sim.feed,
        seed=sim.seed,
        account=SimAccount.from_config(sim),
        execution=ExecutionSettings.from_config(sim),
    )
    terminal.initialize()
    return terminal


def _replay_terminal(config: PlatformConfig, clock: Clock) -> SimulatedTerminal:
    """A simulated terminal whose feed is a history file paced into the present (from 1 s after now)."""
    from aitrading.history.replay import iter_ticks, paced
    from aitrading.mt5.sim import ExecutionSettings, ReplayTickSource, SimAccount, SimulatedTerminal
    from aitrading.mt5.specs import DEFAULT_SPECS

    sim = config.simulator
    assert sim.replay_file is not None
    if not sim.replay_file.is_file():
        raise ConfigError(f"simulator.replay_file {sim.replay_file} does not exist")
    spec = DEFAULT_SPECS.get(sim.replay_symbol)
    if spec is None:
        raise ConfigError(
            f"simulator.replay_symbol {sim.replay_symbol!r} has no spec; "
            f"known: {', '.join(sorted(DEFAULT_SPECS))}"
        )
    ticks = iter_ticks(sim.replay_file, sim.replay_format, feed=sim.feed, symbol=spec.name, tz=sim.replay_tz)
    source = ReplayTickSource(paced(ticks, clock.now_ms() + 1_000, sim.replay_speed))
    terminal = SimulatedTerminal(
        clock,
        [spec],
        source,
        feed=sim.feed,
        seed=sim.seed,
        account=SimAccount.from_config(sim),
        execution=ExecutionSettings.from_config(sim),
    )
    terminal.initialize()
    return terminal


def replayed_symbols(config: PlatformConfig) -> tuple[str, ...]:
    """The symbols the simulated feed streams: the replayed one, or the configured synthetic ones."""
    sim = config.simulator
    return (sim.replay_symbol,) if sim.replay_file is not None else sim.symbols
