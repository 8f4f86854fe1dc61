"""The whole loop: bus command → bridge → agent → terminal → report back on the bus, across a lost link.

A real bridge (uvicorn, in-memory bus) and a real agent; `TradingFakeTerminal` stands in for the broker's
terminal (agent_executor_fakes.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from agent_executor_fakes import TradingFakeTerminal
from agent_fakes import eventually
from typer.testing import CliRunner

from aitrading.agent.cli import app
from aitrading.agent.journal import JournalState
from aitrading.agent.service import Agent, TerminalFeed
from aitrading.bridge.service import BridgeService
from aitrading.common.bus import MemoryBus, Message
from aitrading.common.clock import LiveClock
from aitrading.common.config import AgentConfig, BridgeConfig
from aitrading.common.serving import HttpServers
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.enums import OrderType, TradeAction
from aitrading.model.ids import AccountId, ClientOrderIdGenerator, TenantId, order_command_subject
from aitrading.model.market import Tick
from aitrading.model.wire import AccountSnapshot, AgentPresence, OrderReport

DEVICE, KEY, TENANT, FEED = "dev-1", "key-1", "tenant-1", "Broker-Demo"
LOGIN = 5001
CLOCK = LiveClock()


class TickSinkStub:
    """Takes the ticks the agent streams beside its orders (this test does not look at them)."""

    async def write_ticks(self, ticks: Sequence[Tick], marks: Mapping[str, int] = {}) -> int:
        return len(ticks)

    async def durable_marks(self) -> dict[str, int]:
        return {}


@dataclass
class Platform:
    """A bridge on a fixed port that can be taken down and brought back, and what its bus carried."""

    service: BridgeService
    bus: MemoryBus
    port: int = 0
    servers: HttpServers | None = None
    seen: list[tuple[str, Message]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent"

    async def up(self) -> None:
        self.servers = HttpServers()
        self.servers.add("bridge", lambda: self.service.app, "127.0.0.1", self.port)
        self.port = self.servers.port("bridge")
        await self.servers.start()

    async def down(self) -> None:
        if self.servers is not None:
            await self.servers.stop()
            self.servers = None

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for _, m in self.seen if isinstance(m, kind)]


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    async def auth(device: str, key: str) -> str | None:
        return TENANT if (device, key) == (DEVICE, KEY) else None

    bus = MemoryBus()
    await bus.connect()
    service = BridgeService(BridgeConfig(store_flush_ms=5), bus, TickSinkStub(), CLOCK, auth)
    p = Platform(service, bus)

    async def record(subject: str, msg: Message) -> None:
        p.seen.append((subject, msg))

    for pattern in ("ord.rpt.>", "acct.snap.>", "agent.presence.>"):
        await bus.subscribe(pattern, record)
    await service.start()
    await p.up()
    yield p
    await p.down()
    await service.stop()
    await bus.close()


def make_agent(tmp_path: Path, url: str, term: TradingFakeTerminal, *, status_api: bool = False) -> Agent:
    config = AgentConfig(
        bridge_url=url,
        device_id=DEVICE,
        flush_ms=10,
        poll_ms=5,
        buffer_path=tmp_path / "agent-buffer.sqlite",
        status_port=0,
    )
    return Agent(
        config,
        [TerminalFeed(FEED, term)],
        device_key=KEY,
        clock=CLOCK,
        drain_timeout_s=0.5,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        rng=random.Random(5),
        snapshot_interval_s=0.2,
        status_api=status_api,
    )


def buy(cid: str) -> TradeCommand:
    return TradeCommand(
        request=OrderRequest(
            client_order_id=cid,  # type: ignore[arg-type]
            tenant=TenantId(TENANT),
            account=AccountId(str(LOGIN)),
            ts_ns=CLOCK.now_ns(),
            symbol="EURUSD",
            action=TradeAction.DEAL,
            type=OrderType.BUY,
            volume=20_000_000,
        )
    )


async def test_a_command_and_its_resend_are_executed_once_and_reported_with_snapshots(
    tmp_path: Path, platform: Platform
) -> None:
    term = TradingFakeTerminal(CLOCK, login=LOGIN, server=FEED)
    agent = make_agent(tmp_path, platform.url, term, status_api=True)
    await agent.start()
    try:
        await eventually(lambda: platform.of(AgentPresence), what="the account online")
        [presence] = platform.of(AgentPresence)
        assert (presence.tenant, presence.device_id, presence.accounts, presence.online) == (
            TENANT,
            DEVICE,
            [str(LOGIN)],
            True,
        )
        cmd = buy(ClientOrderIdGenerator(CLOCK)())
        subject = order_command_subject(TENANT, str(LOGIN))
        await platform.bus.publish(subject, cmd)
        await eventually(lambda: len(platform.of(OrderReport)) == 1, what="the report")
        await platform.bus.publish(subject, cmd)  # the engine resends: it did not see the report in time
        await eventually(lambda: len(platform.of(OrderReport)) == 2, what="the report again")
        first, again = platform.of(OrderReport)
        assert first == again
        assert first.retcode == 10009
        assert not first.recovered
        assert len(term.sends) == 1
        await eventually(
            lambda: agent.executor is not None and not agent.executor.in_flight(), what="the ack"
        )
        await eventually(
            lambda: any(s.positions for s in platform.of(AccountSnapshot)),
            what="a snapshot with the position",
        )
        assert agent.status_server is not None
        url = f"http://127.0.0.1:{agent.status_server.port}"
        shown = await asyncio.to_thread(CliRunner().invoke, app, ["status", "--url", url])
        assert shown.exit_code == 0, shown.output
        assert f"{LOGIN} ({FEED})" in shown.stdout
        assert "1 executed, 0 recovered, 0 failed, 0 unfinished" in shown.stdout
        status = await agent.status()
        ex = status.execution
        assert (ex.tenant, ex.accounts, ex.executed, ex.duplicates, ex.in_flight_total) == (
            TENANT,
            {str(LOGIN): FEED},
            1,
            1,
            0,
        )
    finally:
        await agent.stop()
    await eventually(lambda: [p.online for p in platform.of(AgentPresence)] == [True, False], what="offline")


async def test_a_report_lost_with_the_link_is_resent_after_reconnect(
    tmp_path: Path, platform: Platform
) -> None:
    term = TradingFakeTerminal(CLOCK, login=LOGIN, server=FEED)
    loop = asyncio.get_running_loop()

    def bridge_dies_during_order_send(request: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(platform.down(), loop).result(timeout=30)

    term.on_send = bridge_dies_during_order_send
    agent = make_agent(tmp_path, platform.url, term)
    await agent.start()
    try:
        await eventually(lambda: platform.of(AgentPresence), what="the account online")
        cmd = buy("E2E-LOST-REPORT")
        await platform.bus.publish(order_command_subject(TENANT, str(LOGIN)), cmd)
        executor = agent.executor
        assert executor is not None

        def journal_state() -> JournalState | None:
            entry = executor.journal.get("E2E-LOST-REPORT")
            return None if entry is None else entry.state

        await eventually(lambda: journal_state() is JournalState.DONE, timeout=30, what="the unsent report")
        assert platform.of(OrderReport) == []
        term.on_send = None
        await platform.up()
        await eventually(
            lambda: journal_state() is JournalState.ACKED, timeout=10, what="the resent report acked"
        )
        [report] = platform.of(OrderReport)
        assert report.client_order_id == "E2E-LOST-REPORT"
        assert report.retcode == 10009
        assert len(term.sends) == 1
    finally:
        await agent.stop()
