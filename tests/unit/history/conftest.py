"""Fixtures: a started embedded tick store per test, in its own directory.

chDB admits one data path per process at a time, so each store is stopped at the end of its test (as the
tick-store tests do) before the next test opens another path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitrading.storage.ticks import ChDBTickStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ChDBTickStore]:
    """A started `ChDBTickStore` in `tmp_path`."""
    store = ChDBTickStore(tmp_path / "chdb")
    await store.start()
    try:
        yield store
    finally:
        await store.stop()
