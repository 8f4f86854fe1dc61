"""The config service (port 8012): hierarchical config global → tenant → user, versioned and audited.

Namespaces and their schemas are in `aitrading.config_service.namespaces`, storage, versions, audit and
change announcements in `store`, the HTTP API and who may do what in `api`, and the cached reader other
services use in `client`.
"""

from __future__ import annotations

from aitrading.common.auth import TokenService
from aitrading.common.bus import Bus
from aitrading.common.clock import Clock
from aitrading.common.service import Check, Service
from aitrading.config_service.api import config_router
from aitrading.config_service.store import ConfigStore
from aitrading.storage.audit.chain import AuditLog
from aitrading.storage.oltp import Database

__all__ = ["ConfigService"]


class ConfigService(Service):
    """Config service: versioned, audited config overrides per scope, and the effective config."""

    name = "config"
    capabilities = (
        "GET /api/v1/effective: effective config, user over tenant over global over defaults",
        "GET|PUT|DELETE /api/v1/{scope}/{namespace}: versioned overrides, If-Match (409 on conflict)",
        "GET /api/v1/history: every change with who, when, old, new and diff; audited in hash chains",
        "cfg.changed.<tenant> / cfg.changed.global announcements on the bus",
    )

    def __init__(
        self,
        checks: dict[str, Check] | None = None,
        *,
        db: Database,
        clock: Clock,
        tokens: TokenService,
        bus: Bus | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        super().__init__(checks)
        self.store = ConfigStore(db, clock, bus=bus, audit=audit)
        self.add_router(config_router(tokens, self.store))

    async def _on_start(self) -> None:
        await self.store.start()
