"""Fixtures: a migrated SQLite database with two tenants, a memory bus, and a started config service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aitrading.common.auth import TokenService
from aitrading.common.bus import MemoryBus, Message
from aitrading.common.clock import TestClock
from aitrading.config_service.messages import CHANGED_ALL, ConfigChanged
from aitrading.config_service.service import ConfigService
from aitrading.storage.oltp import Database, ensure_tenant

SECRET = "a-test-secret-of-enough-length-for-config"


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def tokens(clock: TestClock) -> TokenService:
    return TokenService(SECRET, clock=clock)


@pytest.fixture
async def db(tmp_path: Path, clock: TestClock) -> AsyncIterator[Database]:
    database = Database(
        f"sqlite+aiosqlite:///{tmp_path / 'config.sqlite'}", clock=clock, migrate_on_start=True
    )
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture
async def tenants(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    """Two customer tenants, A and B."""
    async with db.session() as session:
        a = await ensure_tenant(session, "alpha", "Alpha Fund")
        b = await ensure_tenant(session, "beta", "Beta Trader")
        return a.id, b.id


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    b = MemoryBus()
    await b.connect()
    yield b
    await b.close()


@pytest.fixture
async def announcements(bus: MemoryBus) -> list[tuple[str, ConfigChanged]]:
    got: list[tuple[str, ConfigChanged]] = []

    async def on(subject: str, msg: Message) -> None:
        assert isinstance(msg, ConfigChanged)
        got.append((subject, msg))

    await bus.subscribe(CHANGED_ALL, on)
    return got


@pytest.fixture
async def service(
    db: Database, bus: MemoryBus, clock: TestClock, tokens: TokenService, tenants: tuple[uuid.UUID, uuid.UUID]
) -> AsyncIterator[ConfigService]:
    svc = ConfigService({"database": db.ping}, db=db, clock=clock, tokens=tokens, bus=bus)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def client(service: ConfigService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://config") as c:
        yield c
