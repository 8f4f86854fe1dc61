"""Shared set-up for the engine tests: SQLite books, the in-process bus, an account and quotes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.engine.engine import TradingEngine
from aitrading.engine.store import EngineStore
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, MarginMode, OrderType, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.market import Tick
from aitrading.model.values import price_raw, volume_raw
from aitrading.model.wire import AccountSnapshot, OrderReport
from aitrading.mt5.specs import DEFAULT_SPECS
from aitrading.storage.audit import AuditLog
from aitrading.storage.oltp import Database, ensure_tenant

FEED = "SIM"
ACCOUNT = AccountId("10001")


@dataclass
class Rig:
    clock: TestClock
    db: Database
    bus: MemoryBus
    engine: TradingEngine
    audit: AuditLog
    tenant: TenantId
    seen: list[tuple[str, Message]] = field(default_factory=list)
    n: int = 0

    def request(self, **kw: object) -> OrderRequest:
        self.n += 1
        base: dict[str, object] = {
            "client_order_id": ClientOrderId(f"T{self.n:06d}"),
            "tenant": self.tenant,
            "account": ACCOUNT,
            "ts_ns": self.clock.now_ns(),
            "symbol": "EURUSD",
            "action": TradeAction.DEAL,
            "type": OrderType.BUY,
            "volume": volume_raw("0.10"),
            "deviation": 20,
        }
        base.update(kw)
        return OrderRequest(**base)  # type: ignore[arg-type]

    async def tick(self, symbol: str, bid: str, ask: str) -> Tick:
        tick = Tick(
            feed=FEED, symbol=symbol, time_msc=self.clock.now_ms(), bid=price_raw(bid), ask=price_raw(ask)
        )
        await self.bus.publish(f"md.tick.{FEED}.{symbol}", tick)
        return tick

    async def open_long(
        self, *, ticket: int, order: int | None = None, account: AccountId = ACCOUNT, magic: int = 0
    ) -> None:
        """Submit a 0.10-lot EURUSD buy and report it filled at 1.10010 (deal and position `ticket`)."""
        req = self.request(account=account, magic=magic)
        assert not (await self.engine.submit(req, "u")).denied
        deal = Deal(
            ticket=ticket,
            order=order or ticket,
            position_id=ticket,
            symbol="EURUSD",
            type=DealType.BUY,
            entry=DealEntry.IN,
            volume=req.volume,
            price=price_raw("1.10010"),
            time_ns=self.clock.now_ns(),
            magic=magic,
            comment=req.client_order_id,
        )
        report = OrderReport(
            client_order_id=req.client_order_id,
            tenant=self.tenant,
            account=account,
            retcode=10009,
            ts_ns=self.clock.now_ns(),
            order=order or ticket,
            deals=[deal],
        )
        await self.engine.on_report(report)

    def of(self, kind: type[Message]) -> list[Message]:
        return [m for _, m in self.seen if isinstance(m, kind)]

    async def kinds(self) -> list[str]:
        return [r.kind for r in await self.audit.records(self.tenant)]


def account_state(balance: str = "10000", mode: MarginMode = MarginMode.RETAIL_HEDGING) -> AccountState:
    return AccountState.of(login=10001, currency="USD", leverage=100, margin_mode=mode, balance=balance)


async def announce_account(rig: Rig, tenant: TenantId, account: AccountId) -> None:
    """Give the engine an account of `tenant` (an empty terminal snapshot), quoted on the rig's feed."""
    await rig.engine.on_snapshot(
        AccountSnapshot(
            tenant=tenant,
            account=account,
            ts_ns=rig.clock.now_ns(),
            account_state=account_state(),
            positions=[],
            orders=[],
            deals_from_ns=0,
            deals=[],
        )
    )
    rig.engine.books[(tenant, account)].feed = FEED


async def make_rig(tmp_path: Path, *, mode: MarginMode = MarginMode.RETAIL_HEDGING) -> AsyncIterator[Rig]:
    clock = TestClock()
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'oltp.sqlite'}", clock=clock, migrate_on_start=True)
    await db.start()
    async with db.session() as s:
        tenant = TenantId(str((await ensure_tenant(s, f"t{uuid.uuid4().hex[:8]}", "Test")).id))
    bus = MemoryBus()
    await bus.connect()
    audit = AuditLog(db, clock)
    engine = TradingEngine(bus, EngineStore(db, clock), audit, clock, DEFAULT_SPECS)
    await engine.start()
    rig = Rig(clock, db, bus, engine, audit, tenant)

    async def record(subject: str, msg: Message) -> None:
        rig.seen.append((subject, msg))

    await bus.subscribe("ord.>", record)
    snap = AccountSnapshot(
        tenant=tenant,
        account=ACCOUNT,
        ts_ns=clock.now_ns(),
        account_state=account_state(mode=mode),
        positions=[],
        orders=[],
        deals_from_ns=0,
        deals=[],
    )
    await engine.on_snapshot(snap)
    engine.books[(tenant, ACCOUNT)].feed = FEED
    for symbol, bid, ask in (
        ("EURUSD", "1.10000", "1.10010"),
        ("USDJPY", "150.000", "150.010"),
        ("GBPUSD", "1.25000", "1.25010"),
    ):
        await rig.tick(symbol, bid, ask)
    try:
        yield rig
    finally:
        await engine.stop()
        await bus.close()
        await db.stop()
