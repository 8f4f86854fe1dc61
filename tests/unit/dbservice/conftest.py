"""Fixtures: a database service over an embedded chDB store in `tmp_path`, holding known ticks.

chDB allows one data path per process, so each test starts its own store on its own `tmp_path` and stops
it at the end (as `tests/unit/storage_ticks/conftest.py` does); starting one costs tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from dbservice_helpers import SECRET, eurusd_ticks, other_ticks

from aitrading.common.auth import TokenService
from aitrading.dbservice.service import DatabaseService
from aitrading.model.market import Tick
from aitrading.storage.ticks import ChDBTickStore, TickStore


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
def token(tokens: TokenService) -> str:
    """A valid token of a principal without any role or tenant: reading market data needs neither."""
    return tokens.issue("svc:test-reader")


@pytest.fixture
def eurusd() -> list[Tick]:
    return eurusd_ticks()


@pytest.fixture
async def store(chdb_store: ChDBTickStore, eurusd: list[Tick]) -> TickStore:
    """A started chDB store holding `eurusd` and `other_ticks()`."""
    await chdb_store.write_ticks(eurusd, {"test": 1})
    await chdb_store.write_ticks(other_ticks(), {"test": 2})
    return chdb_store


async def _client(service: DatabaseService) -> AsyncIterator[httpx.AsyncClient]:
    await service.start()
    transport = httpx.ASGITransport(app=service.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dbservice") as client:
            yield client
    finally:
        await service.stop()


@pytest.fixture
async def client(store: TickStore, tokens: TokenService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a started database service over `store`."""
    async for c in _client(DatabaseService({"tick_store": store.ping}, store=store, tokens=tokens)):
        yield c


@pytest.fixture
async def storeless_client(tokens: TokenService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a database service without a store (split mode with embedded chDB)."""
    async for c in _client(DatabaseService({}, store=None, tokens=tokens)):
        yield c
