"""Tenant isolation in PostgreSQL itself, as the application role the migrations provision.

The database is configured as the platform configures it (`Database.from_config`): migrations run as the
owner (the test server's superuser) and create a per-test application role; the services' engine logs in as
that role. Every table with a `tenant_id` column (derived from the models, so new tables are covered) gets a
row of tenant A and a row of tenant B, and raw SQL inside A's transaction must never see or write B's rows.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from aitrading.common.config import PlatformConfig
from aitrading.common.errors import ConfigError
from aitrading.storage.oltp import (
    Base,
    Database,
    authenticate_device,
    ensure_tenant,
    make_engine,
    register_device,
    upgrade,
)
from aitrading.storage.oltp.roles import AppRole, provision_app_role, scram_sha256_verifier, table_privileges

pytestmark = pytest.mark.integration

TENANT_TABLES = [t for t in Base.metadata.sorted_tables if "tenant_id" in t.columns]
# Columns under CHECK constraints that a generic value would violate.
CHECKED_VALUES = {
    ("users", "role"): "analyst",
    ("config_entries", "scope"): "tenant",
    ("config_versions", "scope"): "tenant",
    ("config_versions", "action"): "put",
}
PASSWORD = "test-only-app-password"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
async def admin(fresh_postgres_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database (it owns the schema, and bypasses RLS as superusers do)."""
    conn = await asyncpg.connect(asyncpg_dsn(fresh_postgres_db))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def role_name(admin: asyncpg.Connection) -> AsyncIterator[str]:
    """A unique application role name for this test; the role is dropped afterwards if it was created."""
    name = f"aitrading_app_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
            await admin.execute(f"DROP OWNED BY {name}")
            await admin.execute(f"DROP ROLE {name}")


@pytest.fixture
def cfg(fresh_postgres_db: str, role_name: str) -> PlatformConfig:
    return PlatformConfig(
        mode="test",
        storage={"oltp_url": fresh_postgres_db, "oltp_app_role": role_name, "oltp_app_password": PASSWORD},
    )


