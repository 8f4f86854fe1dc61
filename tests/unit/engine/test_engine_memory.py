"""The in-memory persistence (`engine.memory`, what backtests run on) against the database's: the same
scenario through two engines gives the same events, the same audit chain to the hash, and the same books
after a reload."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from engine_helpers import ACCOUNT, FEED, Rig, account_state, make_rig

from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError
from aitrading.engine.engine import TradingEngine
from aitrading.engine.limits import RiskLimits, RiskScope
from aitrading.engine.memory import MemoryAudit, MemoryStore, MemoryWriter
from aitrading.engine.store import EngineStore, StoredAccount
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, OrderType, TradeAction
from aitrading.model.ids import ClientOrderId, TenantId
from aitrading.model.market import Tick
from aitrading.model.orders import Order
from aitrading.model.values import price_raw, volume_raw
from aitrading.model.wire import AccountSnapshot, OrderReport
from aitrading.mt5.specs import DEFAULT_SPECS

TickFn = Callable[[str, str, str], Awaitable[object]]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(tmp_path):
        yield r


class _Memory:
    """The same set-up as `make_rig`, on the in-memory ports."""

    def __init__(self, tenant: TenantId) -> None:
        self.tenant = tenant
        self.clock = TestClock()
        self.bus = MemoryBus()
        self.store, self.audit = MemoryStore(), MemoryAudit(self.clock)
        self.engine = TradingEngine(
            self.bus,
            self.store,
            self.audit,
            self.clock,
            DEFAULT_SPECS,
            writer=MemoryWriter(self.store, self.audit),
        )
        self.seen: list[tuple[str, Message]] = []

    async def start(self) -> None:
        await self.bus.connect()
        await self.engine.start()

        async def record(subject: str, msg: Message) -> None:
            self.seen.append((subject, msg))

        await self.bus.subscribe("ord.>", record)
        await self.engine.on_snapshot(
            AccountSnapshot(
                tenant=self.tenant,
                account=ACCOUNT,
                ts_ns=self.clock.now_ns(),
                account_state=account_state(),
                positions=[],
                orders=[],
                deals_from_ns=0,
                deals=[],
            )
        )
        self.engine.books[(self.tenant, ACCOUNT)].feed = FEED
        for symbol, bid, ask in (
            ("EURUSD", "1.10000", "1.10010"),
            ("USDJPY", "150.000", "150.010"),
            ("GBPUSD", "1.25000", "1.25010"),
        ):
            await self.tick(symbol, bid, ask)

    async def tick(self, symbol: str, bid: str, ask: str) -> None:
        tick = Tick(
            feed=FEED, symbol=symbol, time_msc=self.clock.now_ms(), bid=price_raw(bid), ask=price_raw(ask)
        )
        await self.bus.publish(f"md.tick.{FEED}.{symbol}", tick)


def _request(tenant: TenantId, clock: TestClock, n: int, **kw: object) -> OrderRequest:
    base: dict[str, object] = {
        "client_order_id": ClientOrderId(f"T{n:06d}"),
        "tenant": tenant,
        "account": ACCOUNT,
        "ts_ns": clock.now_ns(),
        "symbol": "EURUSD",
        "action": TradeAction.DEAL,
        "type": OrderType.BUY,
        "volume": volume_raw("0.10"),
        "deviation": 20,
    }
    base.update(kw)
    return OrderRequest(**base)  # type: ignore[arg-type]


async def _fill(
    engine: TradingEngine,
    clock: TestClock,
    req: OrderRequest,
    order: int,
    deal: int,
    entry: DealEntry,
    price: int,
) -> None:
    """Report `req` done by one deal at `price`, as the agent would."""
    kind = DealType.BUY if req.type is OrderType.BUY else DealType.SELL
    booked = Deal(
        ticket=deal,
        order=order,
        position_id=9001,
        symbol="EURUSD",
        type=kind,
        entry=entry,
        volume=req.volume,
        price=price,
        time_ns=clock.now_ns(),
        comment=req.client_order_id,
    )
    await engine.on_report(
        OrderReport(
            client_order_id=req.client_order_id,
            tenant=req.tenant,
            account=ACCOUNT,
            retcode=10009,
            ts_ns=clock.now_ns(),
            order=order,
            deal=deal,
            volume=req.volume,
            price=price,
            deals=[booked],
        )
    )


async def _scenario(engine: TradingEngine, tenant: TenantId, clock: TestClock, tick: TickFn) -> None:
    """Open 0.10 lot, mark it, close it, have one order denied and one set of limits set."""
    opening = _request(tenant, clock, 1)
    assert not (await engine.submit(opening, "user:alice")).denied
    clock.advance(1)
    await _fill(engine, clock, opening, 501, 9001, DealEntry.IN, price_raw("1.10010"))
    clock.advance(1)
    await tick("EURUSD", "1.10200", "1.10210")
    clock.advance(1)
    closing = _request(tenant, clock, 2, type=OrderType.SELL, position=9001)
    assert not (await engine.submit(closing, "user:alice")).denied
    await _fill(engine, clock, closing, 502, 9002, DealEntry.OUT, price_raw("1.10200"))
    clock.advance(1)
    assert (await engine.submit(_request(tenant, clock, 3, volume=volume_raw("0.001")), "bob")).denied
    await engine.set_limits(tenant, RiskScope.ACCOUNT, ACCOUNT, RiskLimits(max_open_positions=5), "admin")


def _comparable(stored: list[StoredAccount]) -> list[tuple[object, ...]]:
    return [
        (
            a.account,
            a.feed,
            a.state,
            a.risk_state,
            a.risk_reason,
            Decimal(str(a.peak_equity)),
            a.orders,
            a.requests,
            a.deals,
            a.positions,
        )
        for a in stored
    ]


async def test_memory_persistence_gives_the_database_s_events_audit_chain_and_books(rig: Rig) -> None:
    mem = _Memory(rig.tenant)
    mem.clock.set_ns(rig.clock.now_ns())
    await mem.start()
    await _scenario(rig.engine, rig.tenant, rig.clock, rig.tick)
    await _scenario(mem.engine, mem.tenant, mem.clock, mem.tick)
    await rig.engine.stop()
    await mem.engine.stop()
    # The same events, in the same order.
    assert [m for _, m in mem.seen] == [m for _, m in rig.seen]
    # The same audit chain, hash for hash, and it verifies.
    want = await rig.audit.records(rig.tenant, limit=10_000)
    assert len(want) > 10
    assert mem.audit.records(rig.tenant) == want
    assert mem.audit.verify(rig.tenant).ok
    # The same books reloaded.
    db_accounts, db_limits = await EngineStore(rig.db, rig.clock).load(rig.tenant)
    mem_accounts, mem_limits = await mem.store.load(rig.tenant)
    assert _comparable(mem_accounts) == _comparable(db_accounts)
    assert mem_limits == db_limits
    assert await mem.store.tenants_with_accounts() == [rig.tenant]


async def test_memory_audit_refuses_a_bad_event_and_its_order_row() -> None:
    mem = _Memory(TenantId("00000000-0000-0000-0000-000000000001"))
    await mem.start()
    writer = MemoryWriter(mem.store, mem.audit)
    req = _request(mem.tenant, mem.clock, 9)
    done = writer.write(Order.from_request(req), "", "order.submitted", {})  # no actor: refused
    with pytest.raises(BadInputError):
        done.result()
    accounts, _ = await mem.store.load(mem.tenant)
    assert accounts[0].orders == []
    await mem.engine.stop()
