"""The OLTP store on an embedded SQLite file: migrations, tenants, device keys, exact types."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, StatementError

from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError, ConfigError, OperationalError
from aitrading.common.lifecycle import ComponentState
from aitrading.storage.oltp import (
    Base,
    Database,
    Device,
    ExactDecimal,
    Tenant,
    User,
    authenticate_device,
    current,
    downgrade,
    ensure_database,
    ensure_device,
    ensure_tenant,
    hash_device_key,
    head,
    make_engine,
    register_device,
    revoke_device,
    set_tenant,
    upgrade,
)

# Every table the models declare: the migrations must create exactly these (no more, no fewer).
TABLES = set(Base.metadata.tables)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "oltp.sqlite"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = Database(sqlite_url(db_path), migrate_on_start=True)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


async def table_names(database: Database) -> set[str]:
    async with database.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


# --- migrations and engine -------------------------------------------------------------------------------


async def test_migrate_on_start_creates_parent_dir_and_reaches_head(db: Database, db_path: Path) -> None:
    assert await asyncio.to_thread(db_path.is_file)
    assert db.state is ComponentState.RUNNING
    assert await current(sqlite_url(db_path)) == head() == "0005"
    assert await table_names(db) == TABLES


async def test_sqlite_connections_use_wal_and_enforce_foreign_keys(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    with pytest.raises(IntegrityError):
        async with db.session() as s:
            s.add(Device(tenant_id=uuid.uuid4(), device_id="x", name="x", key_hash="0"))


async def test_migrated_schema_matches_the_models_exactly(db: Database) -> None:
    def diff(sync: sa.Connection) -> list[object]:
        ctx = MigrationContext.configure(sync, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(ctx, Base.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_downgrade_to_base_drops_every_table_and_upgrade_restores_them(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "x.sqlite")
    assert await current(url) is None
    await upgrade(url)
    await downgrade(url, "base")
    assert await current(url) is None
    database = Database(url)
    await database.start()
    try:
        assert await table_names(database) == set()
        await database.migrate()
        assert await table_names(database) == TABLES
    finally:
        await database.stop()


async def test_ensure_database_for_sqlite_creates_the_folder_and_reports_nothing_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "db.sqlite"
    assert await ensure_database(sqlite_url(path)) is False
    assert await asyncio.to_thread(path.parent.is_dir)


def test_engine_for_a_sync_sqlite_driver_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="aiosqlite"):
        make_engine("sqlite:///x.sqlite")


def test_engine_for_an_unsupported_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mysql"):
        make_engine("mysql+aiomysql://u@h/db")


# --- the component -----------------------------------------------------------------------------------------


async def test_session_before_start_is_an_operational_error(db_path: Path) -> None:
    database = Database(sqlite_url(db_path))
    with pytest.raises(OperationalError, match="not started"):
        async with database.session():
            pass
    assert await database.ping() is False


async def test_database_hands_out_the_injected_clock(db_path: Path, clock: TestClock) -> None:
    assert Database(sqlite_url(db_path), clock=clock).clock is clock


async def test_commit_inside_a_session_ends_its_unit_of_work(db: Database) -> None:
    async with db.session() as s:
        await ensure_tenant(s, "a", "A")
        await s.commit()
    async with db.session() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Tenant))).scalar_one() == 1


async def test_ping_answers_true_while_running(db: Database) -> None:
    assert await db.ping() is True
    assert db.is_ready


async def test_session_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    async with db.session() as s:
        await ensure_tenant(s, "kept", "Kept")

    async def create_then_fail() -> None:
        async with db.session() as s:
            await ensure_tenant(s, "lost", "Lost")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await create_then_fail()
    async with db.session() as s:
        slugs = set((await s.execute(sa.select(Tenant.slug))).scalars())
    assert slugs == {"kept"}


async def test_url_hides_the_password() -> None:
    database = Database("postgresql+asyncpg://app:s3cret@db.example/aitrading")
    assert "s3cret" not in database.url
    assert database.dialect == "postgresql"


async def test_set_tenant_is_a_no_op_on_sqlite_but_validates_the_id(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "acme", "Acme")
        await set_tenant(s, tenant.id)
        await set_tenant(s, str(tenant.id))
        with pytest.raises(ValueError, match="UUID"):
            await set_tenant(s, "not-a-uuid")


# --- tenants and users -----------------------------------------------------------------------------------


async def test_ensure_tenant_is_idempotent_and_keeps_the_first_name(db: Database, clock: TestClock) -> None:
    async with db.session() as s:
        first = await ensure_tenant(s, "acme", "Acme Ltd", now=clock.utcnow())
    async with db.session() as s:
        second = await ensure_tenant(s, "acme", "Other name")
    assert second.id == first.id
    assert second.name == "Acme Ltd"
    assert second.created_at == clock.utcnow()
    assert second.tier == "free"
    assert second.disabled is False


@pytest.mark.parametrize("slug", ["", "Acme", "a.b", "-acme", "acme-", "a" * 64, "ac me", "ac*"])
async def test_ensure_tenant_with_an_unsafe_slug_is_rejected(db: Database, slug: str) -> None:
    async with db.session() as s:
        with pytest.raises(BadInputError, match="slug"):
            await ensure_tenant(s, slug, "X")


async def test_same_email_is_allowed_in_two_tenants_but_not_twice_in_one(db: Database) -> None:
    async with db.session() as s:
        a = await ensure_tenant(s, "a", "A")
        b = await ensure_tenant(s, "b", "B")
        for tenant in (a, b):
            s.add(User(tenant_id=tenant.id, email="pm@example.com", password_hash="h", role="analyst"))
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with db.session() as s:
            s.add(User(tenant_id=a.id, email="pm@example.com", password_hash="h", role="analyst"))


async def test_user_with_a_role_outside_the_security_model_is_rejected(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "a", "A")
    with pytest.raises(IntegrityError, match="ck_users_role"):
        async with db.session() as s:
            s.add(User(tenant_id=tenant.id, email="x@example.com", password_hash="h", role="superuser"))


async def test_timestamps_come_back_as_aware_utc_whatever_zone_they_were_given_in(db: Database) -> None:
    cet = timezone(timedelta(hours=1))
    given = datetime(2024, 3, 1, 13, 30, 15, 123456, tzinfo=cet)
    async with db.session() as s:
        tenant = await ensure_tenant(s, "a", "A", now=given)
    async with db.session() as s:
        loaded = (await s.execute(sa.select(Tenant).where(Tenant.id == tenant.id))).scalar_one()
    assert loaded.created_at == given
    assert loaded.created_at.tzinfo is UTC
    assert loaded.created_at.hour == 12


async def test_naive_timestamp_is_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with db.session() as s:
            await ensure_tenant(s, "a", "A", now=datetime(2024, 1, 1))


async def test_server_default_timestamp_reads_back_as_aware_utc(db: Database) -> None:
    async with db.session() as s:
        await s.execute(
            sa.text("INSERT INTO tenants (id, slug, name) VALUES (:id, 'raw', 'Raw')"),
            {"id": uuid.uuid4().hex},
        )
    async with db.session() as s:
        loaded = (await s.execute(sa.select(Tenant).where(Tenant.slug == "raw"))).scalar_one()
    assert loaded.created_at.tzinfo is UTC
    assert loaded.tier == "free"
    assert loaded.disabled is False


# --- exact decimals ----------------------------------------------------------------------------------------


async def test_exact_decimal_round_trips_and_sums_without_float_drift_on_sqlite(db: Database) -> None:
    metadata = sa.MetaData()
    ledger = sa.Table("ledger_test", metadata, sa.Column("amount", ExactDecimal(28, 8)))
    amounts = [Decimal("0.1"), Decimal("0.2"), Decimal("12345678901.12345678"), Decimal("-0.00000001")]
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(ledger.insert(), [{"amount": a} for a in amounts])
        stored = list((await conn.execute(sa.select(ledger.c.amount))).scalars())
        total = (await conn.execute(sa.select(sa.func.sum(ledger.c.amount)))).scalar_one()
        above = sa.select(sa.func.count()).where(ledger.c.amount > Decimal("0.15"))
        over = (await conn.execute(above)).scalar()
    assert stored == amounts
    assert total == Decimal("12345678901.42345677")
    assert over == 2


@pytest.mark.parametrize("bad", [Decimal("0.000000001"), 0.1])
async def test_exact_decimal_refuses_values_it_cannot_store_exactly(db: Database, bad: object) -> None:
    metadata = sa.MetaData()
    ledger = sa.Table("ledger_bad", metadata, sa.Column("amount", ExactDecimal(28, 8)))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        with pytest.raises(StatementError):
            await conn.execute(ledger.insert(), {"amount": bad})


# --- devices ---------------------------------------------------------------------------------------------


def test_device_key_hash_is_sha256_hex() -> None:
    assert hash_device_key("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(hash_device_key("k")) == 64


async def test_registered_device_authenticates_with_its_key_and_records_last_seen(
    db: Database, clock: TestClock
) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "acme", "Acme")
        device, key = await register_device(s, tenant.id, "pc-1", "Trading PC", now=clock.utcnow())
    assert len(key) >= 43
    assert device.key_hash == hash_device_key(key)
    assert key not in device.key_hash
    assert device.scope_set == {"md:publish", "orders:execute"}
    assert device.last_seen_at is None
    clock.advance(60)
    async with db.session() as s:
        found = await authenticate_device(s, "pc-1", key, now=clock.utcnow())
    assert found is not None
    assert found.tenant_id == tenant.id
    async with db.session() as s:
        stored = (await s.execute(sa.select(Device).where(Device.device_id == "pc-1"))).scalar_one()
    assert stored.last_seen_at == clock.utcnow()


async def test_each_registration_gets_a_different_random_key(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "acme", "Acme")
        _, k1 = await register_device(s, tenant.id, "pc-1", "a")
        _, k2 = await register_device(s, tenant.id, "pc-2", "b")
    assert k1 != k2


async def test_device_with_a_wrong_key_is_not_authenticated(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "acme", "Acme")
        _, key = await register_device(s, tenant.id, "pc-1", "PC")
    async with db.session() as s:
        assert await authenticate_device(s, "pc-1", key + "x") is None
        assert await authenticate_device(s, "pc-1", "") is None
        assert await authenticate_device(s, "no-such-device", key) is None


async def test_revoked_device_is_not_authenticated(db: Database, clock: TestClock) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "acme", "Acme")
        _, key = await register_device(s, tenant.id, "pc-1", "PC")
    async with db.session(tenant_id=tenant.id) as s:
        assert await revoke_device(s, "pc-1", now=clock.utcnow()) is True
        assert await revoke_device(s, "unknown") is False
    async with db.session() as s:
        assert await authenticate_device(s, "pc-1", key) is None


async def test_device_of_a_disabled_tenant_is_not_authenticated(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "acme", "Acme")
        _, key = await register_device(s, tenant.id, "pc-1", "PC")
        tenant.disabled = True
    async with db.session() as s:
        assert await authenticate_device(s, "pc-1", key) is None


async def test_registering_a_taken_device_id_is_rejected(db: Database) -> None:
    async with db.session() as s:
        a = await ensure_tenant(s, "a", "A")
        b = await ensure_tenant(s, "b", "B")
        await register_device(s, a.id, "pc-1", "PC")
        with pytest.raises(BadInputError, match="already registered"):
            await register_device(s, b.id, "pc-1", "PC")


async def test_ensure_device_provisions_a_known_key_idempotently(db: Database) -> None:
    dev_key = "dev-insecure-device-key-0001"
    async with db.session() as s:
        tenant = await ensure_tenant(s, "dev", "Development")
        first = await ensure_device(s, tenant.id, "dev-device", dev_key)
    async with db.session() as s:
        again = await ensure_device(s, tenant.id, "dev-device", dev_key)
        count = (await s.execute(sa.select(sa.func.count()).select_from(Device))).scalar_one()
    assert again.id == first.id
    assert count == 1
    async with db.session() as s:
        assert await authenticate_device(s, "dev-device", dev_key) is not None


async def test_ensure_device_with_a_new_key_replaces_the_old_one(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "dev", "Development")
        await ensure_device(s, tenant.id, "dev-device", "old-key-0123456789")
        await ensure_device(s, tenant.id, "dev-device", "new-key-0123456789")
    async with db.session() as s:
        assert await authenticate_device(s, "dev-device", "old-key-0123456789") is None
        assert await authenticate_device(s, "dev-device", "new-key-0123456789") is not None


async def test_ensure_device_does_not_undo_a_revocation(db: Database) -> None:
    key = "dev-insecure-device-key-0001"
    async with db.session() as s:
        tenant = await ensure_tenant(s, "dev", "Development")
        await ensure_device(s, tenant.id, "dev-device", key)
        await revoke_device(s, "dev-device")
        await ensure_device(s, tenant.id, "dev-device", key)
    async with db.session() as s:
        assert await authenticate_device(s, "dev-device", key) is None


async def test_ensure_device_of_another_tenant_is_rejected(db: Database) -> None:
    key = "dev-insecure-device-key-0001"
    async with db.session() as s:
        a = await ensure_tenant(s, "a", "A")
        b = await ensure_tenant(s, "b", "B")
        await ensure_device(s, a.id, "pc-1", key)
        with pytest.raises(BadInputError, match="another tenant"):
            await ensure_device(s, b.id, "pc-1", key)


async def test_ensure_device_with_a_short_key_is_rejected(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "a", "A")
        with pytest.raises(BadInputError, match="at least 16"):
            await ensure_device(s, tenant.id, "pc-1", "short")


async def test_device_scopes_with_spaces_are_rejected(db: Database) -> None:
    async with db.session() as s:
        tenant = await ensure_tenant(s, "a", "A")
        with pytest.raises(BadInputError, match="scopes"):
            await register_device(s, tenant.id, "pc-1", "PC", scopes=["md publish"])


# --- the alembic command line path -------------------------------------------------------------------------


def test_alembic_commands_without_a_shared_connection_migrate_the_configured_url(tmp_path: Path) -> None:
    from alembic import command

    from aitrading.storage.oltp.migrate import alembic_config

    url = sqlite_url(tmp_path / "cli" / "x.sqlite")
    command.upgrade(alembic_config(url), "head")
    assert asyncio.run(current(url)) == head()
    command.downgrade(alembic_config(url), "base")
    assert asyncio.run(current(url)) is None


def test_offline_postgresql_sql_enables_forced_row_level_security(capsys: pytest.CaptureFixture[str]) -> None:
    from alembic import command

    from aitrading.storage.oltp.migrate import alembic_config

    command.upgrade(alembic_config("postgresql+asyncpg://u@h/db"), "head", sql=True)
    sql = capsys.readouterr().out
    assert "CREATE TABLE devices" in sql
    assert "ALTER TABLE devices FORCE ROW LEVEL SECURITY" in sql
    assert "CREATE POLICY tenant_isolation ON users" in sql
