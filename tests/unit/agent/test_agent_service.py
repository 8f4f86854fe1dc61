"""The agent end to end: fake terminal → streamer → buffer → client → fake bridge; status API."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from agent_fakes import FakeBridge, FakeTerminal, eventually

from aitrading.agent.buffer import DurableBuffer
from aitrading.agent.service import Agent, TerminalFeed
from aitrading.agent.status import StatusServer, create_status_app
from aitrading.common import metrics
from aitrading.common.clock import LiveClock
from aitrading.common.config import AgentConfig
from aitrading.common.errors import ConfigError
from aitrading.common.lifecycle import ComponentState

DEVICE, KEY, FEED = "dev-1", "key-1", "Broker-Demo"
SRC = f"{DEVICE}/{FEED}"


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    server = await FakeBridge(DEVICE, KEY).start()
    yield server
    await server.stop()


def make_agent(
    tmp_path: Path,
    url: str,
    term: FakeTerminal,
    *,
    key: str = KEY,
    flush_ms: int = 10,
    status_api: bool = False,
) -> Agent:
    config = AgentConfig(
        bridge_url=url,
        device_id=DEVICE,
        batch_max=7,
        flush_ms=flush_ms,
        poll_ms=5,
        buffer_path=tmp_path / "agent-buffer.sqlite",
        status_port=0,
    )
    return Agent(
        config,
        [TerminalFeed(FEED, term)],
        device_key=key,
        clock=LiveClock(),
        status_api=status_api,
        drain_timeout_s=0.5,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        rng=random.Random(3),
    )


def push_burst(term: FakeTerminal, n: int, start: int) -> None:
    now = max([LiveClock().now_ms()] + [rows[-1][5] for rows in term.ticks.values() if rows])
    for i in range(n):
        symbol = "EURUSD" if i % 3 else "GBPUSD"
        term.push(symbol, now + i // 4, 1.1 + (start + i) / 1e5, 1.2 + (start + i) / 1e5)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"aitrading_{name}", labels) or 0.0


async def test_every_tick_of_the_terminal_reaches_the_bridge_once(tmp_path: Path, bridge: FakeBridge) -> None:
    term = FakeTerminal(("EURUSD", "GBPUSD"))
    agent = make_agent(tmp_path, bridge.url, term)
    read_before = sample("agent_ticks_read_total", src=SRC)
    reconnects_before = sample("agent_reconnects_total")
    bridge.on_frame = lambda conn, frame: "drop" if conn == 1 and frame.seq == 3 else "ack"
    bridge.max_batch_ticks = 5  # below the agent's batch_max of 7: the welcome lowers it
    await agent.start()
    await eventually(
        lambda: agent.client is not None and agent.client.state.value == "connected", what="link"
    )

    for burst in range(5):
        push_burst(term, 12, burst * 12)
        await asyncio.sleep(0.02)  # bursts land between and during polls
    await eventually(lambda: len(bridge.ticks(SRC)) == 60, what="all 60 ticks at the bridge")
    status = await agent.status()
    await agent.stop()

    got = sorted((t.symbol, t.time_msc, t.bid) for t in bridge.ticks(SRC))
    want = sorted((s, r[5], round(r[1] * 1e9)) for s, rows in term.ticks.items() for r in rows)
    assert got == want
    assert agent.state is ComponentState.STOPPED
    assert max(len(f.ticks) for f in bridge.stored.values()) <= 5
    assert status.link == "connected"
    assert status.ticks_read == 60
    assert status.sources[0].src == SRC
    assert sample("agent_ticks_read_total", src=SRC) - read_before == 60
    assert sample("agent_reconnects_total") - reconnects_before == 1
    assert DurableBuffer(tmp_path / "agent-buffer.sqlite").depth() == 0


async def test_stop_stores_the_partial_batch_for_the_next_run(tmp_path: Path) -> None:
    dead = await FakeBridge(DEVICE, KEY).start()
    await dead.stop()  # nothing listens there any more
    term = FakeTerminal(("EURUSD", "GBPUSD"))
    agent = make_agent(tmp_path, dead.url, term, flush_ms=60_000)
    await agent.start()
    push_burst(term, 5, 0)
    await eventually(lambda: agent.streamers[0].pending == 5, what="ticks read")

    await agent.stop()

    buf = DurableBuffer(tmp_path / "agent-buffer.sqlite")
    assert buf.depth_ticks() == 5
    assert buf.cursor(SRC, "EURUSD") is not None


async def test_batches_left_by_a_previous_run_are_delivered_after_restart(
    tmp_path: Path, bridge: FakeBridge
) -> None:
    term = FakeTerminal(("EURUSD", "GBPUSD"))
    bridge.on_frame = lambda conn, frame: "hold"  # the bridge never answers the first run
    first = make_agent(tmp_path, bridge.url, term)
    await first.start()
    push_burst(term, 20, 0)
    await eventually(lambda: len(bridge.received) >= 3, what="batches sent, never acked")
    await first.stop()
    left = DurableBuffer(tmp_path / "agent-buffer.sqlite")
    assert left.depth_ticks() == 20
    left.close()

    bridge.on_frame = None
    second = make_agent(tmp_path, bridge.url, term)
    await second.start()
    push_burst(term, 4, 20)
    await eventually(lambda: len(bridge.ticks(SRC)) == 24, what="old and new ticks delivered")
    await second.stop()

    assert len({(t.symbol, t.time_msc, t.bid) for t in bridge.ticks(SRC)}) == 24


async def test_a_refused_device_faults_the_agent_but_keeps_buffering(
    tmp_path: Path, bridge: FakeBridge
) -> None:
    term = FakeTerminal(("EURUSD", "GBPUSD"))
    agent = make_agent(tmp_path, bridge.url, term, key="stolen")
    await agent.start()

    await eventually(lambda: agent.state is ComponentState.FAULTED, what="fault")
    assert "refused device 'dev-1'" in agent.reason
    push_burst(term, 3, 0)
    await eventually(lambda: agent.streamers[0].read.total == 3, what="still reading")
    status = await agent.status()
    await agent.stop()

    assert status.link == "auth_failed"
    assert "check the device id and key" in status.last_error
    assert bridge.connections == 1
    assert DurableBuffer(tmp_path / "agent-buffer.sqlite").depth_ticks() == 3


async def test_the_status_api_reports_link_buffer_rates_and_acks(tmp_path: Path, bridge: FakeBridge) -> None:
    term = FakeTerminal(("EURUSD", "GBPUSD"))
    agent = make_agent(tmp_path, bridge.url, term, status_api=True)
    await agent.start()
    push_burst(term, 10, 0)
    await eventually(lambda: len(bridge.ticks(SRC)) == 10, what="delivered")
    assert agent.status_server is not None

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.status_server.port}") as http:
        response = await http.get("/status")
    await agent.stop()

    assert response.status_code == 200
    body = response.json()
    assert body["link"] == "connected"
    assert body["state"] == "running"
    assert body["ticks_read"] == 10
    assert body["ticks_sent"] == 10
    assert body["buffered_batches"] == 0
    assert body["sources"][0]["src"] == SRC
    assert body["sources"][0]["acked_seq"] >= 1
    assert body["sources"][0]["symbols"] == ["EURUSD", "GBPUSD"]
    assert {"ticks_per_s_read", "ticks_per_s_sent", "last_error", "reconnects"} <= body.keys()


async def test_the_status_api_refuses_to_listen_beyond_loopback_by_default(tmp_path: Path) -> None:
    term = FakeTerminal()
    agent = make_agent(tmp_path, "ws://127.0.0.1:1/ws/agent", term)
    app = create_status_app(agent.status)

    with pytest.raises(ConfigError, match=r"bind it to 127\.0\.0\.1"):
        StatusServer(app, host="0.0.0.0", port=0)
    StatusServer(app, host="::1", port=0)  # loopback in IPv6 is fine
    StatusServer(app, host="0.0.0.0", port=0, allow_remote=True)


async def test_symbols_default_to_the_terminals_visible_ones(tmp_path: Path, bridge: FakeBridge) -> None:
    term = FakeTerminal(("EURUSD", "USDJPY"))
    agent = make_agent(tmp_path, bridge.url, term)
    await agent.start()
    symbols = agent.streamers[0].symbols
    await agent.stop()

    assert symbols == ("EURUSD", "USDJPY")


def test_an_agent_without_a_device_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="device key"):
        make_agent(tmp_path, "ws://127.0.0.1:1/ws/agent", FakeTerminal(), key="")
