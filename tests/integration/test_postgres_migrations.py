"""The OLTP migrations on a real PostgreSQL: schema, forced row-level security per tenant, downgrade.

Each test gets a brand-new database. Row-level security is checked as a plain (non-owner, non-superuser)
role, which is how the application connects in production.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from aitrading.storage.oltp import (
    Base,
    Database,
    Device,
    User,
    authenticate_device,
    current,
    downgrade,
    ensure_database,
    ensure_tenant,
    hash_device_key,
    head,
    make_engine,
    register_device,
    set_tenant,
    upgrade,
)

pytestmark = pytest.mark.integration

# Every table with a tenant_id column is tenant-owned and must be under row-level security.
TENANT_OWNED = {t.name for t in Base.metadata.sorted_tables if "tenant_id" in t.columns}
SEEDED = {"users", "devices", "audit_events"}  # the tables `seed_two_tenants` puts rows of both tenants in
# Policies besides each tenant-owned table's `tenant_isolation`: narrow look-ups before a tenant is known.
LOOKUP_POLICIES = {("devices", "device_lookup")} | {
    (t.name, "credential_lookup")
    for t in Base.metadata.sorted_tables
    if t.name in {"api_keys", "refresh_tokens"}
}
EXPECTED_POLICIES = {(t, "tenant_isolation") for t in TENANT_OWNED} | LOOKUP_POLICIES


async def seed_two_tenants(admin: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    """Create tenants A and B with two devices and one user each (as superuser, so RLS does not apply)."""
    a, b = uuid.uuid4(), uuid.uuid4()
    for tenant, slug in ((a, "tenant-a"), (b, "tenant-b")):
        await admin.execute("INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)", tenant, slug)
        await admin.execute(
            "INSERT INTO users (id, tenant_id, email, password_hash, role) "
            "VALUES ($1, $2, 'pm@x.io', 'h', 'analyst')",
            uuid.uuid4(),
            tenant,
        )
        for n in (1, 2):
            await admin.execute(
                "INSERT INTO devices (id, tenant_id, device_id, name, key_hash) "
                "VALUES ($1, $2, $3, 'pc', $4)",
                uuid.uuid4(),
                tenant,
                f"{slug}-pc-{n}",
                hash_device_key(f"key-{slug}-{n}"),
            )
        await admin.execute(
            "INSERT INTO audit_events (id, tenant_id, seq, ts, actor, kind, payload, prev_hash, hash) "
            "VALUES ($1, $2, 1, now(), 'test', 'test.seeded', '{}', $3, $3)",
            uuid.uuid4(),
            tenant,
            "0" * 64,
        )
    return a, b


async def count_as(
    conn: asyncpg.Connection, role: str, sql: str, *args: object, tenant: uuid.UUID | None = None
) -> int:
    """Run a counting query as `role` inside one transaction, scoped to `tenant` if given."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role}")
        if tenant is not None:
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant))
        value = await conn.fetchval(sql, *args)
    return int(value)


# --- schema ------------------------------------------------------------------------------------------------


async def test_upgrade_head_creates_the_tables_with_forced_row_level_security(
    migrated_db: str, admin: asyncpg.Connection
) -> None:
    assert await current(migrated_db) == head()
    rows = await admin.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
    )
    tables = {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}
    assert set(tables) == {"alembic_version", *Base.metadata.tables}
    for table in TENANT_OWNED:
        assert tables[table] == (True, True), table
    assert tables["tenants"] == (False, False)
    policies = {(r["tablename"], r["policyname"]) for r in await admin.fetch("SELECT * FROM pg_policies")}
    assert policies == EXPECTED_POLICIES


async def test_migrated_schema_matches_the_models_exactly_on_postgresql(migrated_db: str) -> None:
    def diff(sync: sa.Connection) -> list[object]:
        ctx = MigrationContext.configure(sync, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(ctx, Base.metadata))

    engine = make_engine(migrated_db)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_removes_tables_and_policies_and_upgrade_restores_them(
    migrated_db: str, admin: asyncpg.Connection
) -> None:
    await downgrade(migrated_db, "base")
    assert await current(migrated_db) is None
    left = await admin.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
    )
    assert {r["relname"] for r in left} == {"alembic_version"}
    assert await admin.fetchval("SELECT count(*) FROM pg_policies") == 0

    await upgrade(migrated_db)
    assert await current(migrated_db) == head()
    assert await admin.fetchval("SELECT count(*) FROM pg_policies") == len(EXPECTED_POLICIES)


async def test_concurrent_upgrades_serialise_and_both_succeed(fresh_postgres_db: str) -> None:
    await asyncio.gather(*(upgrade(fresh_postgres_db) for _ in range(3)))
    assert await current(fresh_postgres_db) == head()


