"""CLOSE_BY through the engine: checked, sent to the agent, executed by the simulated terminal, booked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from engine_helpers import ACCOUNT, FEED, Rig, make_rig

from aitrading.agent.executor import OrderExecutor, TradingAccount
from aitrading.agent.journal import OrderJournal
from aitrading.common.bus.codec import Message
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.enums import (
    DealEntry,
    MarginMode,
    OrderFilling,
    OrderState,
    OrderType,
    Side,
    TradeAction,
)
from aitrading.model.values import volume_raw
from aitrading.mt5 import SimAccount, SimulatedTerminal, SyntheticTickSource, default_specs

HEDGING = 2  # ACCOUNT_MARGIN_MODE_RETAIL_HEDGING


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(tmp_path):
        yield r


@pytest.fixture
def terminal(rig: Rig) -> Iterator[SimulatedTerminal]:
    source = SyntheticTickSource(start_ms=rig.clock.now_ms() - 60_000)
    term = SimulatedTerminal(
        rig.clock, default_specs("EURUSD"), source, account=SimAccount(margin_mode=HEDGING)
    )
    assert term.initialize()
    yield term
    term.shutdown()


@pytest.fixture
async def agent(rig: Rig, terminal: SimulatedTerminal, tmp_path: Path) -> AsyncIterator[OrderExecutor]:
    """The agent of the account, wired to the engine as the bridge would: commands in, reports out."""
    executor = OrderExecutor(
        OrderJournal(tmp_path / "journal.sqlite"), [TradingAccount(ACCOUNT, FEED, terminal)], clock=rig.clock
    )
    executor.tenant = rig.tenant

    async def execute(_subject: str, msg: Message) -> None:
        assert isinstance(msg, TradeCommand)
        report = executor.execute(msg)
        assert report is not None
        await rig.engine.on_report(report)

    await rig.bus.subscribe(f"ord.cmd.{rig.tenant}.{ACCOUNT}", execute)
    yield executor
    executor.close()
    executor.journal.close()


def close_by(rig: Rig, position: int, by: int) -> OrderRequest:
    return rig.request(
        action=TradeAction.CLOSE_BY,
        type=OrderType.CLOSE_BY,
        volume=0,
        deviation=0,
        position=position,
        position_by=by,
    )


async def test_close_by_closes_the_pair_at_the_terminal_and_in_the_books(
    rig: Rig, terminal: SimulatedTerminal, agent: OrderExecutor
) -> None:
    rig.clock.advance(1)
    for side, lots in ((OrderType.BUY, "0.10"), (OrderType.SELL, "0.04")):
        req = rig.request(type=side, volume=volume_raw(lots), filling=OrderFilling.IOC, deviation=50)
        result = await rig.engine.submit(req, "user:alice")
        assert not result.denied, result
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    longs = [p for p in book.positions.values() if p.type is Side.BUY]
    shorts = [p for p in book.positions.values() if p.type is Side.SELL]
    assert len(longs) == len(shorts) == 1
    balance_before = book.state.balance
    req = close_by(rig, longs[0].ticket, shorts[0].ticket)
    result = await rig.engine.submit(req, "user:alice")
    assert not result.denied, result
    order = book.orders[req.client_order_id]
    assert order.state is OrderState.FILLED
    assert order.volume == order.volume_filled == volume_raw("0.04")
    assert len(order.deals) == 1  # the deal of `position`; the other closes `position_by`
    closing = [d for d in book.deals.values() if d.entry is DealEntry.OUT_BY]
    assert sorted(d.position_id for d in closing) == sorted([longs[0].identifier, shorts[0].identifier])
    theirs = {p.identifier: (p.type, volume_raw(p.volume)) for p in terminal.positions_get() or ()}
    ours = {p.identifier: (int(p.type), p.volume) for p in book.positions.values()}
    assert ours == theirs == {longs[0].identifier: (0, volume_raw("0.06"))}
    realised = sum((d.profit + d.commission + d.swap + d.fee for d in closing), start=Decimal(0))
    assert book.state.balance == balance_before + realised
    assert "order.submitted" in await rig.kinds()


async def test_close_by_of_a_position_that_is_not_open_is_refused_with_position_closed(rig: Rig) -> None:
    result = await rig.engine.submit(close_by(rig, 424242, 434343), "user:alice")
    assert (result.retcode, result.reason) == (10036, "position_closed")


async def test_close_by_on_a_netting_account_gets_mt5s_invalid_request(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, mode=MarginMode.RETAIL_NETTING):
        result = await rig.engine.submit(close_by(rig, 1, 2), "user:alice")
        assert result.denied
        assert (result.retcode, result.reason) == (10013, "hedging_only")
