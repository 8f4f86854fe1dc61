"""A quote takes the engine's quick path (no lock to take when nobody holds or awaits it; positions marked on
integers) and ends exactly where the locked path with MT5's formulas on fractions ends: the same books, the
same account states digit for digit, the same risk states at the very quote a limit is reached, the same
events and the same audit chain. Positions include profits converted through other quotes (USDJPY, GBPJPY,
EURGBP in a USD account); the quotes cross a UTC midnight and repeat themselves."""

from __future__ import annotations

import asyncio
import random
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
import pytest

from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.engine.engine import TradingEngine
from aitrading.engine.limits import BreachAction, RiskLimits, RiskScope, RiskState
from aitrading.engine.memory import MemoryAudit, MemoryStore, MemoryWriter
from aitrading.model import calc
from aitrading.model._exact import notional_decimal
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode, Side
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.values import VOLUME_SCALE, price_raw
from aitrading.model.wire import AccountSnapshot
from aitrading.mt5.specs import DEFAULT_SPECS

FEED = "SIM"
TENANT = TenantId(str(uuid.uuid5(uuid.NAMESPACE_URL, "aitrading:test-tick-paths")))
ACCOUNT = AccountId("10001")
SPECS = {
    **DEFAULT_SPECS,
    "EURGBP": msgspec.structs.replace(
        DEFAULT_SPECS["EURUSD"], name="EURGBP", currency_profit="GBP", description="Euro vs Pound"
    ),
}
START = {
    "EURUSD": "1.10000",
    "USDJPY": "150.000",
    "GBPJPY": "190.000",
    "EURGBP": "0.85000",
    "GBPUSD": "1.25000",
}
_MIDNIGHT_NS = 1_704_153_600 * 10**9  # 2024-01-02 00:00 UTC
_enc = msgspec.json.Encoder()


class _Exact:
    """MT5's profit on fractions, converted at the engine's quotes (not an `AccountProfit`: `mark`'s general
    path, and `AccountState.updated` of the `Decimal` floating result)."""

    def __init__(self, engine: TradingEngine) -> None:
        self._rates = engine._rates(FEED)

    def __call__(
        self, symbol: str, side: Side, volume: int, price_open: Fraction, close: Fraction
    ) -> Decimal:
        spec = SPECS[symbol]
        amount = (
            (close - price_open) * side.sign * Fraction(volume, VOLUME_SCALE) * Fraction(spec.contract_size)
        )
        loss = amount < 0
        rate = calc.conversion_rate(
            spec.currency_profit, "USD", self._rates, use_ask_direct=loss, use_ask_inverse=not loss
        )
        return calc.to_money(amount * rate, 2)


