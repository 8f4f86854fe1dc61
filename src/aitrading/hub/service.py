"""The central hub (port 8010): service registry, aggregated health, dependency graph, ErrorDNA.

It listens on the bus: `hub.heartbeat` (every service's `ServiceHeartbeat`, see the common service shell)
fills the registry, `hub.error` (`ErrorReport`s from every process's logging chain) feeds ErrorDNA. Both are
kept in memory: after a restart the registry refills within one heartbeat interval, and error counts
start again (see docs/adr/0012-hub-and-config.md). The routes are in `aitrading.hub.api`.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from aitrading.common.auth import TokenService
from aitrading.common.bus import Bus
from aitrading.common.bus.base import Subscription
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.common.config import SERVICE_NAMES, HubConfig
from aitrading.common.logging import ERROR_SUBJECT, ErrorReport
from aitrading.common.service import HEARTBEAT_SUBJECT, Check, Service, ServiceHeartbeat
from aitrading.hub.api import hub_router
from aitrading.hub.errordna import ErrorDNA
from aitrading.hub.registry import Registry

__all__ = ["HubService"]

_log = structlog.get_logger("hub")


class HubService(Service):
    """Central hub: registry of service instances, health, dependency graph and ErrorDNA."""

    name = "hub"
    capabilities = (
        "GET /api/v1/services: registry of service instances (endpoint, version, health, last seen)",
        "GET /api/v1/health: aggregated health, stale instances after missed heartbeats",
        "GET /api/v1/graph: declared dependency graph and start order (cycles reported)",
        "GET /api/v1/errors: ErrorDNA error groups with severity, recovery action and hints",
    )

    def __init__(
        self,
        checks: dict[str, Check] | None = None,
        *,
        bus: Bus,
        clock: Clock,
        tokens: TokenService,
        expected: Iterable[str] = SERVICE_NAMES,
        config: HubConfig | None = None,
    ) -> None:
        super().__init__(checks)
        cfg = config or HubConfig()
        self.bus = bus
        self.declared = tuple(expected)
        self.registry = Registry(
            clock,
            expected=self.declared,
            stale_after_beats=cfg.stale_after_beats,
            forget_after_s=cfg.forget_after_s,
        )
        self.errors = ErrorDNA(frames=cfg.error_frames, max_groups=cfg.max_error_groups)
        self.unreadable = 0
        self._subs: list[Subscription] = []
        self.add_router(hub_router(tokens, self.registry, self.errors, lambda: self.declared))

    async def _on_start(self) -> None:
        self._subs.append(await self.bus.subscribe(HEARTBEAT_SUBJECT, self._on_heartbeat))
        self._subs.append(await self.bus.subscribe(ERROR_SUBJECT, self._on_error))

    async def _on_stop(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.unsubscribe()

    # These handlers never raise: an error in the hub's own handling of an error report must not become
    # another error report (see the recursion guard in aitrading.common.logging).

    async def _on_heartbeat(self, _subject: str, msg: Message) -> None:
        if isinstance(msg, ServiceHeartbeat):
            self.registry.record(msg)
        else:
            self.unreadable += 1

    async def _on_error(self, _subject: str, msg: Message) -> None:
        if not isinstance(msg, ErrorReport):
            self.unreadable += 1
            return
        try:
            self.errors.record(msg)
        except Exception as exc:
            self.unreadable += 1
            _log.warning("error_report_unusable", error=repr(exc), service=msg.service)
