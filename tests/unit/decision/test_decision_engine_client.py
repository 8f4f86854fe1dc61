"""Split mode: the decision engine's orders reach a real trading engine over HTTP (uvicorn, free port).

The engine here is the real `EngineService` (SQLite books, in-process bus) served by `HttpServers`; the
decision pipeline talks to it only through `EngineClient`, as it does when the engine is another process.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from decision_helpers import publish_flat_bars

from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.common.serving import HttpServers
from aitrading.decision.engine_client import EngineClient
from aitrading.decision.service import DecisionPipeline, DecisionService, DecisionSettings
from aitrading.engine.limits import RiskLimits, RiskScope
from aitrading.engine.service import EngineService
from aitrading.engine.store import EngineStore
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, MarginMode, OrderState, OrderType, Side, TradeAction
from aitrading.model.events import OrderDenied
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.market import Tick
from aitrading.model.orders import Order
from aitrading.model.values import price_raw, volume_raw
from aitrading.model.wire import AccountSnapshot, OrderReport
from aitrading.mt5.specs import DEFAULT_SPECS
from aitrading.storage.oltp import Database, ensure_tenant

SECRET = "a-test-secret-of-enough-length-for-the-engine-client"
FEED = "SIM"
ACCOUNT = "10001"
UP_CROSS = [5, 4, 3, 2, 1, 2, 3, 4]  # sma_cross fast=2 slow=3: one long signal on the last bar
DOWN_CROSS = [3, 2, 1]  # then a short one


@dataclass
class World:
    clock: TestClock
    tokens: TokenService
    bus: MemoryBus
    engine: EngineService
    db: Database
    tenant: str
    url: str


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = TestClock()
    tokens = TokenService(SECRET, clock=clock)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'oltp.sqlite'}", clock=clock, migrate_on_start=True)
    await db.start()
    async with db.session() as session:
        tenant = str((await ensure_tenant(session, f"t{uuid.uuid4().hex[:8]}", "Test")).id)
        await session.commit()
    bus = MemoryBus(streams=())
    await bus.connect()
    engine = EngineService(
        {},
        bus=bus,
        db=db,
        clock=clock,
        tokens=tokens,
        authenticate=principal_dependency(tokens),
        specs=DEFAULT_SPECS,
    )
    await engine.start()
    state = AccountState.of(
        login=int(ACCOUNT),
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_HEDGING,
        balance="10000",
    )
    snapshot = AccountSnapshot(
        tenant=TenantId(tenant),
        account=AccountId(ACCOUNT),
        ts_ns=clock.now_ns(),
        account_state=state,
        positions=[],
        orders=[],
        deals_from_ns=0,
        deals=[],
    )
    await engine.engine.on_snapshot(snapshot)
    engine.engine.books[(TenantId(tenant), AccountId(ACCOUNT))].feed = FEED
    tick = Tick(
        feed=FEED, symbol="EURUSD", time_msc=clock.now_ms(), bid=price_raw("1.1"), ask=price_raw("1.1001")
    )
    await bus.publish(f"md.tick.{FEED}.EURUSD", tick)
    servers = HttpServers()
    servers.add("engine", lambda: engine.app, "127.0.0.1", 0)
    await servers.start()
    try:
        yield World(clock, tokens, bus, engine, db, tenant, f"http://127.0.0.1:{servers.port('engine')}")
    finally:
        await servers.stop()
        await engine.stop()
        await bus.close()
        await db.stop()


def client_of(
    world: World, *, url: str | None = None, tokens: TokenService | None = None, **kw: object
) -> EngineClient:
    http = httpx.AsyncClient(base_url=url or world.url, timeout=5.0, **kw)  # type: ignore[arg-type]
    return EngineClient(http, tokens or world.tokens, world.clock, tenant=world.tenant, account=ACCOUNT)


def pipeline_of(world: World, client: EngineClient) -> DecisionPipeline:
    settings = DecisionSettings(
        tenant=world.tenant,
        account=ACCOUNT,
        feed="F",
        symbols="EURUSD",
        timeframe="H1",
        strategies="sma_cross:fast=2,slow=3,volume=0.1",
        strategy="trend",
    )
    return DecisionPipeline(
        settings, world.bus, world.clock, client.submit, client.positions, engine_client=client
    )


async def bars(world: World, closes: list[int], start: int) -> None:
    await publish_flat_bars(world.bus, closes, start)


def book_orders(world: World) -> dict[ClientOrderId, Order]:
    book = world.engine.engine.book(TenantId(world.tenant), AccountId(ACCOUNT))
    assert book is not None
    return dict(book.orders)


async def test_a_signal_becomes_an_order_in_the_engines_store(world: World) -> None:
    client = client_of(world)
    pipeline = pipeline_of(world, client)
    await pipeline.start()
    await bars(world, UP_CROSS, 0)
    await pipeline.stop()

    [sent] = pipeline.engine.orders
    stored = await EngineStore(world.db, world.clock).load(TenantId(world.tenant))
    [account] = stored[0]
    [order] = account.orders
    assert order.client_order_id == sent.client_order_id
    assert (order.type, order.volume, order.strategy) == (OrderType.BUY, volume_raw("0.1"), "trend")
    assert order.state is OrderState.REQUEST_ADD  # risk-checked, sent on to the agent, durable
    assert client.counters["accepted"] == 1
    assert pipeline.engine.counters["denied"] == 0
    assert pipeline.status()["engine_client"]["counters"]["sent"] == 1


async def test_a_refusal_by_the_risk_check_is_counted_with_its_retcode(world: World) -> None:
    await world.engine.engine.set_limits(
        TenantId(world.tenant), RiskScope.ACCOUNT, ACCOUNT, RiskLimits(kill_switch=True), "test"
    )
    denials: list[Message] = []

    async def record(subject: str, msg: Message) -> None:
        if isinstance(msg, OrderDenied):
            denials.append(msg)

    await world.bus.subscribe("ord.evt.>", record)
    client = client_of(world)
    pipeline = pipeline_of(world, client)
    await pipeline.start()
    await bars(world, UP_CROSS, 0)
    await pipeline.stop()

    assert pipeline.engine.counters["denied"] == 1
    assert client.counters == {**client.counters, "sent": 1, "denied": 1, "accepted": 0, "unreachable": 0}
    [denied] = denials
    assert isinstance(denied, OrderDenied)
    assert denied.client_order_id == pipeline.engine.orders[0].client_order_id


async def test_an_mt5_pre_trade_retcode_comes_back_in_the_answer(world: World) -> None:
    client = client_of(world)
    req = OrderRequest(
        client_order_id=ClientOrderId("DEVOL0001"),
        tenant=TenantId(world.tenant),
        account=AccountId(ACCOUNT),
        ts_ns=world.clock.now_ns(),
        symbol="EURUSD",
        action=TradeAction.DEAL,
        type=OrderType.BUY,
        volume=volume_raw("0.001"),  # below the symbol's minimum
        deviation=10,
    )
    answer = await client.submit(req, "decision:trend")
    await client.stop()
    assert (answer.denied, answer.retcode, answer.status) == (True, 10014, 422)
    assert client.counters["denied"] == 1


async def test_a_token_the_engine_rejects_is_counted_as_refused_not_raised(world: World) -> None:
    stranger = TokenService("another-secret-of-enough-length-for-hmac-sha256", clock=world.clock)
    client = client_of(world, tokens=stranger)
    pipeline = pipeline_of(world, client)
    await pipeline.start()
    await bars(world, UP_CROSS, 0)
    await pipeline.stop()

    assert client.counters["refused"] == 1
    assert "invalid token" in client.last_error
    assert pipeline.engine.counters["denied"] == 1
    assert book_orders(world) == {}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_an_unreachable_engine_is_counted_and_retried_and_the_service_carries_on(world: World) -> None:
    client = client_of(world, url=f"http://127.0.0.1:{_closed_port()}")
    settings = DecisionSettings(
        tenant=world.tenant,
        account=ACCOUNT,
        feed="F",
        symbols="EURUSD",
        timeframe="H1",
        strategies="sma_cross:fast=2,slow=3,volume=0.1",
    )
    service = DecisionService(None, bus=world.bus, clock=world.clock, settings=settings, engine_client=client)
    await service.start()
    await bars(world, UP_CROSS, 0)
    await bars(world, DOWN_CROSS, len(UP_CROSS))
    assert service.pipeline is not None
    status = service.pipeline.status()
    await service.stop()

    assert status["counters"]["orders"] == 2  # long, then short: both tried
    assert status["counters"]["denied"] == 2
    counters = status["engine_client"]["counters"]
    assert (counters["unreachable"], counters["retries"]) == (2, 4)  # two retries each, nothing sent
    assert counters["positions_failures"] == 3  # at start and before each decision
    assert "engine unreachable" in status["engine_client"]["last_error"]


class LosingTransport(httpx.AsyncHTTPTransport):
    """Delivers the first order to the engine, then loses its answer (a timeout, a dropped connection)."""

    def __init__(self, path_suffix: str = "/api/v1/orders") -> None:
        super().__init__()
        self.lost = 0
        self.path_suffix = path_suffix

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path.endswith(self.path_suffix) and not self.lost:
            await response.aread()
            self.lost += 1
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response


async def test_a_lost_answer_is_retried_with_the_same_client_order_id_and_books_one_order(
    world: World,
) -> None:
    transport = LosingTransport()
    client = client_of(world, transport=transport)
    pipeline = pipeline_of(world, client)
    await pipeline.start()
    await bars(world, UP_CROSS, 0)
    await pipeline.stop()

    assert transport.lost == 1
    assert client.counters["retries"] == 1
    assert client.counters["accepted"] == 1
    assert list(book_orders(world)) == [pipeline.engine.orders[0].client_order_id]


async def test_a_direction_change_closes_the_engines_position_read_over_http(world: World) -> None:
    transport = LosingTransport("/close")  # the close's first answer is lost: it is sent again
    client = client_of(world, transport=transport)
    pipeline = pipeline_of(world, client)
    await pipeline.start()
    await bars(world, UP_CROSS, 0)
    [buy] = pipeline.engine.orders
    await fill(world, buy, ticket=5001, side=DealType.BUY)
    await bars(world, DOWN_CROSS, len(UP_CROSS))
    await pipeline.stop()

    close, sell = list(pipeline.engine.orders)[1:]
    assert (close.type, close.position, close.volume) == (OrderType.SELL, 5001, volume_raw("0.1"))
    assert (sell.type, sell.position) == (OrderType.SELL, 0)
    orders = book_orders(world)
    closing = [o for o in orders.values() if o.position_id == 5001 and o.type is OrderType.SELL]
    assert len(closing) == 1  # one close of position 5001 although it was sent twice
    assert closing[0].client_order_id == close.client_order_id
    assert closing[0].strategy == close.strategy
    assert sell.client_order_id in orders
    assert (transport.lost, client.counters["retries"]) == (1, 1)
    assert client.counters["accepted"] == 3
    assert client.positions("EURUSD")[0].type is Side.BUY  # the snapshot read before the decision


async def fill(world: World, req: OrderRequest, *, ticket: int, side: DealType) -> None:
    """Report `req` filled at 1.1001 as the account's agent would."""
    deal = Deal(
        ticket=ticket,
        order=ticket,
        position_id=ticket,
        symbol="EURUSD",
        type=side,
        entry=DealEntry.IN,
        volume=req.volume,
        price=price_raw("1.1001"),
        time_ns=world.clock.now_ns(),
        comment=req.client_order_id,
    )
    report = OrderReport(
        client_order_id=req.client_order_id,
        tenant=TenantId(world.tenant),
        account=AccountId(ACCOUNT),
        retcode=10009,
        ts_ns=world.clock.now_ns(),
        order=ticket,
        deals=[deal],
    )
    await world.engine.engine.on_report(report)
