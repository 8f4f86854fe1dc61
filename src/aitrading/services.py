"""Builds each service of the map from a kernel's resources (the only place that knows them all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aitrading.common.service import Check, Service

if TYPE_CHECKING:
    from aitrading.kernel import Kernel

__all__ = ["build"]


def build(name: str, kernel: Kernel) -> Service:
    """Return the service `name` wired to `kernel`'s resources and readiness checks."""
    checks = kernel.checks_for(name)
    cfg = kernel.config
    if name == "gateway":
        from aitrading.gateway.service import GatewayService

        upstreams = {s: cfg.services.url(s) for s in cfg.services.enabled if s != "gateway"}
        return GatewayService(upstreams)
    if name == "bridge":
        return _bridge(kernel, checks)
    if name == "engine":
        from aitrading.engine.service import EngineService

        return EngineService(checks)
    if name == "dbservice":
        from aitrading.dbservice.service import DatabaseService

        return DatabaseService(checks, store=kernel.ticks, tokens=kernel.tokens)
    if name == "hub":
        from aitrading.hub.service import HubService

        return HubService(checks)
    if name == "features":
        from aitrading.features.service import FeaturesService

        return FeaturesService(checks)
    if name == "config":
        from aitrading.config_service.service import ConfigService

        return ConfigService(checks)
    if name == "ml":
        from aitrading.ml.service import MLService

        return MLService(checks)
    if name == "decision":
        from aitrading.decision.service import DecisionService

        return DecisionService(checks)
    if name == "notify":
        from aitrading.notify.service import NotifyService

        return NotifyService(checks)
    raise ValueError(f"unknown service {name!r}")


def _bridge(kernel: Kernel, checks: dict[str, Check]) -> Service:
    from aitrading.bridge.service import BridgeService
    from aitrading.storage.oltp import authenticate_device

    db = kernel.db

    async def authenticate(device_id: str, key: str) -> str | None:
        async with db.session() as session:
            device = await authenticate_device(session, device_id, key, now=kernel.clock.utcnow())
            await session.commit()
            return None if device is None else str(device.tenant_id)

    assert kernel.bus is not None
    return BridgeService(
        kernel.config.bridge,
        kernel.bus,
        kernel.ticks,
        kernel.clock,
        authenticate,
        cache=kernel.cache,
        checks=checks,
    )
