"""End to end in process: the config service's API changes a tenant's `trading` config, the decision
pipeline's next order carries it (ConfigClient cache invalidated by `cfg.changed.<tenant>` on the bus)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from decision_helpers import publish_flat_bars

from aitrading.common.auth import TokenService
from aitrading.common.bus import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.config_service.client import ConfigClient, service_token_provider
from aitrading.config_service.namespaces import TradingConfig
from aitrading.config_service.service import ConfigService
from aitrading.decision.defaults import ConfiguredOrderDefaults
from aitrading.decision.service import DecisionPipeline, DecisionSettings
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderFilling, OrderType
from aitrading.model.positions import Position
from aitrading.storage.oltp import Database, ensure_tenant

SECRET = "a-test-secret-of-enough-length-for-decision"
LOT = 100_000_000


@dataclass
class Answer:
    denied: bool = False
    reason: str = ""


@dataclass
class Port:
    sent: list[OrderRequest] = field(default_factory=list)

    async def submit(self, req: OrderRequest, actor: str) -> Answer:
        self.sent.append(req)
        return Answer()

    def positions(self, symbol: str) -> list[Position]:
        return []


class Transport(httpx.AsyncBaseTransport):
    """The config service's ASGI app in process, or a refused connection while `down`."""

    def __init__(self, app: object) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.down = False
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests += 1
        return await self.inner.handle_async_request(request)


@dataclass
class World:
    clock: TestClock
    bus: MemoryBus
    tokens: TokenService
    tenant: str
    api: httpx.AsyncClient
    transport: Transport


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = TestClock()
    tokens = TokenService(SECRET, clock=clock)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'config.sqlite'}", clock=clock, migrate_on_start=True)
    await db.start()
    bus = MemoryBus(streams=())
    await bus.connect()
    async with db.session() as session:
        tenant = (await ensure_tenant(session, "acme", "Acme Fund")).id
    service = ConfigService({"database": db.ping}, db=db, clock=clock, tokens=tokens, bus=bus)
    await service.start()
    transport = Transport(service.app)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://config")
    try:
        yield World(clock, bus, tokens, str(tenant), api, transport)
    finally:
        await api.aclose()
        await service.stop()
        await bus.close()
        await db.stop()


async def put_trading(world: World, value: dict[str, Any]) -> None:
    """Set the tenant's `trading` override as its tenant_admin would, through the HTTP API."""
    token = world.tokens.issue("boss", tenant=world.tenant, roles=("tenant_admin",))
    auth = {"Authorization": f"Bearer {token}"}
    current = await world.api.get("/api/v1/tenant/trading", headers=auth)
    assert current.status_code == 200, current.text
    resp = await world.api.put(
        "/api/v1/tenant/trading", json=value, headers={**auth, "If-Match": current.headers["ETag"]}
    )
    assert resp.status_code == 200, resp.text


def pipeline_of(world: World, port: Port) -> tuple[DecisionPipeline, ConfiguredOrderDefaults]:
    http = httpx.AsyncClient(transport=world.transport, base_url="http://config")
    client = ConfigClient(
        http, service_token_provider(world.tokens, "svc:decision"), world.clock, bus=world.bus, ttl_s=3600
    )
    defaults = ConfiguredOrderDefaults(client, world.clock, retry_after_s=5)
    settings = DecisionSettings(
        tenant=world.tenant,
        account="7",
        feed="F",
        symbols="EURUSD",
        timeframe="H1",
        strategies="sma_cross:fast=2,slow=3",
        strategy="trend",
    )
    return DecisionPipeline(settings, world.bus, world.clock, port.submit, port.positions, defaults), defaults


async def feed(world: World, closes: list[int], start: int) -> None:
    await publish_flat_bars(world.bus, closes, start)


async def test_a_trading_config_change_through_the_api_reaches_the_next_order(world: World) -> None:
    await put_trading(world, {"default_deviation_points": 7, "default_filling": "IOC", "default_magic": 41})
    port = Port()
    pipeline, defaults = pipeline_of(world, port)
    await pipeline.start()
    await feed(world, [5, 4, 3, 2, 1, 2, 3, 4], 0)  # fast SMA crosses above: long
    assert [(r.type, r.deviation, r.filling, r.magic) for r in port.sent] == [
        (OrderType.BUY, 7, OrderFilling.IOC, 41)
    ]
    fetched = world.transport.requests
    await put_trading(
        world, {"default_deviation_points": 33, "default_filling": "RETURN", "default_magic": 42}
    )
    await feed(world, [3, 2, 1], 8)  # crosses below: short
    assert [(r.type, r.deviation, r.filling, r.magic) for r in port.sent[1:]] == [
        (OrderType.SELL, 33, OrderFilling.RETURN, 42)
    ]
    assert world.transport.requests == fetched + 1  # invalidated once, fetched once
    assert (defaults.failures, defaults.fallbacks) == (0, 0)
    status = pipeline.status()["order_defaults"]
    assert status["last_known"][world.tenant]["deviation"] == 33
    await pipeline.stop()


async def test_the_default_volume_of_the_tenant_fills_an_intent_without_volume(world: World) -> None:
    port = Port()
    pipeline, _ = pipeline_of(world, port)
    await pipeline.start()
    await put_trading(world, {"default_volume_lots": "0.25"})
    signal = await pipeline.engine.on_probability("EURUSD", "gbm", "v3", 0.8, volume=0)
    assert signal is not None
    assert signal.volume == LOT // 4
    assert [(r.type, r.volume) for r in port.sent] == [(OrderType.BUY, LOT // 4)]
    await pipeline.stop()


async def test_an_unreachable_config_service_does_not_stop_the_orders(world: World) -> None:
    await put_trading(world, {"default_deviation_points": 9})
    port = Port()
    pipeline, defaults = pipeline_of(world, port)
    await pipeline.start()
    world.transport.down = True
    await feed(world, [5, 4, 3, 2, 1, 2, 3, 4], 0)
    assert port.sent[0].deviation == TradingConfig().default_deviation_points  # never read: the fallback
    assert defaults.failures == 1
    assert "unreachable" in defaults.last_error
    world.transport.down = False
    world.clock.advance(6)
    await feed(world, [3, 2, 1], 8)
    assert port.sent[1].deviation == 9  # read again once the quiet period is over
    world.transport.down = True
    await put_trading(world, {"default_deviation_points": 10})  # invalidates the cache while it is down
    world.clock.advance(6)
    await feed(world, [2, 3, 4, 5], 11)
    assert port.sent[2].type is OrderType.BUY
    assert port.sent[2].deviation == 9  # the last known
    assert defaults.failures == 2
    await pipeline.stop()


async def test_the_pipeline_follows_config_changes_only_while_it_runs(world: World) -> None:
    port = Port()
    pipeline, defaults = pipeline_of(world, port)
    client = defaults.client
    assert isinstance(client, ConfigClient)
    await pipeline.start()
    await put_trading(world, {"default_magic": 5})
    assert client.invalidations == 1
    await pipeline.stop()
    await put_trading(world, {"default_magic": 6})
    assert client.invalidations == 1
