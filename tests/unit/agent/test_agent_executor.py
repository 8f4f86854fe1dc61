"""The executor sends each client order id to the terminal once, across repeats, crashes and restarts.

`FakeBroker` (agent_executor_fakes.py) stands in for the broker's trade server behind the terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agent_executor_fakes import FakeBroker

from aitrading.agent.executor import CRASH_ENV, OrderExecutor, TerminalUnavailable, TradingAccount
from aitrading.agent.journal import JournalState, OrderJournal
from aitrading.common.bus.codec import encode
from aitrading.common.clock import LiveClock, TestClock
from aitrading.model._exact import notional_decimal
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.enums import DealEntry, DealType, OrderFilling, OrderType, Side, TradeAction
from aitrading.model.ids import AccountId, ClientOrderIdGenerator, TenantId
from aitrading.model.values import price_raw
from aitrading.model.wire import OrderReport

TENANT, ACCOUNT, FEED = TenantId("t1"), AccountId("5001"), "Broker-Demo"
HERE = Path(__file__).parent


class SimulatedCrash(BaseException):
    """The process dying: nothing after the crash point runs (BaseException, so no handler swallows it)."""


def crash() -> None:
    raise SimulatedCrash


@dataclass
class Rig:
    path: Path
    clock: TestClock
    broker: FakeBroker
    journal: OrderJournal
    executor: OrderExecutor
    ids: ClientOrderIdGenerator

    def restart(self, **kwargs: Any) -> OrderExecutor:
        """What a new agent process has: the journal file and the broker, nothing in memory."""
        self.journal.close()
        self.journal = OrderJournal(self.path)
        self.executor = executor(self.journal, self.broker, self.clock, **kwargs)
        return self.executor

    def command(self, action: TradeAction = TradeAction.DEAL, **fields: Any) -> TradeCommand:
        base: dict[str, Any] = {
            "client_order_id": self.ids(),
            "tenant": TENANT,
            "account": ACCOUNT,
            "ts_ns": self.clock.now_ns(),
            "symbol": "EURUSD",
            "action": action,
        }
        if action in (TradeAction.DEAL, TradeAction.PENDING):
            base |= {"type": OrderType.BUY, "volume": 10_000_000, "deviation": 10, "magic": 77}
            base["filling"] = OrderFilling.IOC
        return TradeCommand(request=OrderRequest(**(base | fields)))


def executor(journal: OrderJournal, broker: FakeBroker, clock: TestClock, **kwargs: Any) -> OrderExecutor:
    kwargs.setdefault("crash_after_order_send", False)
    return OrderExecutor(journal, [TradingAccount(ACCOUNT, FEED, broker)], clock=clock, **kwargs)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = TestClock()
    broker = FakeBroker(clock)
    path = tmp_path / "agent-buffer.orders.sqlite"
    journal = OrderJournal(path)
    r = Rig(path, clock, broker, journal, executor(journal, broker, clock), ClientOrderIdGenerator(clock))
    yield r
    r.executor.close()
    r.journal.close()


def state(rig: Rig, cmd: TradeCommand) -> JournalState | None:
    entry = rig.journal.get(cmd.request.client_order_id)
    return None if entry is None else entry.state


def test_market_order_goes_out_as_mt5_asks_and_comes_back_exact(rig: Rig) -> None:
    cmd = rig.command(sl=1_090_000_000, tp=1_120_005_000)
    report = rig.executor.execute(cmd)
    cid = cmd.request.client_order_id
    assert rig.broker.sends == [
        {
            "action": 1, "magic": 77, "comment": cid, "symbol": "EURUSD", "volume": 0.1, "type": 0,
            "type_filling": 1, "type_time": 0, "deviation": 10, "price": 0.0, "sl": 1.09, "tp": 1.120005,
        }
    ]  # fmt: skip
    assert report is not None
    assert (report.retcode, report.recovered, report.tenant, report.account) == (
        10009,
        False,
        TENANT,
        ACCOUNT,
    )
    assert (report.volume, report.price, report.bid, report.ask) == (
        10_000_000,
        1_100_130_000,
        1_100_010_000,
        1_100_130_000,
    )
    [deal] = report.deals
    assert (deal.order, deal.ticket, deal.type, deal.entry) == (
        report.order,
        report.deal,
        DealType.BUY,
        DealEntry.IN,
    )
    assert (deal.volume, deal.price, deal.commission, deal.comment) == (
        10_000_000,
        1_100_130_000,
        Decimal("-3.50"),
        cid,
    )
    assert state(rig, cmd) is JournalState.DONE
    assert rig.executor.counts.executed == 1


def test_the_same_command_twice_is_sent_once_and_answered_from_the_journal(rig: Rig) -> None:
    cmd = rig.command()
    first = rig.executor.execute(cmd)
    again = rig.executor.execute(cmd)
    assert again == first
    assert rig.journal.mark_acked(cmd.request.client_order_id, rig.clock.now_ns())
    after_ack = rig.restart().execute(cmd)  # also after the report was acknowledged and the agent restarted
    assert after_ack == first
    assert len(rig.broker.sends) == 1
    assert rig.executor.counts.duplicates == 1


def test_crash_after_order_send_is_recovered_from_history_not_sent_again(rig: Rig) -> None:
    crashing = rig.restart(crash_after_order_send=True, crash=crash)
    cmd = rig.command()
    with pytest.raises(SimulatedCrash):
        crashing.execute(cmd)
    assert state(rig, cmd) is JournalState.SENDING  # the result never reached the journal
    [sent] = rig.broker.book["history_orders"]

    fresh = rig.restart()
    [report] = fresh.recover()
    assert report.recovered
    assert report.retcode == 10009
    assert (report.order, report.volume, report.price) == (sent["ticket"], 10_000_000, 1_100_130_000)
    assert [d.order for d in report.deals] == [sent["ticket"]]
    assert state(rig, cmd) is JournalState.DONE
    assert fresh.execute(cmd) == report, "the engine's resend is answered from the journal"
    assert len(rig.broker.sends) == 1
    assert (fresh.counts.recovered, fresh.counts.duplicates, fresh.counts.executed) == (1, 1, 0)


@pytest.mark.parametrize("kept", ["orders", "positions", "history_orders", "deals"])
def test_each_place_of_the_terminal_finds_an_order_sent_before_a_crash(rig: Rig, kept: str) -> None:
    """The terminal may show the order in only one place (pending, open, filled, or only its deals)."""
    pending = kept == "orders"
    action = TradeAction.PENDING if pending else TradeAction.DEAL
    extra = {"type": OrderType.BUY_LIMIT, "price": 1_095_000_000} if pending else {}
    crashing = rig.restart(crash_after_order_send=True, crash=crash)
    cmd = rig.command(action, **extra)
    with pytest.raises(SimulatedCrash):
        crashing.execute(cmd)
    book = rig.broker.book
    ticket = (book["orders"] or book["history_orders"])[0]["ticket"]
    for place in ("orders", "positions", "history_orders", "deals"):
        if place != kept:
            book[place] = []
    report = rig.restart().execute(cmd)  # the engine resends after the agent came back
    assert report is not None
    assert report.recovered
    assert report.order == ticket
    assert len(rig.broker.sends) == 1


def test_a_command_left_sending_that_never_reached_the_terminal_is_sent_on_resend(rig: Rig) -> None:
    cmd = rig.command()
    rig.journal.receive(cmd, rig.clock.now_ns())
    rig.journal.mark_sending(cmd.request.client_order_id, rig.clock.now_ns())  # crash before order_send
    fresh = rig.restart()
    assert fresh.recover() == [], "nothing found: it waits for the engine instead of trading on its own"
    assert state(rig, cmd) is JournalState.SENDING
    report = fresh.execute(cmd)
    assert report is not None
    assert not report.recovered
    assert report.retcode == 10009
    assert len(rig.broker.sends) == 1


def test_an_unreachable_terminal_means_nothing_is_sent_and_the_command_waits(rig: Rig) -> None:
    cmd = rig.command()
    rig.broker.unavailable = True
    with pytest.raises(TerminalUnavailable, match="No IPC connection"):
        rig.executor.execute(cmd)
    assert rig.broker.sends == []
    assert state(rig, cmd) is JournalState.RECEIVED
    rig.broker.unavailable = False
    report = rig.executor.execute(cmd)
    assert report is not None
    assert report.retcode == 10009
    assert len(rig.broker.sends) == 1


def test_a_malformed_request_is_refused_without_reaching_the_terminal(rig: Rig) -> None:
    cmd = rig.command(volume=0)
    report = rig.executor.execute(cmd)
    assert report is not None
    assert (report.retcode, report.comment) == (10013, "volume must be positive")
    assert rig.broker.sends == []
    assert rig.executor.counts.failed == 1


def test_a_trade_server_refusal_is_reported_once_and_not_retried(rig: Rig) -> None:
    rig.broker.reject_with = 10019  # NO_MONEY
    cmd = rig.command()
    report = rig.executor.execute(cmd)
    assert report is not None
    assert report.retcode == 10019
    assert report.order == 0
    assert rig.executor.execute(cmd) == report
    assert len(rig.broker.sends) == 1
    assert rig.executor.counts.failed == 1


def test_order_send_returning_none_is_reported_as_an_error_with_the_terminal_reason(rig: Rig) -> None:
    rig.broker.send_returns_none = True
    report = rig.executor.execute(rig.command())
    assert report is not None
    assert (report.retcode, report.comment) == (10011, "order_send failed: -1 Terminal: Call failed")


def test_a_stop_change_left_sending_is_recognised_by_its_effect(rig: Rig) -> None:
    opened = rig.executor.execute(rig.command())
    assert opened is not None
    crashing = rig.restart(crash_after_order_send=True, crash=crash)
    sltp = rig.command(TradeAction.SLTP, position=opened.order, sl=1_090_000_000, tp=1_110_000_000)
    with pytest.raises(SimulatedCrash):
        crashing.execute(sltp)
    [report] = rig.restart().recover()
    assert report.client_order_id == sltp.request.client_order_id
    assert report.recovered
    assert len(rig.broker.sends) == 2


def test_a_removal_left_sending_is_recognised_when_the_order_is_cancelled(rig: Rig) -> None:
    placed = rig.executor.execute(
        rig.command(TradeAction.PENDING, type=OrderType.BUY_LIMIT, price=1_095_000_000)
    )
    assert placed is not None
    crashing = rig.restart(crash_after_order_send=True, crash=crash)
    remove = rig.command(TradeAction.REMOVE, order=placed.order)
    with pytest.raises(SimulatedCrash):
        crashing.execute(remove)
    report = rig.restart().execute(remove)
    assert report is not None
    assert report.recovered
    assert report.order == placed.order
    assert [s["action"] for s in rig.broker.sends] == [5, 8]


def test_snapshot_carries_the_account_positions_orders_and_recent_deals_exactly(rig: Rig) -> None:
    rig.executor.tenant = TENANT
    bought = rig.executor.execute(rig.command())
    rig.executor.execute(rig.command(TradeAction.PENDING, type=OrderType.SELL_LIMIT, price=1_105_000_000))
    assert bought is not None
    snap = rig.executor.snapshot(ACCOUNT)
    assert snap is not None
    assert (snap.tenant, snap.account, snap.ts_ns) == (TENANT, ACCOUNT, rig.clock.now_ns())
    acct = snap.account_state
    assert (acct.balance, acct.profit, acct.equity, acct.margin) == (
        Decimal("10000.00"),
        Decimal("-1.20"),
        Decimal("9998.80"),
        Decimal("110.01"),
    )
    [pos] = snap.positions
    assert (pos.ticket, pos.type, pos.volume) == (bought.order, Side.BUY, 10_000_000)
    assert pos.cost == notional_decimal(price_raw(1.10013) * 10_000_000)
    assert pos.price_open_raw == 1_100_130_000
    [order] = snap.orders
    assert (order.type, order.price_open, order.volume_current) == (3, 1_105_000_000, 10_000_000)
    assert [d.ticket for d in snap.deals] == [bought.deal]
    assert snap.deals_from_ns == rig.clock.now_ns() - 86_400 * 10**9

    rig.clock.advance(2 * 86_400)
    later = rig.executor.snapshot(ACCOUNT)
    assert later is not None
    assert later.deals == [], "deals older than the window are left out"


async def test_a_command_for_an_account_this_agent_does_not_serve_is_ignored(rig: Rig) -> None:
    sent: list[object] = []

    async def send(msg: object) -> bool:
        sent.append(msg)
        return True

    rig.executor.send = send  # type: ignore[assignment]
    rig.executor.tenant = TENANT
    other = rig.command(account=AccountId("9999"))
    foreign_tenant = rig.command(tenant=TenantId("t2"))
    assert await rig.executor.submit(other) is None
    assert await rig.executor.submit(foreign_tenant) is None
    assert rig.executor.counts.foreign == 2
    assert rig.broker.sends == []
    assert sent == []
    report = await rig.executor.submit(rig.command())
    assert isinstance(report, OrderReport)
    assert [type(m).__name__ for m in sent] == ["OrderReport", "AccountSnapshot"]


CRASHING_AGENT = """
import sys
from pathlib import Path
import msgspec
from agent_executor_fakes import FakeBroker
from aitrading.agent.executor import OrderExecutor, TradingAccount
from aitrading.agent.journal import OrderJournal
from aitrading.common.clock import LiveClock
from aitrading.model.commands import TradeCommand

