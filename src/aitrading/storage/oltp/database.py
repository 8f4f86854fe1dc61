"""The OLTP database as a lifecycle component: async engine, sessions as units of work, readiness, migrations.

The URL picks the backend: `sqlite+aiosqlite:///var/aitrading.sqlite` (embedded default) or
`postgresql+asyncpg://user@host/db` (split deployments). SQLite connections run in WAL mode with foreign
keys enforced, and SQLAlchemy (not the driver) emits `BEGIN`, so transactions, savepoints and migration DDL
behave as on PostgreSQL (the recipe in SQLAlchemy's SQLite dialect documentation).

On PostgreSQL the services connect as a non-owner application role that row-level security binds, while
migrations connect as the schema owner (`migration_url`) and provision that role; `Database.from_config`
wires both from the storage config. See docs/adr/0015-row-level-security.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from aitrading.common.clock import Clock, LiveClock
from aitrading.common.errors import ConfigError, OperationalError
from aitrading.common.lifecycle import Component
from aitrading.storage.oltp.roles import AppRole, rls_bypass_reason
from aitrading.storage.oltp.tenancy import set_tenant

if TYPE_CHECKING:
    from aitrading.common.config import PlatformConfig

__all__ = ["Database", "make_engine"]

SQLITE_BUSY_TIMEOUT_MS = 5_000


def make_engine(url: str | URL, *, echo: bool = False, **kwargs: Any) -> AsyncEngine:
    """Create the async engine for `url`; for a SQLite file, create its folder and set the pragmas."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"storage.oltp_url: unsupported database {backend!r}; use sqlite or postgresql")
    if backend == "sqlite":
        if parsed.get_driver_name() != "aiosqlite":
            raise ConfigError(
                "storage.oltp_url: SQLite needs the async driver, e.g. sqlite+aiosqlite:///var/x.sqlite"
            )
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in database
        if not in_memory and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, echo=echo, **kwargs)
        _install_sqlite_pragmas(engine, wal=not in_memory)
        return engine
    if parsed.get_driver_name() != "asyncpg":
        raise ConfigError("storage.oltp_url: PostgreSQL needs the async driver, e.g. postgresql+asyncpg://…")
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(parsed, echo=echo, **kwargs)


def _install_sqlite_pragmas(engine: AsyncEngine, *, wal: bool) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the driver from issuing its own BEGIN; SQLAlchemy's "begin" event below does it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front (waiting up to busy_timeout for it). With a plain BEGIN a
        # transaction that reads and then writes fails at once with "database is locked" once another writer
        # has committed meanwhile: SQLite cannot upgrade a stale read snapshot, and no busy wait helps.
        # Readers outside transactions are unaffected (WAL).
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database(Component):
    """The OLTP database: start it, use `session()` for units of work, `ping()` for readiness."""

    name = "oltp"

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        echo: bool = False,
        migrate_on_start: bool = False,
        migration_url: str | None = None,
        app_role: AppRole | None = None,
        require_rls: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        """Open `url` for the application's work.

        `migration_url` is the schema owner's URL that `migrate` uses (default: `url`); with `app_role`,
        `migrate` also provisions that PostgreSQL role. With `require_rls`, `start` fails unless the
        connected role is bound by row-level security (not superuser, no BYPASSRLS, owns no table).
        """
        super().__init__()
        self._url = url
        self._clock: Clock = clock or LiveClock()
        self._echo = echo
        self._migrate_on_start = migrate_on_start
        self._migration_url = migration_url
        self._app_role = app_role
        self._require_rls = require_rls
        self._rls_bypass: str | None = None
        self._engine_kwargs = engine_kwargs
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @classmethod
    def from_config(
        cls, cfg: PlatformConfig, *, clock: Clock | None = None, migrate_on_start: bool = False, **kwargs: Any
    ) -> Database:
        """Build the database the platform config names.

        SQLite: `storage.oltp_url` (or the file under `storage.data_dir`), as before. PostgreSQL: the engine
        logs in as `storage.oltp_app_role` on the host and database of `storage.oltp_url`, whose own user is
        the schema owner that `migrate` uses; production mode refuses to start as a role that escapes
        row-level security.
        """
        storage = cfg.storage
        if not storage.uses_postgresql():
            return cls(storage.resolved_oltp_url(), clock=clock, migrate_on_start=migrate_on_start, **kwargs)
        role = AppRole(storage.oltp_app_role, storage.oltp_app_password.get_secret_value())
        return cls(
            storage.resolved_app_url(),
            clock=clock,
            migrate_on_start=migrate_on_start,
            migration_url=storage.resolved_oltp_url(),
            app_role=role,
            require_rls=cfg.mode == "production",
            **kwargs,
        )

    @property
    def clock(self) -> Clock:
        """The clock whose time callers pass as `now=` to the functions that stamp rows."""
        return self._clock

    @property
    def url(self) -> str:
        """The database URL with any password hidden (safe to log)."""
        return make_url(self._url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return make_url(self._url).get_backend_name()

    @property
    def rls_bypass(self) -> str | None:
        """After `start` on PostgreSQL: why the connected role escapes row-level security, or None."""
        return self._rls_bypass

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise OperationalError(f"database {self.url} is not started")
        return self._engine

    async def _on_start(self) -> None:
        self._engine = make_engine(self._url, echo=self._echo, **self._engine_kwargs)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        if self._migrate_on_start:
            await self.migrate()  # first: it creates the role this engine logs in as
        async with self._engine.connect() as conn:  # fail start loudly with the driver's own error
            await conn.execute(sa.text("SELECT 1"))
            if conn.dialect.name == "postgresql":
                self._rls_bypass = await conn.run_sync(rls_bypass_reason)
        if self._require_rls and self._rls_bypass is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None
            raise ConfigError(
                f"database {self.url}: {self._rls_bypass}, so row-level security would not isolate tenants; "
                "connect as the application role (see storage.oltp_app_role)"
            )

    async def _on_stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        self._sessions = None

    @asynccontextmanager
    async def session(self, tenant_id: UUID | str | None = None) -> AsyncIterator[AsyncSession]:
        """Yield a session inside one transaction that commits on success and rolls back on error.

        With `tenant_id`, the transaction is scoped to that tenant (see `set_tenant`). Calling
        `session.commit()` inside is allowed as the last statement; further statements after it are refused,
        which also keeps work from running outside the tenant scope the commit ended.
        """
        if self._sessions is None:
            raise OperationalError(f"database {self.url} is not started")
        async with self._sessions.begin() as session:
            if tenant_id is not None:
                await set_tenant(session, tenant_id)
            yield session

    async def ping(self) -> bool:
        """Tell whether the database answers; degrade the component when it does not, recover when it does."""
        if self._engine is None:
            return False
        try:
            async with self._engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready"; the reason goes to the state
            self.degrade(f"database ping failed: {exc}")
            return False
        self.recover()
        return True

    async def migrate(self, rev: str = "head") -> None:
        """Upgrade the schema to `rev` (Alembic) as the owner, and provision the application role if set.

        Without a separate `migration_url` this runs over the component's own engine.
        """
        from aitrading.storage.oltp.migrate import upgrade, upgrade_engine

        if self._migration_url is not None and self._migration_url != self._url:
            await upgrade(self._migration_url, rev, app_role=self._app_role)
        else:
            await upgrade_engine(self.engine, rev, app_role=self._app_role)