@pytest.fixture
async def db(cfg: PlatformConfig) -> AsyncIterator[Database]:
    """The platform's database as the services get it: migrated as the owner, connected as the app role."""
    database = Database.from_config(cfg, migrate_on_start=True)
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture
async def app(db: Database, cfg: PlatformConfig) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection logged in as the application role (no SET ROLE: the role itself)."""
    conn = await asyncpg.connect(asyncpg_dsn(cfg.storage.resolved_app_url()))
    try:
        yield conn
    finally:
        await conn.close()


def _value(table: sa.Table, col: sa.Column[Any], tenant: uuid.UUID, nonce: str) -> object:
    if (table.name, col.name) in CHECKED_VALUES:
        return CHECKED_VALUES[table.name, col.name]
    kind = getattr(col.type, "impl_instance", col.type).python_type  # a TypeDecorator: its impl's type
    if kind is uuid.UUID:
        return uuid.uuid4()
    if kind is str:
        length = getattr(col.type, "length", None) or 64
        return f"{tenant.hex[:8]}{nonce}-{table.name}-{col.name}"[:length]  # unique per tenant and nonce
    if kind is bool:
        return False
    if kind is int:
        return 1
    if kind is Decimal:
        return Decimal("1.5")
    if kind is datetime:
        return T0
    raise AssertionError(f"no test value for {table.name}.{col.name} of type {col.type}")


def row_for(
    table: sa.Table, tenant: uuid.UUID, parents: dict[str, object], nonce: str = ""
) -> dict[str, object]:
    """A valid row of `table` for `tenant`; foreign keys point at `parents` (table -> key) of the tenant."""
    row: dict[str, object] = {}
    for col in table.columns:
        if col.name == "tenant_id":
            row[col.name] = tenant
        elif col.foreign_keys:
            row[col.name] = parents[next(iter(col.foreign_keys)).column.table.name]
        elif col.primary_key or not (col.nullable or col.server_default is not None):
            row[col.name] = _value(table, col, tenant, nonce)
    return row


def _key(table: sa.Table, row: dict[str, object]) -> object:
    (pk,) = table.primary_key.columns
    return row[pk.name]


async def seed(owner_url: str) -> tuple[uuid.UUID, uuid.UUID, dict[uuid.UUID, dict[str, object]]]:
    """Give tenants A and B one row in every tenant-owned table (as the owner/superuser, so RLS is off)."""
    a, b = uuid.uuid4(), uuid.uuid4()
    keys: dict[uuid.UUID, dict[str, object]] = {a: {"tenants": a}, b: {"tenants": b}}
    engine = make_engine(owner_url)
    try:
        async with engine.begin() as conn:
            for tenant, slug in ((a, "tenant-a"), (b, "tenant-b")):
                await conn.execute(
                    Base.metadata.tables["tenants"].insert(), {"id": tenant, "slug": slug, "name": slug}
                )
                for table in TENANT_TABLES:
                    row = row_for(table, tenant, keys[tenant])
                    await conn.execute(table.insert(), row)
                    keys[tenant][table.name] = _key(table, row)
    finally:
        await engine.dispose()
    return a, b, keys


# --- the role -----------------------------------------------------------------------------------------------


async def test_app_role_is_a_login_role_without_superuser_bypassrls_or_ownership(
    db: Database, admin: asyncpg.Connection, role_name: str
) -> None:
    role = await admin.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", role_name)
    assert role is not None
    assert role["rolcanlogin"] is True
    assert (role["rolsuper"], role["rolbypassrls"], role["rolcreaterole"], role["rolcreatedb"]) == (
        False,
        False,
        False,
        False,
    )
    owners = {
        r["tableowner"]
        for r in await admin.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
    }
    assert role_name not in owners
    for owner in owners:
        assert await admin.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", role_name, owner) is False
    async with db.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT current_user"))).scalar_one() == role_name
    assert db.rls_bypass is None


async def test_app_role_holds_exactly_the_dml_each_table_needs(
    db: Database, admin: asyncpg.Connection, role_name: str
) -> None:
    tables = [*Base.metadata.tables, "alembic_version"]
    for table in tables:
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            held = await admin.fetchval("SELECT has_table_privilege($1, $2, $3)", role_name, table, privilege)
            assert held is (privilege in table_privileges(table)), (table, privilege)
    assert "UPDATE" not in table_privileges("audit_events")
    # No sequences to grant: keys are UUIDs. A serial column would need a grant in roles.py.
    assert await admin.fetchval("SELECT count(*) FROM pg_class WHERE relkind = 'S'") == 0


async def test_app_role_password_is_stored_as_a_scram_verifier_of_the_configured_password(
    db: Database, admin: asyncpg.Connection, role_name: str
) -> None:
    stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role_name)
    head, _keys = stored.rsplit("$", 1)
    iterations, salt = head.removeprefix("SCRAM-SHA-256$").split(":")
    assert stored == scram_sha256_verifier(PASSWORD, salt=base64.b64decode(salt), iterations=int(iterations))
    assert PASSWORD not in stored


async def test_scram_verifier_matches_what_postgresql_computes_itself(admin: asyncpg.Connection) -> None:
    probe = f"aitrading_probe_{uuid.uuid4().hex[:10]}"
    async with admin.transaction():  # rolled back: the probe role never outlives the test
        await admin.execute("SET LOCAL password_encryption = 'scram-sha-256'")
        await admin.execute(f"CREATE ROLE {probe} PASSWORD 'p@ss w0rd''s'")
        stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", probe)
        await admin.execute("ROLLBACK; BEGIN")  # leave no role behind even if an assert below fails
    head, _ = stored.rsplit("$", 1)
    iterations, salt = head.removeprefix("SCRAM-SHA-256$").split(":")
    assert (
        scram_sha256_verifier("p@ss w0rd's", salt=base64.b64decode(salt), iterations=int(iterations))
        == stored
    )
    assert (
        scram_sha256_verifier("p@ss w0rd'S", salt=base64.b64decode(salt), iterations=int(iterations))
        != stored
    )


async def test_reprovisioning_revokes_privileges_granted_by_hand_and_is_idempotent(
    db: Database, admin: asyncpg.Connection, role_name: str, fresh_postgres_db: str
) -> None:
    await admin.execute(f"GRANT TRUNCATE, UPDATE ON audit_events TO {role_name}")
    await upgrade(fresh_postgres_db, app_role=AppRole(role_name, PASSWORD))
    for privilege in ("TRUNCATE", "UPDATE"):
        assert (
            await admin.fetchval("SELECT has_table_privilege($1, 'audit_events', $2)", role_name, privilege)
            is False
        )
    await asyncio.gather(
        *(upgrade(fresh_postgres_db, app_role=AppRole(role_name, PASSWORD)) for _ in range(3))
    )
    assert await admin.fetchval("SELECT has_table_privilege($1, 'orders', 'INSERT')", role_name) is True


async def test_a_role_created_meanwhile_by_another_database_is_updated_not_an_error(
    fresh_postgres_db: str, admin: asyncpg.Connection, role_name: str
) -> None:
    """Roles are cluster-wide: two databases' migrations may create the same role at the same moment."""
    other = f"{fresh_postgres_db}_2"
    other_name = other.rsplit("/", 1)[1]
    await admin.execute(f'CREATE DATABASE "{other_name}"')
    engines = [make_engine(fresh_postgres_db), make_engine(other)]
    role = AppRole(role_name, PASSWORD)
    try:
        for url in (fresh_postgres_db, other):
            await upgrade(url)
        async with engines[0].connect() as first:
            await first.begin()
            await first.run_sync(provision_app_role, role)  # created, not yet committed

            async def second() -> None:
                async with engines[1].begin() as conn:  # its CREATE ROLE waits for `first`, then collides
                    await conn.run_sync(provision_app_role, role)

            racing = asyncio.create_task(second())
            await asyncio.sleep(0.5)
            assert not racing.done()
            await first.commit()
        await racing
        for engine in engines:
            async with engine.connect() as conn:
                held = await conn.execute(
                    sa.text("SELECT has_table_privilege(:r, 'orders', 'INSERT')"), {"r": role_name}
                )
                assert held.scalar_one() is True
    finally:
        for engine in engines:
            await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{other_name}" WITH (FORCE)')


