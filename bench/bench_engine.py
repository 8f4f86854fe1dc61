"""Benchmark of the trading engine's hot path: risk check + order placement.

Prints, for N orders on one account with limits at every level:
- the decision path alone (structural + MT5 pre-trade checks + risk limits + state transition), p50/p99 µs,
  and what its tail is made of: garbage collections during the loop, and the first calls (cold code: the
  interpreter specialises bytecode after a few runs, caches are cold) next to the rest;
- the whole `submit` (decision, order row and audit event committed to SQLite, command published on the
  in-process bus), one caller at a time: p50/p99 and orders/s;
- the same with C concurrent callers (API requests, strategies): p50/p99 per submit, orders/s, and how
  many transactions the group-commit writer needed.
Figures only, never pass/fail. Run: `aitrading bench engine [--orders N]` or
`python -m bench.bench_engine --orders N --concurrency C`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import LiveClock
from aitrading.engine.engine import TradingEngine
from aitrading.engine.limits import RiskLimits, RiskScope
from aitrading.engine.store import EngineStore
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import MarginMode, OrderType, TradeAction
from aitrading.model.events import OrderSubmitted
from aitrading.model.ids import AccountId, ClientOrderIdGenerator, TenantId
from aitrading.model.market import Tick
from aitrading.model.orders import Order, transition
from aitrading.model.values import price_raw, volume_raw
from aitrading.model.wire import AccountSnapshot
from aitrading.mt5.specs import DEFAULT_SPECS
from aitrading.storage.audit import AuditLog
from aitrading.storage.oltp import Database, ensure_tenant


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(orders: int = 2000, concurrency: int = 32) -> dict[str, float]:
    clock = LiveClock()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite'}", clock=clock, migrate_on_start=True)
        await db.start()
        async with db.session() as s:
            tenant = TenantId(str((await ensure_tenant(s, "bench", "Bench")).id))
        bus = MemoryBus()
        await bus.connect()
        engine = TradingEngine(bus, EngineStore(db, clock), AuditLog(db, clock), clock, DEFAULT_SPECS)
        await engine.start()
        account = AccountId("1")
        state = AccountState.of(
            login=1, currency="USD", leverage=100, margin_mode=MarginMode.RETAIL_HEDGING, balance="1000000000"
        )
        await engine.on_snapshot(
            AccountSnapshot(
                tenant=tenant,
                account=account,
                ts_ns=clock.now_ns(),
                account_state=state,
                positions=[],
                orders=[],
                deals_from_ns=0,
                deals=[],
            )
        )
        engine.books[(tenant, account)].feed = "SIM"
        await engine.on_tick(
            Tick(
                feed="SIM",
                symbol="EURUSD",
                time_msc=clock.now_ms(),
                bid=price_raw("1.1"),
                ask=price_raw("1.10010"),
            )
        )
        limits = RiskLimits(
            max_volume_per_order=volume_raw("10"),
            max_position_volume=volume_raw("100000"),
            max_gross_exposure=Decimal("1e12"),
            max_open_positions=1000,
            max_orders_per_minute=10_000_000,
            price_band_pct=Decimal(5),
        )
        for scope, sid in ((RiskScope.TENANT, tenant), (RiskScope.ACCOUNT, account)):
            await engine.set_limits(tenant, scope, sid, limits, "bench")
        ids = ClientOrderIdGenerator(clock, prefix="B")
        book = engine.books[(tenant, account)]

        def request() -> OrderRequest:
            coid = ids()
            return OrderRequest(
                client_order_id=coid,
                tenant=tenant,
                account=account,
                ts_ns=clock.now_ns(),
                symbol="EURUSD",
                action=TradeAction.DEAL,
                type=OrderType.BUY,
                volume=volume_raw("0.1"),
                deviation=20,
                comment=coid,
            )

        decide: list[float] = []
        collections = 0

        def count_collection(phase: str, _info: dict[str, int]) -> None:
            nonlocal collections
            collections += phase == "start"

        gc.callbacks.append(count_collection)
        for _ in range(orders):
            req = request()
            t0 = time.perf_counter_ns()
            verdict = engine._precheck(req, book, clock.now_ns())  # the hot path itself
            denial = engine.risk.check(req, book, engine.last_tick("SIM", "EURUSD"), engine.notional(book))
            transition(
                Order.from_request(req),
                OrderSubmitted(
                    tenant=tenant,
                    account=account,
                    client_order_id=req.client_order_id,
                    ts_ns=req.ts_ns,
                    request=req,
                ),
            )
            decide.append((time.perf_counter_ns() - t0) / 1000)
            assert verdict is None
            assert denial is None
        gc.callbacks.remove(count_collection)
        full: list[float] = []
        started = time.perf_counter()
        for _ in range(orders):
            req = request()
            t0 = time.perf_counter_ns()
            result = await engine.submit(req, "bench")
            full.append((time.perf_counter_ns() - t0) / 1000)
            assert not result.denied, result
        elapsed = time.perf_counter() - started
        writer = getattr(engine, "_writer", None)
        batches_before = getattr(writer, "batches", 0)
        many: list[float] = []

        async def caller(n: int) -> None:
            for _ in range(n):
                req = request()
                t0 = time.perf_counter_ns()
                result = await engine.submit(req, "bench")
                many.append((time.perf_counter_ns() - t0) / 1000)
                assert not result.denied, result

        started = time.perf_counter()
        share, extra = divmod(orders, concurrency)
        await asyncio.gather(*(caller(share + (1 if i < extra else 0)) for i in range(concurrency)))
        elapsed_many = time.perf_counter() - started
        batches = getattr(writer, "batches", 0) - batches_before
        await engine.stop()
        await bus.close()
        await db.stop()
    decide_p99 = _pct(decide, 0.99)
    return {
        "decide_p50_us": statistics.median(decide),
        "decide_p99_us": decide_p99,
        "decide_first10_p50_us": statistics.median(decide[:10]),
        "decide_slow_in_first10": float(sum(1 for v in decide[:10] if v >= decide_p99)),
        "decide_gc_collections": float(collections),
        "submit_p50_us": statistics.median(full),
        "submit_p99_us": _pct(full, 0.99),
        "orders_per_s": orders / elapsed,
        "many_p50_us": statistics.median(many),
        "many_p99_us": _pct(many, 0.99),
        "many_orders_per_s": orders / elapsed_many,
        "many_transactions": float(batches),
    }


def main(orders: int = 2000, concurrency: int = 32) -> dict[str, float]:
    figures = asyncio.run(run(orders, concurrency))
    print(f"engine hot path, {orders} orders, limits at tenant and account level")
    print(
        f"  risk check + pre-trade checks + order state: p50 {figures['decide_p50_us']:.1f} µs, "
        f"p99 {figures['decide_p99_us']:.1f} µs (goal ≤ 100 µs p99)"
    )
    print(
        f"  decision tail: first 10 calls p50 {figures['decide_first10_p50_us']:.1f} µs "
        f"({figures['decide_slow_in_first10']:.0f} of them ≥ p99), "
        f"{figures['decide_gc_collections']:.0f} garbage collections during the {orders} decisions"
    )
    print(
        f"  whole submit (+ SQLite order row, audit event, bus command): "
        f"p50 {figures['submit_p50_us']:.0f} µs, "
        f"p99 {figures['submit_p99_us']:.0f} µs, {figures['orders_per_s']:.0f} orders/s"
    )
    tx = figures["many_transactions"]
    batching = f", {tx:.0f} transactions (group commit)" if tx else ""
    print(
        f"  whole submit, {concurrency} concurrent callers: p50 {figures['many_p50_us']:.0f} µs, "
        f"p99 {figures['many_p99_us']:.0f} µs, {figures['many_orders_per_s']:.0f} orders/s{batching}"
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    main(args.orders, args.concurrency)
