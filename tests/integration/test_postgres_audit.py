"""The audit log on a real PostgreSQL: migration 0002 (RLS, append-only trigger) and concurrent appends."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import asyncpg
import pytest

from aitrading.common.clock import LiveClock
from aitrading.storage.audit.chain import GENESIS_HASH, AuditLog
from aitrading.storage.oltp import Database, current, downgrade, ensure_tenant, head, upgrade

pytestmark = pytest.mark.integration


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def test_upgrade_to_0002_forces_rls_and_downgrade_removes_the_table(fresh_postgres_db: str) -> None:
    await upgrade(fresh_postgres_db)
    assert await current(fresh_postgres_db) == head() == "0005"
    conn = await asyncpg.connect(asyncpg_dsn(fresh_postgres_db))
    try:
        rls = await conn.fetchrow(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'audit_events'"
        )
        assert rls is not None
        assert (rls["relrowsecurity"], rls["relforcerowsecurity"]) == (True, True)
        policies = await conn.fetch("SELECT policyname FROM pg_policies WHERE tablename = 'audit_events'")
        assert [p["policyname"] for p in policies] == ["tenant_isolation"]

        await downgrade(fresh_postgres_db, "0001")
        assert await current(fresh_postgres_db) == "0001"
        assert await conn.fetchval("SELECT to_regclass('public.audit_events')") is None
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_no_update'") == 0
        )
        assert await conn.fetchval("SELECT to_regclass('public.users')") is not None

        await upgrade(fresh_postgres_db)
        assert await current(fresh_postgres_db) == head()
        assert await conn.fetchval("SELECT to_regclass('public.audit_events')") is not None
    finally:
        await conn.close()


async def test_twenty_concurrent_appends_from_several_processes_form_one_chain(
    fresh_postgres_db: str,
) -> None:
    await upgrade(fresh_postgres_db)
    clock = LiveClock()
    # Separate Database objects stand in for replicas: only the advisory lock serialises them.
    dbs = [Database(fresh_postgres_db, clock=clock, pool_size=5) for _ in range(4)]
    for db in dbs:
        await db.start()
    try:
        async with dbs[0].session() as s:
            tenant = (await ensure_tenant(s, "acme", "Acme")).id
            other = (await ensure_tenant(s, "other", "Other")).id
        logs = [AuditLog(db, clock) for db in dbs]
        records = await asyncio.gather(
            *(
                logs[i % len(logs)].append(tenant, f"worker:{i}", "order.submitted", {"i": i})
                for i in range(20)
            ),
            *(logs[i % len(logs)].append(other, "x", "risk.denied", {"i": i}) for i in range(5)),
        )
        mine = sorted((r for r in records if r.tenant_id == tenant), key=lambda r: r.seq)
        assert [r.seq for r in mine] == list(range(1, 21))
        assert mine[0].prev_hash == GENESIS_HASH
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(mine))
        result = await logs[0].verify(tenant)
        assert (result.ok, result.checked) == (True, 20)
        assert (await logs[1].verify(other)).checked == 5
    finally:
        for db in dbs:
            await db.stop()


async def test_audit_events_refuse_update(fresh_postgres_db: str) -> None:
    await upgrade(fresh_postgres_db)
    db = Database(fresh_postgres_db)
    await db.start()
    try:
        async with db.session() as s:
            tenant = (await ensure_tenant(s, "acme", "Acme")).id
        await AuditLog(db, LiveClock()).append(tenant, "a", "order.submitted", {})
    finally:
        await db.stop()
    conn = await asyncpg.connect(asyncpg_dsn(fresh_postgres_db))
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE audit_events SET payload = '{}' WHERE seq = 1")
        assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE tenant_id = $1", tenant) == 1
        assert isinstance(tenant, uuid.UUID)
    finally:
        await conn.close()