def _positions() -> list[Position]:
    legs = [
        (1, "EURUSD", Side.BUY, VOLUME_SCALE, "1.10010"),
        (2, "USDJPY", Side.SELL, VOLUME_SCALE // 2, "150.200"),
        (3, "GBPJPY", Side.BUY, 3 * VOLUME_SCALE // 10, "189.900"),
        (4, "EURGBP", Side.SELL, 2 * VOLUME_SCALE, "0.84990"),
        (5, "EURUSD", Side.SELL, VOLUME_SCALE // 10, "1.09995"),
    ]
    return [
        Position(
            ticket=t,
            identifier=t,
            symbol=s,
            type=side,
            volume=v,
            cost=notional_decimal(price_raw(p) * v),
            swap=Decimal("-1.20") if t == 2 else Decimal(0),
        )
        for t, s, side, v, p in legs
    ]


def _ticks(seed: int, n: int) -> list[Tick]:
    rng = random.Random(seed)
    mids = {s: price_raw(p) for s, p in START.items()}
    now_ms = _MIDNIGHT_NS // 10**6 - n * 150  # the quotes cross midnight: a new day's start equity
    out: list[Tick] = []
    for _ in range(n):
        symbol = rng.choice(list(START))
        if rng.random() < 0.7:  # else the same quote again
            mids[symbol] += rng.randint(-40, 40) * (10**4 if symbol.endswith("JPY") else 100)
        now_ms += rng.randint(0, 400)
        out.append(Tick(feed=FEED, symbol=symbol, time_msc=now_ms, bid=mids[symbol], ask=mids[symbol] + 150))
    return out


async def _run(path: str, ticks: list[Tick], limits: RiskLimits | None) -> dict[str, Any]:
    clock = TestClock(ticks[0].time_msc * 10**6 - 10**9)
    bus = MemoryBus(streams=())
    await bus.connect()
    store, audit = MemoryStore(), MemoryAudit(clock)
    engine = TradingEngine(bus, store, audit, clock, SPECS, writer=MemoryWriter(store, audit))
    await engine.start()
    seen: list[Message] = []

    async def record(subject: str, msg: Message) -> None:
        seen.append(msg)

    await bus.subscribe("ord.>", record)
    state = AccountState.of(
        login=10001,
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_HEDGING,
        balance="20000",
        margin="2875.55",
    )
    snap = AccountSnapshot(
        tenant=TENANT,
        account=ACCOUNT,
        ts_ns=clock.now_ns(),
        account_state=state,
        positions=_positions(),
        orders=[],
        deals_from_ns=0,
        deals=[],
    )
    await engine.on_snapshot(snap)
    book = engine.books[(TENANT, ACCOUNT)]
    book.feed = FEED
    if limits is not None:
        await engine.set_limits(TENANT, RiskScope.ACCOUNT, ACCOUNT, limits, "admin")
    if path == "exact":
        book.profit_fn = _Exact(engine)  # type: ignore[assignment]
    steps = []
    for tick in ticks:
        clock.set_ns(max(clock.now_ns(), tick.time_msc * 10**6))
        error = ""
        try:
            if path == "quick":
                await engine.on_tick(tick)
            else:  # what every quote did before the quick path: the lock, then `_on_tick`
                await engine._locked(engine._on_tick(tick))
        except ValueError as exc:  # no quote converts GBP or JPY yet: refused alike, half-marked alike
            error = str(exc)
        steps.append(
            (
                error,
                _enc.encode(book.state),
                _enc.encode(sorted(book.positions.items())),
                book.risk_state,
                book.risk_reason,
                str(book.peak_equity),
                str(book.day_start_equity),
                book.day,
            )
        )
    await engine.stop()
    await bus.close()
    records = audit.records(TENANT)
    return {
        "steps": steps,
        "seen": [_enc.encode(m) for m in seen],
        "audit": [(r.kind, r.hash) for r in records],
        "risk": book.risk_state,
    }


def _boundary(steps: list[tuple[Any, ...]]) -> tuple[Decimal, Decimal]:
    """The largest daily loss and drawdown the exact path reaches (limits set there are met exactly once)."""
    loss = dd = Decimal(0)
    for _, state_json, _, _, _, peak, day_start, _ in steps:
        equity = msgspec.json.decode(state_json, type=AccountState).equity
        loss = max(loss, Decimal(day_start) - equity)
        dd = max(dd, (Decimal(peak) - equity) * Decimal(100) / Decimal(peak))
    return loss, dd


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_the_quick_path_ends_where_the_exact_locked_path_ends(seed: int) -> None:
    ticks = _ticks(seed, 400)
    free = await _run("exact", ticks, RiskLimits())  # limits that never bite: the same day start
    loss, dd = _boundary(free["steps"])
    assert loss > 0
    assert dd > 0
    if seed == 1:
        assert any(step[0] for step in free["steps"])  # some quotes came before their conversion quote
    cases = [
        None,
        RiskLimits(max_daily_loss=loss),  # REDUCING exactly at the quote the loss reaches the limit
        RiskLimits(max_daily_loss=loss + Decimal("0.01")),  # one cent short: never
        RiskLimits(max_drawdown_pct=dd, daily_loss_action=BreachAction.HALT),  # HALTED at the boundary
        RiskLimits(max_daily_loss=loss, max_drawdown_pct=dd),
    ]
    for limits in cases:
        exact = await _run("exact", ticks, limits)
        quick = await _run("quick", ticks, limits)
        locked = await _run("locked", ticks, limits)
        assert quick == exact
        assert locked == exact
    breached = await _run("quick", ticks, RiskLimits(max_daily_loss=loss))
    assert any(step[3] is RiskState.REDUCING for step in breached["steps"])
    assert "risk.state" in [kind for kind, _ in breached["audit"]]
    short = await _run("quick", ticks, RiskLimits(max_daily_loss=loss + Decimal("0.01")))
    assert "risk.state" not in [kind for kind, _ in short["audit"]]


async def test_a_quote_waits_for_a_change_that_holds_the_lock() -> None:
    ticks = _ticks(7, 3)
    clock = TestClock(ticks[0].time_msc * 10**6)
    bus = MemoryBus(streams=())
    await bus.connect()
    store, audit = MemoryStore(), MemoryAudit(clock)
    engine = TradingEngine(bus, store, audit, clock, SPECS, writer=MemoryWriter(store, audit))
    await engine.start()
    state = AccountState.of(
        login=1, currency="USD", leverage=100, margin_mode=MarginMode.RETAIL_HEDGING, balance="1000"
    )
    snap = AccountSnapshot(
        tenant=TENANT,
        account=ACCOUNT,
        ts_ns=clock.now_ns(),
        account_state=state,
        positions=_positions()[:1],
        orders=[],
        deals_from_ns=0,
        deals=[],
    )
    await engine.on_snapshot(snap)
    book = engine.books[(TENANT, ACCOUNT)]
    book.feed = FEED
    tick = Tick(
        feed=FEED, symbol="EURUSD", time_msc=ticks[0].time_msc, bid=price_raw("1.2"), ask=price_raw("1.2")
    )
    release = asyncio.Event()

    async def hold() -> None:
        async with engine._lock:
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    quote = asyncio.create_task(engine.on_tick(tick))
    await asyncio.sleep(0)
    assert book.positions[1].price_current == 0  # not marked while another change holds the lock
    release.set()
    await asyncio.gather(holder, quote)
    assert book.positions[1].price_current == price_raw("1.2")
    assert book.state.profit == Decimal("9990.00")  # 1 lot × (1.20000 − 1.10010) × 100,000
    await engine.stop()
    await bus.close()
