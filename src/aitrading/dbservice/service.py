"""The database service (port 8008): market-data history over the tick store.

It serves the history API of `aitrading.dbservice.api` (symbols, ticks, bars for any range and timeframe)
next to the standard service shell (health, readiness of its dependencies, metrics, version). Migrations
and audit queries are planned and arrive with their issues.

Split mode with the embedded chDB store: chDB allows one process per data directory and the data bridge
owns it, so this process has no store. The history routes then answer 503 with that reason, and
readiness stays green: it is a stated limit of the configuration, not a failure of the service.
"""

from __future__ import annotations

from aitrading.common.auth import TokenService
from aitrading.common.service import Check, Service
from aitrading.dbservice.api import history_router
from aitrading.storage.ticks import TickStore

__all__ = ["DatabaseService"]


class DatabaseService(Service):
    """Database service: market-data history API, with readiness over its dependencies."""

    name = "dbservice"
    capabilities = (
        "GET /api/v1/symbols: stored tick series with tick counts",
        "GET /api/v1/ticks: ticks of any range, exact decimal prices, keyset pagination",
        "GET /api/v1/bars: M1..D1 bars of any range, stored or built from ticks (auto merges both)",
    )

    def __init__(
        self, checks: dict[str, Check] | None = None, *, store: TickStore | None, tokens: TokenService
    ) -> None:
        super().__init__(checks)
        self.store = store
        self.add_router(history_router(store, tokens))