async def test_provisioning_refuses_the_owner_and_privileged_roles(
    fresh_postgres_db: str, admin: asyncpg.Connection, role_name: str
) -> None:
    owner = await admin.fetchval("SELECT current_user")
    with pytest.raises(ConfigError, match="owns the schema"):
        await upgrade(fresh_postgres_db, app_role=AppRole(owner, PASSWORD))
    await admin.execute(f"CREATE ROLE {role_name} LOGIN BYPASSRLS")
    with pytest.raises(ConfigError, match="superuser or BYPASSRLS"):
        await upgrade(fresh_postgres_db, app_role=AppRole(role_name, PASSWORD))
    flags = await admin.fetchrow("SELECT rolbypassrls FROM pg_roles WHERE rolname = $1", role_name)
    assert flags is not None
    assert flags["rolbypassrls"] is True  # refused, not silently demoted


async def test_production_database_refuses_to_start_as_a_role_that_bypasses_rls(
    fresh_postgres_db: str,
) -> None:
    owner = Database(fresh_postgres_db, require_rls=True)
    with pytest.raises(ConfigError, match="superuser"):
        await owner.start()
    relaxed = Database(fresh_postgres_db)
    await relaxed.start()
    try:
        assert relaxed.rls_bypass is not None
        assert "superuser" in relaxed.rls_bypass
    finally:
        await relaxed.stop()


# --- isolation ----------------------------------------------------------------------------------------------


async def test_raw_sql_inside_tenant_a_transaction_sees_no_row_of_tenant_b_in_any_table(
    db: Database, admin: asyncpg.Connection, fresh_postgres_db: str
) -> None:
    assert len(TENANT_TABLES) >= 15  # every tenant-owned table the models declare, not a hand-kept list
    a, b, _ = await seed(fresh_postgres_db)
    for table in TENANT_TABLES:
        assert await admin.fetchval(f"SELECT count(*) FROM {table.name}") == 2, table.name  # both are there
        async with db.session(tenant_id=a) as s:
            owners = list((await s.execute(sa.text(f"SELECT tenant_id FROM {table.name}"))).scalars())
            of_b = (
                await s.execute(sa.text(f"SELECT count(*) FROM {table.name} WHERE tenant_id = :b"), {"b": b})
            ).scalar_one()
        assert owners == [a], table.name
        assert of_b == 0, table.name


async def test_without_a_tenant_every_tenant_table_shows_no_rows(
    db: Database, app: asyncpg.Connection, fresh_postgres_db: str
) -> None:
    await seed(fresh_postgres_db)
    for table in TENANT_TABLES:
        assert await app.fetchval(f"SELECT count(*) FROM {table.name}") == 0, table.name
        async with app.transaction():
            await app.execute("SELECT set_config('app.tenant_id', '', true)")
            assert await app.fetchval(f"SELECT count(*) FROM {table.name}") == 0, table.name
    assert await app.fetchval("SELECT count(*) FROM tenants") == 2  # the tenant directory is not a tenant's


