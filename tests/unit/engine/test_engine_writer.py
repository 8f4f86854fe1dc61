"""Group commit: concurrent submits share transactions; an order row never exists without its audit event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_helpers import ACCOUNT, Rig, make_rig

from aitrading.common.bus.codec import Message
from aitrading.common.errors import BadInputError
from aitrading.model.commands import TradeCommand
from aitrading.storage.oltp.models_trading import OrderRow


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(tmp_path):
        yield r


async def _stored(rig: Rig) -> set[str]:
    async with rig.db.session(rig.tenant) as s:
        return set(await s.scalars(sa.select(OrderRow.client_order_id)))


async def test_concurrent_submits_commit_together_and_each_returns_once_durable(rig: Rig) -> None:
    commands: list[str] = []
    stored_when_sent: list[bool] = []

    async def agent(_subject: str, msg: Message) -> None:
        assert isinstance(msg, TradeCommand)
        commands.append(msg.request.client_order_id)
        stored_when_sent.append(msg.request.client_order_id in await _stored(rig))

    await rig.bus.subscribe(f"ord.cmd.{rig.tenant}.{ACCOUNT}", agent)
    writer = rig.engine._writer
    before = writer.batches
    reqs = [rig.request() for _ in range(40)]
    results = await asyncio.gather(*(rig.engine.submit(r, "user:alice") for r in reqs))
    assert not any(r.denied for r in results)
    assert writer.batches - before < len(reqs)  # shared transactions, not one per order
    assert {r.client_order_id for r in reqs} <= await _stored(rig)
    assert sorted(commands) == sorted(r.client_order_id for r in reqs)
    assert all(stored_when_sent)  # no command left before its order row was committed
    kinds = await rig.kinds()
    assert kinds.count("order.submitted") == len(reqs)
    assert (await rig.audit.verify(rig.tenant)).ok


async def test_a_failing_audit_event_takes_its_order_row_with_it_and_spares_the_batch(rig: Rig) -> None:
    good = [rig.request() for _ in range(3)]
    bad = rig.request()
    outcomes = await asyncio.gather(
        *(rig.engine.submit(r, "user:alice") for r in good),
        rig.engine.submit(bad, "x" * 300),  # an actor the audit chain refuses
        return_exceptions=True,
    )
    assert isinstance(outcomes[-1], BadInputError)
    assert not any(isinstance(o, BaseException) for o in outcomes[:-1])
    stored = await _stored(rig)
    assert {r.client_order_id for r in good} <= stored
    assert bad.client_order_id not in stored  # same transaction as the refused event
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    assert bad.client_order_id not in book.orders  # forgotten: a retry decides afresh
    retried = await rig.engine.submit(bad, "user:alice")
    assert not retried.denied
    assert bad.client_order_id in await _stored(rig)


async def test_a_retried_request_while_its_row_is_pending_waits_for_it(rig: Rig) -> None:
    req = rig.request()
    writer = rig.engine._writer
    pending_at_return: list[bool] = []

    async def retry() -> object:
        result = await rig.engine.submit(req, "u")
        pending_at_return.append(writer.pending(req.client_order_id) is not None)
        return result

    first, again = await asyncio.gather(rig.engine.submit(req, "u"), retry())
    assert first == again
    assert pending_at_return == [False]
    assert req.client_order_id in await _stored(rig)
    assert (await rig.kinds()).count("order.submitted") == 1


async def test_a_caller_that_gives_up_waiting_does_not_undo_the_order(rig: Rig) -> None:
    commands: list[str] = []

    async def agent(_subject: str, msg: Message) -> None:
        assert isinstance(msg, TradeCommand)
        commands.append(msg.request.client_order_id)

    await rig.bus.subscribe(f"ord.cmd.{rig.tenant}.{ACCOUNT}", agent)
    req = rig.request()
    task = asyncio.create_task(rig.engine.submit(req, "user:alice"))
    await asyncio.sleep(0)  # the submit runs to its first wait: the commit of its row
    assert rig.engine._writer.pending(req.client_order_id) is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await rig.engine.stop()  # drains the writer and what waits on it
    assert commands == [req.client_order_id]
    assert req.client_order_id in await _stored(rig)
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    assert req.client_order_id in book.orders
