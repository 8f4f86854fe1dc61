"""The order journal keeps every state of a command across a crash (a reopen) and only moves forward."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitrading.agent.journal import JournalState, OrderJournal, journal_path_for
from aitrading.common.clock import TestClock
from aitrading.common.errors import OperationalError
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.enums import OrderType, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, ClientOrderIdGenerator, TenantId
from aitrading.model.wire import OrderReport

CLOCK = TestClock()
NEW_ID = ClientOrderIdGenerator(CLOCK)


def command(cid: str | None = None, volume: int = 10_000_000) -> TradeCommand:
    return TradeCommand(
        request=OrderRequest(
            client_order_id=ClientOrderId(cid or NEW_ID()),
            tenant=TenantId("t1"),
            account=AccountId("5001"),
            ts_ns=CLOCK.now_ns(),
            symbol="EURUSD",
            action=TradeAction.DEAL,
            type=OrderType.SELL,
            volume=volume,
            magic=7,
        )
    )


def report_of(cmd: TradeCommand) -> OrderReport:
    req = cmd.request
    return OrderReport(
        client_order_id=req.client_order_id,
        tenant=req.tenant,
        account=req.account,
        retcode=10009,
        ts_ns=CLOCK.now_ns(),
        order=1001,
        deal=1002,
        volume=req.volume,
        price=1_100_010_000,
    )


def test_each_state_survives_a_crash_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent-buffer.orders.sqlite"
    cmd = command()
    cid = cmd.request.client_order_id
    report = report_of(cmd)

    def reopened() -> OrderJournal:
        return OrderJournal(path)

    journal = reopened()
    entry, new = journal.receive(cmd, 100)
    assert new
    assert entry.state is JournalState.RECEIVED
    journal.close()  # what a crash leaves: only committed rows

    journal = reopened()
    entry_after = journal.get(cid)
    assert entry_after is not None
    assert (entry_after.state, entry_after.command, entry_after.received_ns) == (
        JournalState.RECEIVED,
        cmd,
        100,
    )
    journal.mark_sending(cid, 200)
    journal.close()

    journal = reopened()
    assert [e.state for e in journal.in_flight()] == [JournalState.SENDING]
    journal.mark_done(cid, report, 300)
    journal.close()

    journal = reopened()
    done = journal.get(cid)
    assert done is not None
    assert done.state is JournalState.DONE
    assert done.report == report
    assert journal.mark_acked(cid, 400)
    journal.close()

    journal = reopened()
    acked = journal.get(cid)
    assert acked is not None
    assert (acked.state, acked.report, acked.updated_ns) == (JournalState.ACKED, report, 400)
    assert journal.in_flight() == []
    journal.close()


def test_a_known_client_order_id_is_not_stored_again(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "j.sqlite")
    first = command("AI-FIXED-1")
    journal.receive(first, 1)
    entry, new = journal.receive(command("AI-FIXED-1", volume=99_000_000), 2)
    assert not new
    assert entry.command == first
    assert entry.received_ns == 1
    assert journal.counts()[JournalState.RECEIVED] == 1


def test_states_only_move_forward(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "j.sqlite")
    cmd = command()
    cid = cmd.request.client_order_id
    journal.receive(cmd, 1)
    assert not journal.mark_acked(cid, 2), "nothing to acknowledge before a report exists"
    journal.mark_done(cid, report_of(cmd), 3)  # recovered or refused: straight from received to done
    with pytest.raises(ValueError, match="cannot go from done back to sending"):
        journal.mark_sending(cid, 4)
    with pytest.raises(KeyError):
        journal.mark_sending("AI-UNKNOWN", 5)
    assert journal.mark_acked(cid, 6)
    assert not journal.mark_acked(cid, 7), "a second ack changes nothing"


def test_prune_forgets_only_old_acknowledged_commands(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "j.sqlite")
    old, recent, unacked = command(), command(), command()
    for cmd in (old, recent, unacked):
        journal.receive(cmd, 10)
        journal.mark_done(cmd.request.client_order_id, report_of(cmd), 20)
    journal.mark_acked(old.request.client_order_id, 30)
    journal.mark_acked(recent.request.client_order_id, 90)
    assert journal.prune(before_ns=50) == 1
    assert journal.get(old.request.client_order_id) is None
    assert journal.get(recent.request.client_order_id) is not None
    assert journal.get(unacked.request.client_order_id) is not None


def test_a_second_process_cannot_open_the_same_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = OrderJournal(path)
    with pytest.raises(OperationalError, match="in use by another agent process"):
        OrderJournal(path)
    journal.close()
    OrderJournal(path).close()


def test_the_journal_sits_beside_the_tick_buffer() -> None:
    assert journal_path_for(Path("/var/agent/agent-buffer.sqlite")) == Path(
        "/var/agent/agent-buffer.orders.sqlite"
    )
    assert journal_path_for(":memory:") == ":memory:"