async def test_inserting_a_row_of_tenant_b_inside_tenant_a_transaction_is_refused_in_every_table(
    db: Database, app: asyncpg.Connection, fresh_postgres_db: str
) -> None:
    a, b, keys = await seed(fresh_postgres_db)
    for table in TENANT_TABLES:
        row = row_for(table, b, keys[b], nonce="x")
        if table.name == "user_login_states":  # keyed by its user: B needs a second user for a new row
            row["user_id"] = await _second_user(fresh_postgres_db, b, keys[b])
        cols = list(row)
        names = ", ".join(f'"{c}"' for c in cols)
        params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
        insert = f"INSERT INTO {table.name} ({names}) VALUES ({params})"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await in_tenant(app, a, insert, *(row[c] for c in cols))


async def test_updating_or_deleting_across_tenants_inside_tenant_a_transaction_changes_nothing(
    db: Database, app: asyncpg.Connection, admin: asyncpg.Connection, fresh_postgres_db: str
) -> None:
    a, b, _ = await seed(fresh_postgres_db)
    for table in TENANT_TABLES:
        name = table.name
        # Moving A's own row to tenant B: the policy's WITH CHECK refuses (audit_events: no UPDATE at all).
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"row-level security|permission denied"):
            await in_tenant(app, a, f"UPDATE {name} SET tenant_id = $1", b)
        async with app.transaction():
            await app.execute("SELECT set_config('app.tenant_id', $1, true)", str(a))
            if "UPDATE" in table_privileges(name):
                assert (
                    await app.execute(f"UPDATE {name} SET tenant_id = tenant_id WHERE tenant_id = $1", b)
                    == "UPDATE 0"
                )
            assert await app.execute(f"DELETE FROM {name} WHERE tenant_id = $1", b) == "DELETE 0", name
        assert await admin.fetchval(f"SELECT count(*) FROM {name} WHERE tenant_id = $1", b) == 1, name
        assert await admin.fetchval(f"SELECT count(*) FROM {name} WHERE tenant_id = $1", a) == 1, name


async def in_tenant(conn: asyncpg.Connection, tenant: uuid.UUID, sql: str, *args: object) -> str:
    """Run `sql` in one transaction scoped to `tenant`, as the application does; return its status."""
    async with conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant))
        return str(await conn.execute(sql, *args))


async def _second_user(owner_url: str, tenant: uuid.UUID, parents: dict[str, object]) -> object:
    users = Base.metadata.tables["users"]
    row = row_for(users, tenant, parents, nonce="2")
    engine = make_engine(owner_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(users.insert(), row)
    finally:
        await engine.dispose()
    return row["id"]


# --- look-ups before the tenant is known still work ---------------------------------------------------------


async def test_device_registration_and_authentication_work_as_the_app_role(db: Database) -> None:
    async with db.session() as s:
        a = await ensure_tenant(s, "tenant-a", "A")
        b = await ensure_tenant(s, "tenant-b", "B")
        _, key_a = await register_device(s, a.id, "pc-a", "PC A")
    async with db.session() as s:
        await register_device(s, b.id, "pc-b", "PC B")
    async with db.session() as s:
        device = await authenticate_device(s, "pc-a", key_a, now=T0)
        assert device is not None
        assert device.tenant_id == a.id
        assert device.last_seen_at == T0
    async with db.session() as s:
        assert await authenticate_device(s, "pc-b", key_a) is None
    async with db.session(tenant_id=b.id) as s:
        seen = list((await s.execute(sa.text("SELECT device_id FROM devices"))).scalars())
    assert seen == ["pc-b"]


async def test_the_engine_finds_every_tenant_with_accounts_after_a_restart_as_the_app_role(
    db: Database, fresh_postgres_db: str
) -> None:
    # The engine reloads its books per tenant at start; a query across tenants would see no account at all.
    from aitrading.common.clock import TestClock
    from aitrading.engine.store import EngineStore

    a, b, _ = await seed(fresh_postgres_db)
    async with db.session() as s:
        await ensure_tenant(s, "tenant-c-no-accounts", "C")
    found = await EngineStore(db, TestClock()).tenants_with_accounts()
    assert sorted(found) == sorted([str(a), str(b)])
