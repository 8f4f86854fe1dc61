"""Schema migrations without an `alembic.ini`: the scripts ship inside the package and run programmatically.

`upgrade`, `downgrade` and `current` take a database URL; `Database.migrate` reuses its own engine through
`upgrade_engine`. Alembic runs on the async connection via `run_sync`, so the same code serves aiosqlite
and asyncpg and can be awaited from a running event loop (a service starting up, a test).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current",
    "current_engine",
    "downgrade",
    "head",
    "upgrade",
    "upgrade_engine",
]

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

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
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return rev


async def upgrade(url: str, rev: str = "head") -> None:
    """Upgrade the database at `url` to `rev`."""
    await _with_engine(url, lambda engine: upgrade_engine(engine, rev))


async def downgrade(url: str, rev: str) -> None:
    """Downgrade the database at `url` to `rev` (`"base"` removes every table the migrations made)."""
    await _with_engine(url, lambda engine: _run_command(engine, command.downgrade, rev))


async def current(url: str) -> str | None:
    """Return the revision the database at `url` is at, or None if it has never been migrated."""
    return await _with_engine(url, current_engine)


async def upgrade_engine(engine: AsyncEngine, rev: str = "head") -> None:
    """Upgrade the database behind `engine` to `rev` in one transaction."""
    await _run_command(engine, command.upgrade, rev)


async def current_engine(engine: AsyncEngine) -> str | None:
    """Return the revision of the database behind `engine`, or None if it has never been migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def _run_command(engine: AsyncEngine, cmd: Callable[[Config, str], None], rev: str) -> None:
    def run(sync_conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn  # env.py uses it instead of opening its own
        cmd(cfg, rev)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def _with_engine(url: str, fn: Callable[[AsyncEngine], Awaitable[_T]]) -> _T:
    from aitrading.storage.oltp.database import make_engine

    engine = make_engine(url, poolclass=NullPool)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()
