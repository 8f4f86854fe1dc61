"""The executor against the real simulated terminal: one order per client order id, also across a crash."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aitrading.agent.executor import OrderExecutor, TradingAccount
from aitrading.agent.journal import JournalState, OrderJournal
from aitrading.common.clock import TestClock
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.enums import OrderFilling, OrderType, Side, TradeAction
from aitrading.model.ids import AccountId, ClientOrderIdGenerator, TenantId
from aitrading.mt5 import SimulatedTerminal, SyntheticTickSource, default_specs

MONDAY = datetime(2024, 3, 4, 7, 0, tzinfo=UTC)  # the FX market is open
MONDAY_NS = int(MONDAY.timestamp()) * 10**9
TENANT, ACCOUNT = TenantId("t1"), AccountId("sim-1")


class Crash(BaseException):
    """The agent process dying right after order_send."""


def die() -> None:
    raise Crash


@pytest.fixture
def clock() -> TestClock:
    return TestClock(MONDAY_NS)


@pytest.fixture
def terminal(clock: TestClock) -> Iterator[SimulatedTerminal]:
    source = SyntheticTickSource(start_ms=MONDAY_NS // 10**6 - 60_000)
    term = SimulatedTerminal(clock, default_specs("EURUSD"), source)  # the agent shares the market's clock
    assert term.initialize()
    yield term
    term.shutdown()


def buy(clock: TestClock, ids: ClientOrderIdGenerator) -> TradeCommand:
    return TradeCommand(
        request=OrderRequest(
            client_order_id=ids(),
            tenant=TENANT,
            account=ACCOUNT,
            ts_ns=clock.now_ns(),
            symbol="EURUSD",
            action=TradeAction.DEAL,
            type=OrderType.BUY,
            volume=30_000_000,
            deviation=50,
            filling=OrderFilling.IOC,
            magic=9,
        )
    )


def test_a_market_order_on_the_simulated_terminal_is_sent_once_across_a_crash(
    tmp_path: Path, clock: TestClock, terminal: SimulatedTerminal
) -> None:
    clock.advance(1.0)
    ids = ClientOrderIdGenerator(clock)
    path = tmp_path / "orders.sqlite"
    journal = OrderJournal(path)
    account = TradingAccount(ACCOUNT, "SIM", terminal)
    crashing = OrderExecutor(journal, [account], clock=clock, crash_after_order_send=True, crash=die)
    cmd = buy(clock, ids)
    with pytest.raises(Crash):
        crashing.execute(cmd)
    crashing.close()
    journal.close()
    [position] = terminal.positions_get() or ()
    assert position.comment == cmd.request.client_order_id

    clock.advance(2.0)
    journal = OrderJournal(path)
    entry = journal.get(cmd.request.client_order_id)
    assert entry is not None
    assert entry.state is JournalState.SENDING
    fresh = OrderExecutor(journal, [account], clock=clock, crash_after_order_send=False)
    try:
        [report] = fresh.recover()
        assert report.recovered
        assert report.retcode == 10009
        assert report.volume == 30_000_000
        [deal] = report.deals
        assert (deal.order, deal.volume, deal.comment) == (
            report.order,
            30_000_000,
            cmd.request.client_order_id,
        )
        assert fresh.execute(cmd) == report, "the engine's resend is answered from the journal"
        assert len(terminal.positions_get() or ()) == 1
        assert len(terminal.history_orders_get(MONDAY, datetime(2024, 3, 5, tzinfo=UTC)) or ()) == 1

        second = fresh.execute(buy(clock, ids))
        assert second is not None
        assert second.retcode == 10009
        assert not second.recovered
        assert second.deals[0].price == second.price

        fresh.tenant = TENANT
        snap = fresh.snapshot(ACCOUNT)
        assert snap is not None
        assert sorted(p.volume for p in snap.positions) == [30_000_000, 30_000_000]
        assert {p.type for p in snap.positions} == {Side.BUY}
        assert len(snap.deals) == 2
        assert snap.account_state.is_consistent()
    finally:
        fresh.close()
        journal.close()
