"""Shared fixtures: real services for integration tests, shared market data, isolated config.

Under `CI=true` a test that needs PostgreSQL, Redis or NATS and cannot reach it FAILS; elsewhere it skips
with the reason. `.ci/run` starts the services first.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from hypothesis import settings

from aitrading.storage.ticks import ChDBTickStore

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Property tests: no deadline anywhere (a per-example time limit is a wall-clock assertion, and a loaded
# machine turns it into a flaky failure). Under CI the examples are derandomized (drawn from a seed fixed
# per test), so a CI run tries exactly the examples a local `CI=true` run tried; elsewhere every run draws
# new examples and keeps finding what a fixed set would miss. HYPOTHESIS_PROFILE picks either by name.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

POSTGRES_URL = os.environ.get(
    "AITRADING_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AITRADING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NATS_URL = os.environ.get("AITRADING_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or {"postgresql": 5432, "redis": 6379, "nats": 4222}.get(
        parsed.scheme.split("+")[0], 0
    )
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> str:
    """Return `url` if the service answers; otherwise fail under CI, skip elsewhere."""
    if _reachable(url):
        return url
    reason = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: integration tests must run; .ci/run should have started it)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's AITRADING_* environment and config files out of tests."""
    for key in list(os.environ):
        if key.startswith("AITRADING_") and not key.startswith("AITRADING_TEST_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def postgres_url() -> str:
    """URL of the real PostgreSQL server (asyncpg driver)."""
    return require_service("PostgreSQL", POSTGRES_URL)


@pytest.fixture
async def fresh_postgres_db(postgres_url: str) -> AsyncIterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards; yields its asyncpg URL.

    A test that gives the platform this database names its app role `<database>_app`
    (`platform_helpers.app_role_for`): the role is
    dropped with the database (roles are server-wide; ADR 0015).
    """
    import asyncpg

    parsed = urlparse(postgres_url.replace("+asyncpg", ""))
    name = f"aitrading_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        database="postgres",
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{name}_app"')
        await admin.close()


@pytest.fixture
def redis_url() -> str:
    """URL of the real Redis server (database 15, flushed by the tests that use it)."""
    return require_service("Redis", REDIS_URL)


@pytest.fixture
def nats_url() -> str:
    """URL of the real NATS server with JetStream."""
    return require_service("NATS", NATS_URL)


@pytest.fixture
async def chdb_store(tmp_path: Path) -> AsyncIterator[ChDBTickStore]:
    """A started embedded tick store in `tmp_path`, stopped after the test.

    chDB admits one data path per process at a time, so every store is stopped before the next test opens
    another path.
    """
    store = ChDBTickStore(tmp_path / "chdb")
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


@pytest.fixture
def shared_data() -> Path:
    """The shared real-market-data folder; tests that need it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared market data not found at {SHARED_DATA}")
    return SHARED_DATA
