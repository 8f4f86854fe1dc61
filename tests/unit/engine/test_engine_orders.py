"""The trading engine: pre-trade retcodes, audited risk denials, execution reports, books, restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from engine_helpers import ACCOUNT, Rig, account_state, make_rig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitrading.common.bus.codec import Message
from aitrading.engine.engine import TradingEngine
from aitrading.engine.limits import RiskLimits, RiskScope, RiskState
from aitrading.engine.store import EngineStore
from aitrading.model.commands import TradeCommand
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, OrderState, OrderType, Side, TradeAction
from aitrading.model.events import AccountRiskStateChanged, OrderDenied, PositionOpened, ReconciliationAlert
from aitrading.model.positions import Position
from aitrading.model.values import price_raw, volume_raw
from aitrading.model.wire import AccountSnapshot, AgentPresence, OrderReport
from aitrading.mt5.specs import DEFAULT_SPECS

LOT = volume_raw("1")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(tmp_path):
        yield r


def deal_for(rep_order: int, ticket: int, side: Side, volume: int, price: int, ts: int, comment: str) -> Deal:
    return Deal(
        ticket=ticket,
        order=rep_order,
        position_id=ticket,
        symbol="EURUSD",
        type=DealType.BUY if side is Side.BUY else DealType.SELL,
        entry=DealEntry.IN,
        volume=volume,
        price=price,
        time_ns=ts,
        comment=comment,
    )


@pytest.mark.parametrize(
    ("overrides", "retcode", "reason"),
    [
        ({"volume": volume_raw("0.001")}, 10014, "invalid_volume"),
        ({"sl": price_raw("1.09999")}, 10016, "invalid_stops"),
        ({"volume": volume_raw("100")}, 10019, "no_money"),
        ({"symbol": "NOPE"}, 10013, "unknown_symbol"),
        ({"volume": 0}, 10013, "invalid_request"),
    ],
)
async def test_bad_requests_get_mt5_retcodes_and_an_audited_denial(
    rig: Rig, overrides: dict[str, object], retcode: int, reason: str
) -> None:
    result = await rig.engine.submit(rig.request(**overrides), "user:alice")
    assert result.denied
    assert result.retcode == retcode
    assert result.reason == reason
    assert result.order.state is OrderState.REJECTED
    denied = rig.of(OrderDenied)
    assert len(denied) == 1
    assert denied[0].reason == reason  # type: ignore[attr-defined]
    assert not [m for _, m in rig.seen if isinstance(m, TradeCommand)]
    assert (await rig.kinds())[-1] == "order.denied"


async def test_market_closed_is_refused_with_market_closed(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path):
        rig.engine._market_open = lambda _f, _s, _n: False  # the session calendar says closed
        result = await rig.engine.submit(rig.request(), "user:alice")
        assert (result.retcode, result.reason) == (10018, "market_closed")


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (RiskLimits(max_volume_per_order=volume_raw("0.05")), "max_volume"),
        (RiskLimits(max_position_volume=volume_raw("0.05")), "max_position"),
        (RiskLimits(max_open_positions=0), "max_open_positions"),
        (RiskLimits(max_gross_exposure=Decimal(1000)), "max_gross_exposure"),
        (RiskLimits(kill_switch=True), "kill_switch"),
        (RiskLimits(price_band_pct=Decimal("0.5")), "price_band"),
    ],
)
async def test_risk_limits_deny_with_their_reason(rig: Rig, limits: RiskLimits, reason: str) -> None:
    await rig.engine.set_limits(rig.tenant, RiskScope.ACCOUNT, ACCOUNT, limits, "user:admin")
    req = rig.request(action=TradeAction.PENDING, type=OrderType.BUY_LIMIT, price=price_raw("1.05"))
    if reason != "price_band":
        req = rig.request()
    result = await rig.engine.submit(req, "user:alice")
    assert result.denied
    assert result.reason == reason
    assert result.retcode == 10006
    assert "risk.limits" in await rig.kinds()


async def test_order_rate_limit_counts_orders_in_the_last_minute(rig: Rig) -> None:
    await rig.engine.set_limits(
        rig.tenant, RiskScope.TENANT, rig.tenant, RiskLimits(max_orders_per_minute=2), "a"
    )
    results = [await rig.engine.submit(rig.request(), "user:alice") for _ in range(3)]
    assert [r.reason for r in results] == ["", "", "order_rate"]
    rig.clock.advance(61)
    await rig.tick("EURUSD", "1.10000", "1.10010")
    assert not (await rig.engine.submit(rig.request(), "user:alice")).denied


async def test_accepted_order_goes_to_the_agent_and_its_report_books_deal_and_position(rig: Rig) -> None:
    commands: list[TradeCommand] = []

    async def agent(_subject: str, msg: Message) -> None:
        assert isinstance(msg, TradeCommand)
        commands.append(msg)

    await rig.bus.subscribe(f"ord.cmd.{rig.tenant}.{ACCOUNT}", agent)
    req = rig.request()
    result = await rig.engine.submit(req, "user:alice")
    assert not result.denied
    assert result.order.state is OrderState.REQUEST_ADD
    assert [c.request for c in commands] == [req]
    ask = price_raw("1.10010")
    deal = deal_for(501, 9001, Side.BUY, req.volume, ask, rig.clock.now_ns(), req.client_order_id)
    report = OrderReport(
        client_order_id=req.client_order_id,
        tenant=rig.tenant,
        account=ACCOUNT,
        retcode=10009,
        ts_ns=rig.clock.now_ns(),
        order=501,
        deal=9001,
        volume=req.volume,
        price=ask,
        deals=[deal],
    )
    await rig.bus.publish(f"ord.rpt.{rig.tenant}.{ACCOUNT}", report)
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    order = book.orders[req.client_order_id]
    assert order.state is OrderState.FILLED
    assert order.ticket == 501
    assert order.deals == (9001,)
    assert len(book.positions) == 1
    assert rig.of(PositionOpened)
    await rig.bus.publish(f"ord.rpt.{rig.tenant}.{ACCOUNT}", report)  # a redelivered report changes nothing
    assert book.orders[req.client_order_id] == order
    assert (await rig.kinds()).count("deal.booked") == 1  # booked and audited once, not per report
    # Marked at the bid: 0.10 lot × 100,000 × (1.10100 − 1.10010) = 9.00 USD.
    await rig.tick("EURUSD", "1.10100", "1.10110")
    assert book.state.profit == Decimal("9.00")
    assert book.state.equity == book.state.balance + book.state.profit
    kinds = await rig.kinds()
    assert {"order.submitted", "order.report", "deal.booked", "order.state"} <= set(kinds)


async def test_books_survive_a_restart(rig: Rig) -> None:
    req = rig.request()
    await rig.engine.submit(req, "user:alice")
    await rig.engine.set_limits(rig.tenant, RiskScope.ACCOUNT, ACCOUNT, RiskLimits(max_open_positions=5), "a")
    again = TradingEngine(rig.bus, EngineStore(rig.db, rig.clock), rig.audit, rig.clock, DEFAULT_SPECS)
    await again.load_tenant(rig.tenant)
    book = again.book(rig.tenant, ACCOUNT)
    assert book is not None
    assert book.orders[req.client_order_id].state is OrderState.REQUEST_ADD
    assert again.risk.limits(RiskScope.ACCOUNT, rig.tenant, ACCOUNT) == RiskLimits(max_open_positions=5)


async def test_agent_online_again_gets_the_commands_still_waiting_for_a_report(rig: Rig) -> None:
    req = rig.request()
    await rig.engine.submit(req, "user:alice")
    commands: list[TradeCommand] = []

    async def agent(_subject: str, msg: Message) -> None:
        assert isinstance(msg, TradeCommand)
        commands.append(msg)

    await rig.bus.subscribe(f"ord.cmd.{rig.tenant}.{ACCOUNT}", agent)
    presence = AgentPresence(
        tenant=rig.tenant, device_id="pc1", accounts=[ACCOUNT], online=True, ts_ns=rig.clock.now_ns()
    )
    await rig.bus.publish(f"agent.presence.{rig.tenant}", presence)
    assert [c.request.client_order_id for c in commands] == [req.client_order_id]
    assert "order.resent" in await rig.kinds()


async def test_reconciliation_books_missing_deals_alerts_on_foreign_trades_and_adopts_positions(
    rig: Rig,
) -> None:
    now = rig.clock.now_ns()
    foreign = deal_for(777, 8001, Side.SELL, LOT // 10, price_raw("1.10000"), now, "manual")
    position = Position(
        ticket=8001, identifier=8001, symbol="EURUSD", type=Side.SELL, volume=LOT // 10, cost=Decimal("0.11")
    )
    snap = AccountSnapshot(
        tenant=rig.tenant,
        account=ACCOUNT,
        ts_ns=now,
        account_state=account_state(),
        positions=[position],
        orders=[],
        deals_from_ns=0,
        deals=[foreign],
    )
    await rig.engine.on_snapshot(snap)
    alerts = rig.of(ReconciliationAlert)
    assert [a.kind for a in alerts] == ["unknown_deal"]  # type: ignore[attr-defined]
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    assert 8001 in book.deals
    assert list(book.positions) == [8001]
    await rig.engine.on_snapshot(
        AccountSnapshot(
            tenant=rig.tenant,
            account=ACCOUNT,
            ts_ns=now,
            account_state=account_state(),
            positions=[],
            orders=[],
            deals_from_ns=0,
            deals=[foreign],
        )
    )
    assert [a.kind for a in rig.of(ReconciliationAlert)][-1] == "position_mismatch"  # type: ignore[attr-defined]
    assert book.positions == {}
    assert "reconcile.alert" in await rig.kinds()


async def test_daily_loss_moves_the_account_to_reducing_and_only_closing_orders_pass(rig: Rig) -> None:
    await rig.engine.set_limits(
        rig.tenant, RiskScope.ACCOUNT, ACCOUNT, RiskLimits(max_daily_loss=Decimal(50)), "a"
    )
    req = rig.request(volume=LOT)
    await rig.engine.submit(req, "user:alice")
    ask = price_raw("1.10010")
    deal = deal_for(600, 9100, Side.BUY, LOT, ask, rig.clock.now_ns(), req.client_order_id)
    await rig.engine.on_report(
        OrderReport(
            client_order_id=req.client_order_id,
            tenant=rig.tenant,
            account=ACCOUNT,
            retcode=10009,
            ts_ns=rig.clock.now_ns(),
            order=600,
            deals=[deal],
        )
    )
    await rig.tick("EURUSD", "1.09900", "1.09910")  # 1 lot × 100,000 × −0.0011 = −110 USD
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    assert book.risk_state is RiskState.REDUCING
    assert rig.of(AccountRiskStateChanged)
    assert (await rig.engine.submit(rig.request(), "u")).reason == "reducing_only"
    close = rig.request(type=OrderType.SELL, position=9100, volume=LOT)
    assert not (await rig.engine.submit(close, "u")).denied


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.integers(min_value=-500, max_value=500), min_size=1, max_size=20))
async def test_equity_is_balance_plus_floating_at_every_tick(rig: Rig, moves: list[int]) -> None:
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    if not book.positions:
        req = rig.request()
        await rig.engine.submit(req, "u")
        deal = deal_for(
            700, 9200, Side.BUY, req.volume, price_raw("1.10010"), rig.clock.now_ns(), req.client_order_id
        )
        await rig.engine.on_report(
            OrderReport(
                client_order_id=req.client_order_id,
                tenant=rig.tenant,
                account=ACCOUNT,
                retcode=10009,
                ts_ns=rig.clock.now_ns(),
                order=700,
                deals=[deal],
            )
        )
    bid = price_raw("1.10000")
    for move in moves:
        bid += move * 10_000
        await rig.engine.on_tick(
            __import__("aitrading.model.market", fromlist=["Tick"]).Tick(
                feed="SIM", symbol="EURUSD", time_msc=rig.clock.now_ms(), bid=bid, ask=bid + 100_000
            )
        )
        floating = sum((p.profit + p.swap for p in book.positions.values()), Decimal(0))
        assert book.state.equity == book.state.balance + book.state.credit + floating
