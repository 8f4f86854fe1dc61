"""After a restart, every command still waiting for a report goes out again when the agent is back:
new orders, and MODIFY and REMOVE of pending orders (their requests are stored with them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_helpers import ACCOUNT, Rig, make_rig

from aitrading.common.bus.codec import Message
from aitrading.engine.engine import TradingEngine
from aitrading.engine.store import EngineStore
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.enums import OrderState, OrderType, TradeAction
from aitrading.model.values import price_raw
from aitrading.model.wire import AgentPresence, OrderReport
from aitrading.mt5.specs import DEFAULT_SPECS

TICKET = 501


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(tmp_path):
        yield r


async def _placed_limit(rig: Rig) -> OrderRequest:
    req = rig.request(action=TradeAction.PENDING, type=OrderType.BUY_LIMIT, price=price_raw("1.09000"))
    assert not (await rig.engine.submit(req, "user:alice")).denied
    await rig.engine.on_report(
        OrderReport(
            client_order_id=req.client_order_id,
            tenant=rig.tenant,
            account=ACCOUNT,
            retcode=10009,
            ts_ns=rig.clock.now_ns(),
            order=TICKET,
        )
    )
    return req


def _change(rig: Rig, action: TradeAction, **kw: object) -> OrderRequest:
    return rig.request(action=action, type=OrderType.BUY_LIMIT, order=TICKET, volume=0, deviation=0, **kw)


async def _restarted(rig: Rig) -> tuple[TradingEngine, list[OrderRequest]]:
    again = TradingEngine(rig.bus, EngineStore(rig.db, rig.clock), rig.audit, rig.clock, DEFAULT_SPECS)
    await again.load_tenant(rig.tenant)
    sent: list[OrderRequest] = []

    async def agent(_subject: str, msg: Message) -> None:
        assert isinstance(msg, TradeCommand)
        sent.append(msg.request)

    await rig.bus.subscribe(f"ord.cmd.{rig.tenant}.{ACCOUNT}", agent)
    presence = AgentPresence(
        tenant=rig.tenant, device_id="pc1", accounts=[ACCOUNT], online=True, ts_ns=rig.clock.now_ns()
    )
    await again.on_presence(presence)
    return again, sent


async def test_modify_and_remove_waiting_for_a_report_are_sent_again_after_a_restart(rig: Rig) -> None:
    limit = await _placed_limit(rig)
    modify = _change(rig, TradeAction.MODIFY, price=price_raw("1.08500"), sl=price_raw("1.08000"))
    remove = _change(rig, TradeAction.REMOVE)
    opening = rig.request()
    for req in (modify, remove, opening):
        assert not (await rig.engine.submit(req, "user:alice")).denied
    again, sent = await _restarted(rig)
    by_id = {r.client_order_id: r for r in sent}
    assert set(by_id) == {modify.client_order_id, remove.client_order_id, opening.client_order_id}
    assert by_id[modify.client_order_id] == modify  # the very request, action and target included
    assert by_id[remove.client_order_id] == remove
    assert again.counters["resent"] == 3
    # The restarted engine closes each command when its report comes and applies it to its target.
    book = again.book(rig.tenant, ACCOUNT)
    assert book is not None
    for command in (modify, remove):
        await again.on_report(
            OrderReport(
                client_order_id=command.client_order_id,
                tenant=rig.tenant,
                account=ACCOUNT,
                retcode=10009,
                ts_ns=rig.clock.now_ns(),
                order=TICKET,
            )
        )
        if command is modify:
            target = book.orders[limit.client_order_id]
            assert (target.state, target.price, target.sl) == (OrderState.PLACED, modify.price, modify.sl)
    assert book.orders[limit.client_order_id].state is OrderState.CANCELED
    assert book.orders[remove.client_order_id].state is OrderState.CANCELED
    assert book.orders[modify.client_order_id].state is OrderState.CANCELED
    assert book.order_by_ticket(TICKET) == book.orders[limit.client_order_id]


async def test_commands_already_answered_are_not_sent_again(rig: Rig) -> None:
    await _placed_limit(rig)
    remove = _change(rig, TradeAction.REMOVE)
    await rig.engine.submit(remove, "user:alice")
    await rig.engine.on_report(
        OrderReport(
            client_order_id=remove.client_order_id,
            tenant=rig.tenant,
            account=ACCOUNT,
            retcode=10009,
            ts_ns=rig.clock.now_ns(),
            order=TICKET,
        )
    )
    _, sent = await _restarted(rig)
    assert sent == []
