"""Schema migrations without an `alembic.ini`: the scripts ship inside the package and run programmatically.

`upgrade`, `downgrade` and `current` take a database URL; `Database.migrate` reuses its own engine through
`upgrade_engine`. Alembic runs on the async connection via `run_sync`, so the same code serves aiosqlite
and asyncpg and can be awaited from a running event loop (a service starting up, a test).

Migrations run as the schema owner. Given an `AppRole`, an upgrade on PostgreSQL also provisions the
non-owner role the services connect as (`aitrading.storage.oltp.roles`), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from aitrading.common.errors import ConfigError, OperationalError
from aitrading.storage.oltp.roles import AppRole, provision_app_role

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current",
    "current_engine",
    "downgrade",
    "ensure_database",
    "head",
    "upgrade",
    "upgrade_engine",
]

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
MIGRATION_LOCK_KEY = 0x41495452_4D494752  # "AITR" "MIGR": the advisory lock serialising migrations

_T = TypeVar("_T")


def alembic_config(url: str | None = None) -> Config:
    """Return an Alembic config pointing at the packaged migrations (and at `url`, if given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
    return cfg


def head() -> str:
    """Return the newest revision the packaged scripts define."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if rev is None:
        raise OperationalError(f"no migrations found in {MIGRATIONS_DIR}")
    return rev


async def upgrade(url: str, rev: str = "head", *, app_role: AppRole | None = None) -> None:
    """Upgrade the database at `url` (its owner's URL) to `rev`; on PostgreSQL provision `app_role` too."""
    await _with_engine(url, lambda engine: upgrade_engine(engine, rev, app_role=app_role))


async def downgrade(url: str, rev: str) -> None:
    """Downgrade the database at `url` to `rev` (`"base"` removes every table the migrations made)."""
    await _with_engine(url, lambda engine: _run_command(engine, command.downgrade, rev))


async def current(url: str) -> str | None:
    """Return the revision the database at `url` is at, or None if it has never been migrated."""
    return await _with_engine(url, current_engine)


async def ensure_database(url: str) -> bool:
    """Create the database `url` names if it does not exist yet; return whether it was created.

    For development and first deployments: on PostgreSQL it connects to the `postgres` maintenance database
    with the same credentials (which need CREATEDB); for SQLite the file and its folder appear on first use.
    """
    from aitrading.storage.oltp.database import make_engine

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        make_engine(url)  # validates the URL and creates a SQLite file's folder
        return False
    name = parsed.database
    if not name:
        raise ConfigError(f"database URL {parsed.render_as_string()} names no database")
    admin = make_engine(parsed.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    exists = sa.text("SELECT 1 FROM pg_database WHERE datname = :name")
    try:
        async with admin.connect() as conn:
            if (await conn.execute(exists, {"name": name})).first() is not None:
                return False
            quoted = '"' + name.replace('"', '""') + '"'
            try:
                await conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            except DBAPIError:
                if (await conn.execute(exists, {"name": name})).first() is None:
                    raise
                return False  # created concurrently by another process
            return True
    finally:
        await admin.dispose()


async def upgrade_engine(engine: AsyncEngine, rev: str = "head", *, app_role: AppRole | None = None) -> None:
    """Upgrade the database behind `engine` to `rev` in one transaction.

    With `app_role` on PostgreSQL, create or update that role and grant it its privileges on the tables
    the upgrade leaves (ignored on SQLite, which has no roles).
    """
    await _run_command(engine, command.upgrade, rev, app_role=app_role)


async def current_engine(engine: AsyncEngine) -> str | None:
    """Return the revision of the database behind `engine`, or None if it has never been migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def _run_command(
    engine: AsyncEngine, cmd: Callable[[Config, str], None], rev: str, *, app_role: AppRole | None = None
) -> None:
    def run(sync_conn: Connection) -> None:
        postgresql = sync_conn.dialect.name == "postgresql"
        if postgresql:
            # Replicas starting together migrate one after another; the later ones find the schema at head.
            sync_conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn  # env.py uses it instead of opening its own
        cmd(cfg, rev)
        if postgresql and app_role is not None:
            provision_app_role(sync_conn, app_role)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def _with_engine(url: str, fn: Callable[[AsyncEngine], Awaitable[_T]]) -> _T:
    from aitrading.storage.oltp.database import make_engine

    engine = make_engine(url, poolclass=NullPool)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()
