"""Builds each service of the map from a kernel's resources (the only place that knows them all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aitrading.common.service import Check, Service

if TYPE_CHECKING:
    from aitrading.kernel import Kernel

__all__ = ["build"]


def build(name: str, kernel: Kernel) -> Service:
    """Return the service `name` wired to `kernel`'s resources and readiness checks.

    Every service reports to the central hub over the process's bus: heartbeats and error events.
    """
    service = _build(name, kernel)
    if kernel.bus is not None:
        from aitrading.common.tls import service_url

        cfg = kernel.config
        service.report_to_hub(
            kernel.bus,
            kernel.clock,
            endpoint=service_url(cfg, name),
            interval_s=cfg.hub.heartbeat_interval_s,
        )
    return service


def _build(name: str, kernel: Kernel) -> Service:
    checks = kernel.checks_for(name)
    if name == "gateway":
        return _gateway(kernel)
    if name == "bridge":
        return _bridge(kernel, checks)
    if name == "engine":
        return _engine(kernel, checks)
    if name == "dbservice":
        from aitrading.dbservice.service import DatabaseService

        return DatabaseService(checks, store=kernel.ticks, tokens=kernel.tokens)
    if name == "hub":
        from aitrading.hub.service import HubService

        assert kernel.bus is not None, "the hub needs the bus (topology.RESOURCES)"
        return HubService(
            checks,
            bus=kernel.bus,
            clock=kernel.clock,
            tokens=kernel.tokens,
            expected=kernel.config.services.enabled,
            config=kernel.config.hub,
        )
    if name == "features":
        return _features(kernel, checks)
    if name == "config":
        from aitrading.config_service.service import ConfigService

        return ConfigService(checks, db=kernel.db, clock=kernel.clock, tokens=kernel.tokens, bus=kernel.bus)
    if name == "ml":
        from aitrading.common.auth import principal_dependency
        from aitrading.ml.service import MLService

        return MLService(
            checks,
            registry_dir=kernel.config.storage.data_dir / "models",
            authenticate=principal_dependency(kernel.tokens),
        )
    if name == "decision":
        return _decision(kernel, checks)
    if name == "notify":
        from aitrading.notify.service import NotifyService

        return NotifyService(checks)
    if name == "lstm":
        from aitrading.common.auth import principal_dependency
        from aitrading.ml.lstm_service import LSTMService

        return LSTMService(
            checks,
            registry_dir=kernel.config.storage.data_dir / "models",
            authenticate=principal_dependency(kernel.tokens),
        )
    raise ValueError(f"unknown service {name!r}")


def _gateway(kernel: Kernel) -> Service:
    """The gateway over every enabled service: in process where this kernel runs it, else over HTTP.

    Users and programs authenticate with identity (access tokens, API keys); the platform's service tokens
    keep working for service-to-service calls and the CLI. Identity's routes (login, refresh, MFA, JWKS,
    users and keys) are mounted on the gateway, and identity starts and stops with it.
    """
    from aitrading.common.tls import httpx_verify, service_url
    from aitrading.gateway.config import GatewayConfig
    from aitrading.gateway.credentials import GatewayAuthenticator
    from aitrading.gateway.identity import IdentityConfig, IdentityService, build_router
    from aitrading.gateway.service import GatewayService
    from aitrading.storage.audit import AuditLog

    cfg = kernel.config
    assert kernel.db is not None, "identity needs the database (topology.RESOURCES)"
    assert kernel.cache is not None, "identity needs the cache (topology.RESOURCES)"
    names = [s for s in cfg.services.enabled if s != "gateway"]
    gateway = GatewayConfig()
    if not gateway.rate_limit.storage_url and cfg.storage.cache == "redis":
        # Split mode: every gateway process counts in the same Redis.
        rate_limit = gateway.rate_limit.model_copy(update={"storage_url": cfg.storage.redis_url})
        gateway = gateway.model_copy(update={"rate_limit": rate_limit})
    # One AuditLog for the gateway's and identity's events: it serialises its writers of a tenant's chain
    # in process, which two instances would not (on SQLite the second append then fails).
    audit = AuditLog(kernel.db, kernel.clock)
    identity = IdentityService(
        kernel.db, kernel.cache, kernel.clock, IdentityConfig.from_platform(cfg), audit_log=audit
    )
    return GatewayService(
        {s: service_url(cfg, s) for s in names},
        in_process={s: kernel.services[s].app for s in names if s in kernel.services},
        tokens=kernel.tokens,
        authenticate=GatewayAuthenticator(identity.authenticator, kernel.tokens, identity.ctx.audit),
        clock=kernel.clock,
        config=gateway,
        audit=audit,
        extra_routers=[build_router(identity)],
        components=[identity],
        verify=httpx_verify(cfg, "gateway"),
    )


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


def _engine(kernel: Kernel, checks: dict[str, Check]) -> Service:
    from aitrading.common.auth import principal_dependency
    from aitrading.engine.service import EngineService
    from aitrading.mt5.specs import DEFAULT_SPECS

    assert kernel.bus is not None
    return EngineService(
        checks,
        bus=kernel.bus,
        db=kernel.db,
        clock=kernel.clock,
        tokens=kernel.tokens,
        authenticate=principal_dependency(kernel.tokens),
        specs=DEFAULT_SPECS,  # the simulated broker's symbols; real terminals' specs: see README (planned)
    )


def _features(kernel: Kernel, checks: dict[str, Check]) -> Service:
    """The features service, warming its engines from stored bars (`aitrading.features.history`).

    In process with the data bridge (all-in-one) it reads the tick store the bridge writes; on its own
    (split) it asks the database service's history API with a service token, over TLS when enabled.
    """
    from aitrading.common.auth import principal_dependency
    from aitrading.features.history import BarHistory, HttpBarHistory, StoreBarHistory
    from aitrading.features.service import FeaturesService

    assert kernel.bus is not None, "features need the bus (topology.RESOURCES)"
    history: BarHistory = (
        StoreBarHistory(kernel.ticks)
        if kernel.ticks is not None
        else HttpBarHistory.for_platform(kernel.config, kernel.tokens)
    )
    return FeaturesService(
        checks,
        bus=kernel.bus,
        cache=kernel.cache,
        clock=kernel.clock,
        authenticate=principal_dependency(kernel.tokens),
        config=kernel.config.features,
        history=history,
    )


def _decision(kernel: Kernel, checks: dict[str, Check]) -> Service:
    """The decision engine, sending its orders to the trading engine's risk check.

    With the trading engine in this process (all-in-one) it calls the engine directly and reads its books.
    Without it (split mode) it sends them over the engine's HTTP API with a service token for the
    configured tenant (`EngineClient`, TLS per config). When it trades, the defaults of its orders are the
    tenant's `trading` config, read through the config service's client (cached, invalidated by
    `cfg.changed.<tenant>`), the platform defaults if the config service cannot answer. Without a tenant,
    account and strategies it runs its shell and its status says why.
    """
    from aitrading.common.auth import principal_dependency
    from aitrading.config_service.client import ConfigClient
    from aitrading.decision.defaults import ConfiguredOrderDefaults
    from aitrading.decision.engine_client import EngineClient
    from aitrading.decision.service import DecisionService
    from aitrading.engine.service import EngineService
    from aitrading.model.positions import Position

    settings = kernel.config.decision
    authenticate = principal_dependency(kernel.tokens)
    trades = bool(settings.tenant and settings.account and settings.strategies)
    if kernel.bus is None or not trades:
        return DecisionService(checks, authenticate=authenticate, settings=settings)
    # It trades: the pipeline owns the config client and, in split mode, the engine client.
    config_client = ConfigClient.for_platform(
        kernel.config, kernel.tokens, kernel.bus, kernel.clock, identity="decision"
    )
    defaults = ConfiguredOrderDefaults(config_client, kernel.clock)
    engine_service = kernel.services.get("engine")
    if not isinstance(engine_service, EngineService):  # split: the engine runs in another process
        client = EngineClient.for_platform(
            kernel.config,
            kernel.tokens,
            kernel.clock,
            tenant=settings.tenant,
            account=settings.account,
        )
        return DecisionService(
            checks,
            bus=kernel.bus,
            clock=kernel.clock,
            settings=settings,
            defaults=defaults,
            authenticate=authenticate,
            engine_client=client,
        )
    engine = engine_service.engine

    def positions(symbol: str) -> list[Position]:
        book = engine.book(settings.tenant, settings.account)
        return [] if book is None else [p for p in book.positions.values() if p.symbol == symbol]

    return DecisionService(
        checks,
        bus=kernel.bus,
        clock=kernel.clock,
        submit=engine.submit,
        positions=positions,
        settings=settings,
        defaults=defaults,
        authenticate=authenticate,
    )
