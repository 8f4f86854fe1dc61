"""Fixtures: a started embedded tick store per test, in its own directory.

chDB admits one data path per process at a time, so each store is stopped at the end of its test (as the
tick-store tests do) before the next test opens another path.
"""

from __future__ import annotations

import pytest

from aitrading.storage.ticks import ChDBTickStore


@pytest.fixture
def store(chdb_store: ChDBTickStore) -> ChDBTickStore:
    """The shared started `ChDBTickStore` (see tests/conftest.py)."""
    return chdb_store