workdir = Path(sys.argv[1])
cmd = msgspec.msgpack.decode((workdir / "command.bin").read_bytes(), type=TradeCommand)
clock = LiveClock()
broker = FakeBroker(clock, workdir / "broker.json")
account = TradingAccount("5001", "Broker-Demo", broker)
executor = OrderExecutor(OrderJournal(workdir / "orders.sqlite"), [account], clock=clock)
executor.execute(cmd)
print("still alive")
"""


def test_the_crash_hook_kills_the_process_after_order_send_and_the_next_process_recovers(
    tmp_path: Path,
) -> None:
    clock = LiveClock()
    cmd = TradeCommand(
        request=OrderRequest(
            client_order_id=ClientOrderIdGenerator(clock)(),
            tenant=TENANT,
            account=ACCOUNT,
            ts_ns=clock.now_ns(),
            symbol="EURUSD",
            action=TradeAction.DEAL,
            type=OrderType.SELL,
            volume=25_000_000,
        )
    )
    (tmp_path / "command.bin").write_bytes(encode(cmd))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADING_")}
    env |= {CRASH_ENV: "1", "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_AGENT, str(tmp_path)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 137, proc.stderr
    assert "still alive" not in proc.stdout

    broker = FakeBroker(clock, tmp_path / "broker.json")  # the trade server kept what it did
    assert len(broker.sends) == 1
    journal = OrderJournal(tmp_path / "orders.sqlite")
    entry = journal.get(cmd.request.client_order_id)
    assert entry is not None
    assert entry.state is JournalState.SENDING
    recovering = OrderExecutor(journal, [TradingAccount(ACCOUNT, FEED, broker)], clock=clock)
    try:
        [report] = recovering.recover()
        assert report.recovered
        assert report.retcode == 10009
        assert report.volume == 25_000_000
        assert recovering.execute(cmd) == report
        assert len(broker.sends) == 1
    finally:
        recovering.close()
        journal.close()
