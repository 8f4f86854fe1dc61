"""The config store on real PostgreSQL as a plain application role: forced row-level security, and two
writers in different processes racing for one version."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import asyncpg
import pytest
import sqlalchemy as sa

from aitrading.common.clock import TestClock
from aitrading.config_service.namespaces import NAMESPACES
from aitrading.config_service.store import ConfigStore, Owner, VersionConflictError
from aitrading.storage.audit.chain import AuditLog
from aitrading.storage.oltp import Database, upgrade

pytestmark = pytest.mark.integration

UI = NAMESPACES["ui"]


@pytest.fixture
async def admin(fresh_postgres_db: str) -> AsyncIterator[asyncpg.Connection]:
    await upgrade(fresh_postgres_db)
    conn = await asyncpg.connect(fresh_postgres_db.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def app_url(fresh_postgres_db: str, admin: asyncpg.Connection) -> AsyncIterator[str]:
    """A URL of a plain login role (no superuser, no BYPASSRLS), as the application connects."""
    role = f"aitrading_cfg_{uuid.uuid4().hex[:10]}"
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'test-only' NOSUPERUSER NOBYPASSRLS")
    await admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    parsed = urlparse(fresh_postgres_db)
    try:
        yield f"postgresql+asyncpg://{role}:test-only@{parsed.hostname}:{parsed.port or 5432}{parsed.path}"
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")


@pytest.fixture
async def tenants(admin: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    a, b = uuid.uuid4(), uuid.uuid4()
    for tid, slug in ((a, "alpha"), (b, "beta")):
        await admin.execute("INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)", tid, slug)
    return a, b


async def _store(url: str, clock: TestClock) -> tuple[Database, ConfigStore]:
    db = Database(url, clock=clock)
    await db.start()
    store = ConfigStore(db, clock)
    await store.start()
    return db, store


async def test_config_rows_are_confined_to_their_tenant_by_row_level_security(
    app_url: str, admin: asyncpg.Connection, tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = tenants
    clock = TestClock()
    db, store = await _store(app_url, clock)
    try:
        await store.put(Owner("tenant", a), UI, {"theme": "dark"}, expected=0, actor="admin-a")
        await store.put(Owner("global"), UI, {"language": "de"}, expected=0, actor="root")
        assert (await store.effective(a, None))["ui"]["values"] == {
            "theme": "dark",
            "language": "de",
            "timezone": "UTC",
            "default_timeframe": "H1",
            "chart_type": "candles",
        }
        assert (await store.effective(b, None))["ui"]["values"]["theme"] == "system"
        async with db.session(b) as session:  # scoped to B, ask for A's rows by id: none are visible
            for table in ("config_entries", "config_versions", "audit_events"):
                rows = await session.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": a}
                )
                assert rows.scalar() == 0, table
    finally:
        await db.stop()
    forced = await admin.fetch(
        "SELECT relname FROM pg_class WHERE relname IN ('config_entries', 'config_versions') "
        "AND relrowsecurity AND relforcerowsecurity"
    )
    assert {r["relname"] for r in forced} == {"config_entries", "config_versions"}
    assert await admin.fetchval("SELECT count(*) FROM config_entries") == 2  # the owner sees both


async def test_two_processes_racing_for_one_version_one_wins_and_the_chain_stays_whole(
    app_url: str, tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a = tenants[0]
    clock = TestClock()
    (db1, one), (db2, two) = await _store(app_url, clock), await _store(app_url, clock)
    try:
        results = await asyncio.gather(
            one.put(Owner("tenant", a), UI, {"theme": "dark"}, expected=0, actor="p1"),
            two.put(Owner("tenant", a), UI, {"theme": "light"}, expected=0, actor="p2"),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1
        assert len(losses) == 1
        assert isinstance(losses[0], VersionConflictError)
        audit = AuditLog(db1, clock)
        assert len(await audit.records(a)) == 1
        assert (await audit.verify(a)).ok
        assert (await one.get(Owner("tenant", a), UI)).value == wins[0].value
    finally:
        await db1.stop()
        await db2.stop()