async def test_ensure_database_creates_a_missing_database_once(
    fresh_postgres_db: str, admin: asyncpg.Connection
) -> None:
    assert await ensure_database(fresh_postgres_db) is False
    url = fresh_postgres_db + "_new"
    name = url.rsplit("/", 1)[1]
    try:
        assert await ensure_database(url) is True
        assert await ensure_database(url) is False
        await upgrade(url)
        assert await current(url) == head()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_database_component_migrates_on_start_and_answers_ping(fresh_postgres_db: str) -> None:
    db = Database(fresh_postgres_db, migrate_on_start=True)
    await db.start()
    try:
        assert await db.ping() is True
        assert await current(fresh_postgres_db) == head()
    finally:
        await db.stop()


# --- row-level security -------------------------------------------------------------------------------------


async def test_non_owner_scoped_to_tenant_a_sees_no_rows_of_tenant_b(
    admin: asyncpg.Connection, app_role: str
) -> None:
    a, b = await seed_two_tenants(admin)
    for table in SEEDED:
        of_b = f"SELECT count(*) FROM {table} WHERE tenant_id = $1"
        assert await count_as(admin, app_role, of_b, b, tenant=a) == 0, table
        assert await count_as(admin, app_role, f"SELECT count(*) FROM {table}", tenant=a) > 0, table
        assert await count_as(admin, app_role, of_b, b, tenant=b) > 0, table
    # the superuser (owner) still sees everything, which is why the application must not connect as one
    assert await admin.fetchval("SELECT count(*) FROM devices") == 4


async def test_non_owner_without_a_tenant_sees_no_tenant_rows(
    admin: asyncpg.Connection, app_role: str
) -> None:
    await seed_two_tenants(admin)
    for table in TENANT_OWNED:
        assert await count_as(admin, app_role, f"SELECT count(*) FROM {table}") == 0, table
    assert await count_as(admin, app_role, "SELECT count(*) FROM tenants") == 2


async def test_tenant_scope_ends_with_its_transaction(admin: asyncpg.Connection, app_role: str) -> None:
    a, _ = await seed_two_tenants(admin)
    assert await count_as(admin, app_role, "SELECT count(*) FROM devices", tenant=a) == 2
    assert await count_as(admin, app_role, "SELECT count(*) FROM devices") == 0


async def test_non_owner_cannot_write_a_row_into_another_tenant(
    admin: asyncpg.Connection, app_role: str
) -> None:
    a, b = await seed_two_tenants(admin)

    async def insert_for_b_while_scoped_to_a() -> None:
        async with admin.transaction():
            await admin.execute(f"SET LOCAL ROLE {app_role}")
            await admin.execute("SELECT set_config('app.tenant_id', $1, true)", str(a))
            await admin.execute(
                "INSERT INTO devices (id, tenant_id, device_id, name, key_hash) "
                "VALUES ($1, $2, 'x', 'x', 'x')",
                uuid.uuid4(),
                b,
            )

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await insert_for_b_while_scoped_to_a()


async def test_device_lookup_setting_reveals_only_the_named_device(
    admin: asyncpg.Connection, app_role: str
) -> None:
    await seed_two_tenants(admin)
    async with admin.transaction():
        await admin.execute(f"SET LOCAL ROLE {app_role}")
        await admin.execute("SELECT set_config('app.device_id', 'tenant-b-pc-1', true)")
        visible = await admin.fetch("SELECT device_id FROM devices")
        updated = await admin.execute("UPDATE devices SET name = 'hijacked'")
    assert [r["device_id"] for r in visible] == ["tenant-b-pc-1"]
    assert updated == "UPDATE 0"


# --- the application path as a non-owner role -----------------------------------------------------------


async def test_application_role_registers_and_authenticates_devices_under_rls(app_url: str) -> None:
    db = Database(app_url)
    await db.start()
    try:
        async with db.session() as s:
            a = await ensure_tenant(s, "tenant-a", "A")
            b = await ensure_tenant(s, "tenant-b", "B")
            _, key_a = await register_device(s, a.id, "pc-a", "PC A")
        async with db.session() as s:
            await register_device(s, b.id, "pc-b", "PC B")

        async with db.session() as s:
            device = await authenticate_device(s, "pc-a", key_a)
            assert device is not None
            assert device.tenant_id == a.id
            assert device.last_seen_at is not None
        async with db.session() as s:
            assert await authenticate_device(s, "pc-a", "wrong-key") is None

        async with db.session(tenant_id=a.id) as s:
            seen = set((await s.execute(sa.select(Device.device_id))).scalars())
            s.add(User(tenant_id=a.id, email="pm@a.io", password_hash="h", role="portfolio_manager"))
        assert seen == {"pc-a"}
        async with db.session(tenant_id=b.id) as s:
            assert list((await s.execute(sa.select(User))).scalars()) == []
            await set_tenant(s, a.id)
            assert len(list((await s.execute(sa.select(User))).scalars())) == 1
    finally:
        await db.stop()
