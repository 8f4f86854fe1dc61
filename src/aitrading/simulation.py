"""The development feed: a simulated MT5 terminal read by a PC agent that streams to the data bridge.

`aitrading up` runs it in process; `aitrading agent run` (and `up --split`) runs it as its own process. It is
the same agent code that runs beside a real terminal; only the terminal is simulated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aitrading.agent.simulated import build_simulated_terminal, replayed_symbols
from aitrading.common.clock import Clock
from aitrading.common.config import PlatformConfig

__all__ = ["start_simulated_agent"]


async def start_simulated_agent(
    config: PlatformConfig, clock: Clock, *, status_api: bool = True
) -> Callable[[], Awaitable[None]]:
    """Start a simulated terminal and an agent streaming it; return the coroutine function that stops them."""
    from aitrading.agent.service import Agent, TerminalFeed

    terminal = build_simulated_terminal(config, clock)
    agent = Agent(
        config.resolved_agent(),
        [
            TerminalFeed(
                feed=config.simulator.feed, terminal=terminal, symbols=replayed_symbols(config), offload=False
            )
        ],
        device_key=config.security.dev_device_key.get_secret_value(),
        clock=clock,
        status_api=status_api,
    )
    await agent.start()
    return agent.stop
