"""Order routing through the bridge: commands to the declared account's agent, reports and snapshots back.

Agents here are raw WebSocket clients against a real bridge (uvicorn on a free port, in-memory bus).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from fakes import MemorySink
from websockets.exceptions import ConnectionClosed

from aitrading.bridge.service import BridgeService
from aitrading.common import metrics
from aitrading.common.bus import MemoryBus, Message, decode, encode
from aitrading.common.clock import LiveClock
from aitrading.common.config import BridgeConfig
from aitrading.common.serving import HttpServers
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.enums import MarginMode, TradeAction
from aitrading.model.ids import (
    AccountId,
    ClientOrderId,
    TenantId,
    account_snapshot_subject,
    agent_presence_subject,
    order_command_subject,
)
from aitrading.model.wire import (
    AccountSnapshot,
    AgentHello,
    AgentPresence,
    BridgeError,
    BridgeWelcome,
    OrderReport,
    ReportAck,
)

DEVICES = {"dev-a": ("key-a", "tenant-1"), "dev-b": ("key-b", "tenant-1"), "dev-c": ("key-c", "tenant-2")}


@dataclass
class Bridge:
    url: str
    bus: MemoryBus
    seen: list[tuple[str, Message]]


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    async def auth(device: str, key: str) -> str | None:
        known = DEVICES.get(device)
        return known[1] if known is not None and known[0] == key else None

    bus = MemoryBus()
    await bus.connect()
    seen: list[tuple[str, Message]] = []

    async def record(subject: str, msg: Message) -> None:
        seen.append((subject, msg))

    for pattern in ("ord.rpt.>", "acct.snap.>", "agent.presence.>"):
        await bus.subscribe(pattern, record)
    service = BridgeService(
        BridgeConfig(max_frame_bytes=1_048_576, max_batch_ticks=5_000, store_flush_ms=5),
        bus,
        MemorySink(),
        LiveClock(),
        auth,
    )
    servers = HttpServers()
    servers.add("bridge", lambda: service.app, "127.0.0.1", 0, ws_max_size=1_048_576)
    await service.start()
    await servers.start()
    yield Bridge(f"ws://127.0.0.1:{servers.port('bridge')}/ws/agent", bus, seen)
    await servers.stop()
    await service.stop()
    await bus.close()


async def agent(
    url: str, device: str, accounts: dict[str, str]
) -> tuple[websockets.ClientConnection, BridgeWelcome | BridgeError]:
    key = DEVICES[device][0]
    ws = await websockets.connect(
        url, additional_headers={"X-Device-Id": device, "Authorization": f"Bearer {key}"}
    )
    hello = AgentHello(device_id=device, agent_version="t", sources=[f"{device}/SIM"], accounts=accounts)
    await ws.send(encode(hello))
    first = decode(await ws.recv())  # type: ignore[arg-type]
    assert isinstance(first, BridgeWelcome | BridgeError)
    return ws, first


async def online(url: str, device: str, *accounts: str) -> websockets.ClientConnection:
    ws, welcome = await agent(url, device, dict.fromkeys(accounts, "SIM"))
    assert isinstance(welcome, BridgeWelcome), welcome
    return ws


async def next_frame(ws: websockets.ClientConnection, timeout: float = 5.0) -> Message:
    return decode(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[arg-type]


async def closed_with(ws: websockets.ClientConnection) -> tuple[int, str | None]:
    kind = None
    try:
        while True:
            msg = decode(await asyncio.wait_for(ws.recv(), 5.0))  # type: ignore[arg-type]
            if isinstance(msg, BridgeError):
                kind = msg.code
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd is not None else -1), kind


def command(tenant: str, account: str, cid: str) -> TradeCommand:
    return TradeCommand(
        request=OrderRequest(
            client_order_id=ClientOrderId(cid),
            tenant=TenantId(tenant),
            account=AccountId(account),
            ts_ns=1,
            symbol="EURUSD",
            action=TradeAction.DEAL,
            volume=10_000_000,
        )
    )


def report(tenant: str, account: str, cid: str) -> OrderReport:
    return OrderReport(
        client_order_id=ClientOrderId(cid),
        tenant=TenantId(tenant),
        account=AccountId(account),
        retcode=10009,
        ts_ns=2,
    )


def snapshot(tenant: str, account: str) -> AccountSnapshot:
    state = AccountState.of(
        login=5001, currency="USD", leverage=100, margin_mode=MarginMode.RETAIL_HEDGING, balance="1000.00"
    )
    return AccountSnapshot(
        tenant=TenantId(tenant),
        account=AccountId(account),
        ts_ns=3,
        account_state=state,
        positions=[],
        orders=[],
        deals_from_ns=0,
        deals=[],
    )


def rejected(kind: str, reason: str) -> float:
    labels = {"kind": kind, "reason": reason}
    return metrics.REGISTRY.get_sample_value("aitrading_bridge_agent_frames_rejected_total", labels) or 0.0


def on(bridge: Bridge, prefix: str) -> list[tuple[str, Any]]:
    return [(s, m) for s, m in bridge.seen if s.startswith(prefix)]


async def test_welcome_tells_the_agent_its_tenant(bridge: Bridge) -> None:
    ws, welcome = await agent(bridge.url, "dev-c", {})
    assert isinstance(welcome, BridgeWelcome)
    assert welcome.tenant == "tenant-2"
    await ws.close()


async def test_a_command_reaches_the_agent_of_its_account_and_no_other(bridge: Bridge) -> None:
    a = await online(bridge.url, "dev-a", "ACC1")
    c = await online(bridge.url, "dev-c", "ACC1")  # the same account id in another tenant is another account
    mismatched_before = rejected("command", "subject_mismatch")

    await bridge.bus.publish(
        order_command_subject("tenant-1", "ACC2"), command("tenant-1", "ACC2", "X-other-acct")
    )
    await bridge.bus.publish(
        order_command_subject("tenant-1", "ACC1"), command("tenant-2", "ACC1", "X-lying-body")
    )
    await bridge.bus.publish(
        order_command_subject("tenant-1", "ACC1"), command("tenant-1", "ACC1", "X-for-a")
    )
    await bridge.bus.publish(
        order_command_subject("tenant-2", "ACC1"), command("tenant-2", "ACC1", "X-for-c")
    )

    got_a, got_c = await next_frame(a), await next_frame(c)
    assert isinstance(got_a, TradeCommand)
    assert got_a.request.client_order_id == "X-for-a"
    assert isinstance(got_c, TradeCommand)
    assert got_c.request.client_order_id == "X-for-c"
    assert rejected("command", "subject_mismatch") == mismatched_before + 1
    await a.close()
    await c.close()


async def test_a_report_is_published_then_acked_and_a_foreign_one_is_refused_and_counted(
    bridge: Bridge,
) -> None:
    ws = await online(bridge.url, "dev-a", "ACC1")
    foreign_before = rejected("report", "foreign_account")
    await ws.send(encode(report("tenant-1", "ACC9", "X-not-mine")))
    await ws.send(encode(report("tenant-1", "ACC1", "X-mine")))
    ack = await next_frame(ws)
    assert ack == ReportAck(client_order_id="X-mine"), "no ack for the refused report; the connection goes on"
    assert [(s, m.client_order_id) for s, m in on(bridge, "ord.rpt.")] == [
        ("ord.rpt.tenant-1.ACC1", "X-mine")
    ]
    assert rejected("report", "foreign_account") == foreign_before + 1
    await ws.close()


async def test_a_snapshot_is_published_only_for_the_connections_tenant_and_accounts(bridge: Bridge) -> None:
    ws = await online(bridge.url, "dev-a", "ACC1")
    foreign_before = rejected("snapshot", "foreign_tenant")
    await ws.send(encode(snapshot("tenant-2", "ACC1")))
    await ws.send(encode(snapshot("tenant-1", "ACC1")))
    await ws.send(encode(report("tenant-1", "ACC1", "X-fence")))  # its ack says the frames before are handled
    assert isinstance(await next_frame(ws), ReportAck)
    snaps = on(bridge, "acct.snap.")
    assert [s for s, _ in snaps] == [account_snapshot_subject("tenant-1", "ACC1")]
    assert snaps[0][1] == snapshot("tenant-1", "ACC1")
    assert rejected("snapshot", "foreign_tenant") == foreign_before + 1
    await ws.close()


async def test_an_agent_that_declared_no_accounts_cannot_report(bridge: Bridge) -> None:
    ws = await online(bridge.url, "dev-a")
    before = rejected("report", "no_accounts")
    await ws.send(encode(report("tenant-1", "ACC1", "X-sneaky")))
    await ws.send(encode(snapshot("tenant-1", "ACC1")))
    await asyncio.sleep(0.2)
    assert on(bridge, "ord.rpt.") == []
    assert on(bridge, "acct.snap.") == []
    assert rejected("report", "no_accounts") == before + 1
    await ws.close()


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_presence_goes_online_on_connect_and_offline_on_disconnect(bridge: Bridge) -> None:
    ws = await online(bridge.url, "dev-a", "ACC2", "ACC1")
    await ws.close()
    subject = agent_presence_subject("tenant-1")
    await wait_for(lambda: len(on(bridge, subject)) == 2, "offline presence")
    events = [m for _, m in on(bridge, subject)]
    assert all(isinstance(e, AgentPresence) for e in events)
    assert [(e.device_id, e.accounts, e.online) for e in events] == [
        ("dev-a", ["ACC1", "ACC2"], True),
        ("dev-a", ["ACC1", "ACC2"], False),
    ]


async def test_presence_names_the_feed_each_account_declared_so_the_engine_can_quote_it(
    bridge: Bridge,
) -> None:
    ws, welcome = await agent(bridge.url, "dev-a", {"ACC1": "SIM", "ACC2": "Broker-Live"})
    assert isinstance(welcome, BridgeWelcome), welcome
    subject = agent_presence_subject("tenant-1")
    await wait_for(lambda: len(on(bridge, subject)) == 1, "online presence")
    await ws.close()
    await wait_for(lambda: len(on(bridge, subject)) == 2, "offline presence")
    feeds = [m.feeds for _, m in on(bridge, subject) if isinstance(m, AgentPresence)]
    assert feeds == [{"ACC1": "SIM", "ACC2": "Broker-Live"}] * 2


async def test_another_device_declaring_a_served_account_is_refused_with_4409(bridge: Bridge) -> None:
    a = await online(bridge.url, "dev-a", "ACC1")
    b, answer = await agent(bridge.url, "dev-b", {"ACC1": "SIM"})
    assert isinstance(answer, BridgeError)
    assert answer.code == "conflict"
    assert "dev-a" in answer.reason
    assert (await closed_with(b))[0] == 4409
    await bridge.bus.publish(
        order_command_subject("tenant-1", "ACC1"), command("tenant-1", "ACC1", "X-still-a")
    )
    got = await next_frame(a)
    assert isinstance(got, TradeCommand)
    assert got.request.client_order_id == "X-still-a"
    await a.close()


async def test_a_new_connection_of_the_same_device_takes_its_accounts_over(bridge: Bridge) -> None:
    old = await online(bridge.url, "dev-a", "ACC1")
    new = await online(bridge.url, "dev-a", "ACC1")  # the agent reconnected before the bridge saw it go
    assert await closed_with(old) == (4409, "superseded")
    await bridge.bus.publish(
        order_command_subject("tenant-1", "ACC1"), command("tenant-1", "ACC1", "X-to-new")
    )
    got = await next_frame(new)
    assert isinstance(got, TradeCommand)
    assert got.request.client_order_id == "X-to-new"
    presence = [m.online for _, m in on(bridge, agent_presence_subject("tenant-1"))]
    assert presence == [True, True], "the old connection's end does not announce the account offline"
    await new.close()
    await wait_for(lambda: len(on(bridge, "agent.presence.")) == 3, "offline presence")
