"""Fixtures of the PostgreSQL integration tests: a migrated database, a superuser and the app role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import asyncpg
import pytest

from aitrading.storage.oltp import AppRole, upgrade


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
async def migrated_db(fresh_postgres_db: str) -> str:
    await upgrade(fresh_postgres_db)
    return fresh_postgres_db


@pytest.fixture
async def admin(migrated_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database (bypasses row-level security, as superusers do)."""
    conn = await asyncpg.connect(asyncpg_dsn(migrated_db))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def app_role(migrated_db: str, admin: asyncpg.Connection) -> AsyncIterator[str]:
    """The application role as the migrations provision it: no ownership, superuser or BYPASSRLS; DML only."""
    role = f"aitrading_app_{uuid.uuid4().hex[:10]}"
    await upgrade(migrated_db, app_role=AppRole(role, "test-only"))
    try:
        yield role
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")


@pytest.fixture
def app_url(migrated_db: str, app_role: str) -> str:
    """The database URL as the application role logs in."""
    parsed = urlparse(migrated_db)
    return f"postgresql+asyncpg://{app_role}:test-only@{parsed.hostname}:{parsed.port or 5432}{parsed.path}"
