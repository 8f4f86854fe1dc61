"""Fixtures: the same tick-store contract over every implementation this machine can run.

- `chdb`: `ChDBTickStore`, embedded chDB in a `tmp_path` directory.
- `clickhouse-connect/chdb`: `ClickHouseTickStore` through clickhouse-connect's embedded chDB backend
  (`chdb:///path` URL) — the server store's client calls, binding and type mapping, without HTTP.
- `clickhouse-server`: `ClickHouseTickStore` against a real server at `AITRADING_TEST_CLICKHOUSE_URL`, in a
  fresh database per test. No ClickHouse server runs on the development machine or in CI (it is not one
  of the services `.ci/run` starts), so this one skips unless a server is provided.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from tickstore_helpers import Stores

from aitrading.storage.ticks import ChDBTickStore, ClickHouseTickStore, TickStore

CLICKHOUSE_URL = os.environ.get("AITRADING_TEST_CLICKHOUSE_URL", "")
KINDS = ["chdb", "clickhouse-connect/chdb", "clickhouse-server"]


def _server_database() -> tuple[str, str]:
    """Return (admin URL, test database name) after creating the database, or skip."""
    if not CLICKHOUSE_URL:
        pytest.skip("AITRADING_TEST_CLICKHOUSE_URL is not set: no ClickHouse server here (nor a CI service)")
    import clickhouse_connect

    name = f"aitrading_t_{uuid.uuid4().hex[:12]}"
    try:
        client = clickhouse_connect.get_client(dsn=CLICKHOUSE_URL)
        client.command(f"CREATE DATABASE {name}")
        client.close()
    except Exception as exc:
        pytest.skip(f"ClickHouse at AITRADING_TEST_CLICKHOUSE_URL does not answer: {exc}")
    return CLICKHOUSE_URL, name


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """A `Stores` of each implementation, on a fresh location."""
    kind: str = request.param
    dropped: tuple[str, str] | None = None
    if kind == "chdb":
        path = tmp_path / "chdb"
        factory = Stores(kind, lambda: ChDBTickStore(path))
    elif kind == "clickhouse-connect/chdb":
        pytest.importorskip("clickhouse_connect.driver._chdbclient", reason="clickhouse-connect without chDB")
        url = f"chdb://{tmp_path / 'cc-chdb'}"
        factory = Stores(kind, lambda: ClickHouseTickStore(url))
    else:
        admin, database = _server_database()
        dropped = (admin, database)
        url = _with_database(admin, database)
        factory = Stores(kind, lambda: ClickHouseTickStore(url))
    try:
        yield factory
    finally:
        await factory.close_all()
        if dropped is not None:
            import clickhouse_connect

            client = clickhouse_connect.get_client(dsn=dropped[0])
            client.command(f"DROP DATABASE IF EXISTS {dropped[1]}")
            client.close()


@pytest.fixture
async def store(stores: Stores) -> TickStore:
    """A started store of each implementation."""
    return await stores.open()
