"""Kill the bridge while an agent streams 1M ticks, restart it: the store holds every tick exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

from aitrading.agent.service import Agent, TerminalFeed
from aitrading.common.clock import LiveClock
from aitrading.common.config import AgentConfig, SecurityConfig
from aitrading.model.market import Tick
from aitrading.mt5.sim import ReplayTickSource, SimulatedTerminal
from aitrading.mt5.specs import DEFAULT_SPECS
from aitrading.testing.rig import SYMBOLS, BridgeProcess, synthetic_feed

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]

N = 1_000_000


def digest(ticks: list[tuple[str, int, int, int]]) -> str:
    h = hashlib.sha256()
    for row in sorted(ticks):
        h.update(repr(row).encode())
    return h.hexdigest()


COUNT_SCRIPT = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    from aitrading.storage.ticks import ChDBTickStore, next_tick_cursor
    async def main():
        store = ChDBTickStore(sys.argv[1])
        await store.start()
        rows = []
        for sym in sys.argv[2:]:
            after = None
            while True:
                page = await store.query_ticks("SIM", sym, 0, 2**62, limit=50_000, after=after)
                rows += [(t.symbol, t.time_msc, t.bid, t.ask) for t in page]
                after = next_tick_cursor(page, after)
                if len(page) < 50_000:
                    break
        await store.stop()
        h = hashlib.sha256()
        for row in sorted(rows):
            h.update(repr(row).encode())
        print(len(rows), h.hexdigest())
    asyncio.run(main())
    """
)


async def stream_with_a_crash(
    bridge: BridgeProcess, ticks: list[Tick], tmp_path: Path
) -> tuple[int, int, int]:
    """Stream `ticks` (times relative to 0) starting 1 s after the agent starts; return (offset, …)."""
    clock = LiveClock()
    offset = clock.now_ms() + 1_000  # the agent reads from "now" on, like beside a live terminal
    shifted = (msgspec.structs.replace(t, time_msc=t.time_msc + offset) for t in ticks)
    terminal = SimulatedTerminal(
        clock,
        [DEFAULT_SPECS[s] for s in SYMBOLS],
        ReplayTickSource(shifted),
        history_ticks=N,
        history_seconds=3600,
    )
    terminal.initialize()
    agent = Agent(
        AgentConfig(
            bridge_url=bridge.ws_url,
            buffer_path=tmp_path / "agent-buffer.sqlite",
            batch_max=2_000,
            flush_ms=20,
            poll_ms=5,
        ),
        [TerminalFeed(feed="SIM", terminal=terminal, symbols=SYMBOLS)],
        device_key=SecurityConfig().dev_device_key.get_secret_value(),
        clock=clock,
        backoff_base_s=0.1,
        backoff_cap_s=0.5,
    )
    await agent.start()
    killed_at = 0.0
    try:
        deadline = time.monotonic() + 300
        while bridge.metric("aitrading_bridge_store_ticks_written_total") < N // 4:
            assert time.monotonic() < deadline, "bridge never stored a quarter of the ticks"
            await asyncio.sleep(0.05)
        killed_at = bridge.metric("aitrading_bridge_store_ticks_written_total")
        bridge.kill()
        await asyncio.sleep(1.0)  # the agent keeps reading into its buffer meanwhile
        bridge.start()
        while True:
            status = await agent.status()
            assert time.monotonic() < deadline, f"agent did not drain: {status}"
            if status.ticks_read >= N and status.buffered_batches == 0:
                break
            await asyncio.sleep(0.1)
        reconnects = status.reconnects
    finally:
        await agent.stop()
    return offset, int(killed_at), reconnects


def test_bridge_killed_mid_stream_then_restarted_stores_every_tick_exactly_once(tmp_path: Path) -> None:
    ticks = synthetic_feed(N, 0, per_ms=200)
    bridge = BridgeProcess(tmp_path / "bridge")
    bridge.data_dir.mkdir()
    bridge.start()
    try:
        offset, killed_at, reconnects = asyncio.run(stream_with_a_crash(bridge, ticks, tmp_path))
    finally:
        assert bridge.stop() == 0
    assert 0 < killed_at < N
    assert reconnects >= 1
    result = subprocess.run(
        [sys.executable, "-c", COUNT_SCRIPT, str(bridge.data_dir / "chdb"), *SYMBOLS],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    count, stored_digest = result.stdout.strip().splitlines()[-1].split()
    assert int(count) == N
    assert stored_digest == digest([(t.symbol, t.time_msc + offset, t.bid, t.ask) for t in ticks])
