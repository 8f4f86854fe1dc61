"""Appending audit events inside the caller's transaction: they commit and roll back with its writes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError
from aitrading.storage.audit.chain import AuditLog
from aitrading.storage.oltp import Database, ensure_tenant


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(
        f"sqlite+aiosqlite:///{tmp_path / 'oltp.sqlite'}", clock=TestClock(), migrate_on_start=True
    )
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
async def tenant(db: Database) -> uuid.UUID:
    async with db.session() as s:
        return (await ensure_tenant(s, "acme", "Acme Fund")).id


async def test_events_appended_in_a_transaction_continue_the_chain(db: Database, tenant: uuid.UUID) -> None:
    audit = AuditLog(db, db.clock)
    await audit.append(tenant, "alice", "first", {"n": 1})
    async with audit.local_lock(tenant), db.session(tenant) as session:
        one = await audit.append_in(session, tenant, "engine", "second", {"n": 2})
        more = await audit.append_many_in(
            session, tenant, [("engine", "third", {"n": 3}), ("engine", "fourth", {"n": 4})]
        )
    await audit.append(tenant, "alice", "fifth", {"n": 5})
    records = await audit.records(tenant)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.kind for r in records] == ["first", "second", "third", "fourth", "fifth"]
    assert [one.hash, *(m.hash for m in more)] == [r.hash for r in records[1:4]]
    assert (await audit.verify(tenant)).ok


async def test_events_roll_back_with_the_callers_transaction(db: Database, tenant: uuid.UUID) -> None:
    audit = AuditLog(db, db.clock)

    async def failing_unit_of_work() -> None:
        async with audit.local_lock(tenant), db.session(tenant) as session:
            await audit.append_in(session, tenant, "engine", "lost", {"n": 1})
            raise RuntimeError("caller failed")

    with pytest.raises(RuntimeError, match="caller failed"):
        await failing_unit_of_work()
    assert await audit.records(tenant) == []
    await audit.append(tenant, "alice", "kept", {"n": 1})
    assert [r.seq for r in await audit.records(tenant)] == [1]


async def test_append_in_refuses_without_the_chain_lock_and_validates_every_event_first(
    db: Database, tenant: uuid.UUID
) -> None:
    audit = AuditLog(db, db.clock)
    async with db.session(tenant) as session:
        with pytest.raises(RuntimeError, match="local_lock"):
            await audit.append_in(session, tenant, "engine", "x", {})
    with pytest.raises(BadInputError, match="actor"):
        async with audit.local_lock(tenant), db.session(tenant) as session:
            await audit.append_many_in(session, tenant, [("engine", "ok", {}), ("", "bad", {})])
    assert await audit.records(tenant) == []
