"""API gateway service (port 8000): the platform's front door.

- `/api/v1/<service>/<rest>` goes to that service's `/api/v1/<rest>` (see `proxy`): authenticated,
  rate-limited, checked against the route table, through a bulkhead and a circuit breaker per upstream.
  In all-in-one the services are called in process; in split mode over HTTP.
- `/api/v1/gateway/upstreams` shows breakers and bulkheads; `/metrics` exports them too.
- `/health/ready` aggregates the readiness of every service the platform started (over HTTP, the same in
  all-in-one and split), so one URL tells whether the platform works.
- Identity's routes (login, refresh, MFA, JWKS, users, keys) are mounted through `extra_routers` and
  identity starts with the gateway (`components`). Without authentication: health, metrics, version, the
  OpenAPI docs, login/refresh/logout (they carry their own credential) and the JWKS.

Design and figures: docs/adr/0011-gateway.md.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from aitrading.common.auth import TokenService
from aitrading.common.clock import Clock, LiveClock
from aitrading.common.lifecycle import Component
from aitrading.common.service import Service, make_app
from aitrading.gateway.api import ProxyRoute, gateway_router
from aitrading.gateway.audit import AuditSink, SecurityAuditor
from aitrading.gateway.authcache import CachedAuthenticator
from aitrading.gateway.breaker import Breaker, Bulkhead
from aitrading.gateway.config import GatewayConfig
from aitrading.gateway.middleware import EdgeMiddleware
from aitrading.gateway.policy import DEFAULT_POLICY, Policy
from aitrading.gateway.proxy import Authenticate, Proxy
from aitrading.gateway.ratelimit import TenantRateLimiter
from aitrading.gateway.upstream import (
    ASGIApp,
    HttpTransport,
    InProcessTransport,
    Transport,
    Upstream,
    UpstreamTokens,
)

__all__ = ["PROXY_METHODS", "GatewayService"]

PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _unique_operation_ids(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Return `app.openapi` giving each method of a proxy route its own operation id.

    FastAPI names all methods of one route alike; the proxy has one route per upstream for every method
    (one regex to match instead of six), so the ids are made unique here.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Duplicate Operation ID proxy", category=UserWarning
                )
                schema = build()
            for path, operations in schema.get("paths", {}).items():
                if path.endswith("/{path}"):
                    for method, operation in operations.items():
                        operation["operationId"] = f"proxy_{path.split('/')[3]}_{method}"
        return app.openapi_schema or build()

    return openapi


class GatewayService(Service):
    """The gateway: the proxy with its checks, aggregated readiness, and identity's routes."""

    name = "gateway"
    capabilities = (
        "aggregated readiness of every started service at /health/ready",
        "/api/v1/<service>/<path> proxied to the service: auth, rate limits per tenant and tier, RBAC "
        "with MFA step-up, timeouts, retries of idempotent calls, circuit breakers, bulkheads",
        "GET /api/v1/gateway/upstreams: breaker and bulkhead state of each service",
    )

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        tokens: TokenService,
        authenticate: Authenticate,
        in_process: Mapping[str, ASGIApp] | None = None,
        clock: Clock | None = None,
        config: GatewayConfig | None = None,
        policy: Policy = DEFAULT_POLICY,
        audit: AuditSink | None = None,
        limiter: TenantRateLimiter | None = None,
        extra_routers: Sequence[APIRouter] = (),
        components: Sequence[Component] = (),
        readiness_timeout_s: float = 2.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        """Front `upstreams` (name → base URL); call those in `in_process` (name → ASGI app) directly.

        `verify` is httpx's: the TLS context that checks the services' certificates (and presents the
        gateway's client certificate under mTLS) when they serve HTTPS. `components` (identity) start
        with the gateway, in order, and stop after it in reverse order.
        """
        super().__init__()
        self.components = tuple(components)
        self.config = cfg = config or GatewayConfig()
        self.clock = clock or LiveClock()
        self._urls = dict(upstreams)
        self._readiness_timeout = readiness_timeout_s
        self._verify = verify
        self._client: httpx.AsyncClient | None = None
        self.last_report: dict[str, Any] = {}
        self.limiter = limiter or TenantRateLimiter(cfg.rate_limit)
        self.auditor = SecurityAuditor(
            audit,
            self.clock,
            max_queue=cfg.audit_queue_size,
            rate_limited_every_s=cfg.audit_rate_limited_every_s,
        )
        pools = {
            "trading": Bulkhead("trading", cfg.bulkhead.trading_max_in_flight),
            "analytics": Bulkhead("analytics", cfg.bulkhead.analytics_max_in_flight),
        }
        apps = dict(in_process or {})
        built: dict[str, Upstream] = {}
        for name, url in self._urls.items():
            pool = pools["trading" if name in cfg.bulkhead.trading_upstreams else "analytics"]
            transport: Transport = (
                InProcessTransport(name, apps[name])
                if name in apps
                else HttpTransport(url, max_connections=pool.max_in_flight, verify=verify)
            )
            built[name] = Upstream(
                name=name,
                transport=transport,
                breaker=Breaker(
                    name,
                    self.clock,
                    failure_threshold=cfg.breaker.failure_threshold,
                    reset_timeout_s=cfg.breaker.reset_timeout_s,
                    half_open_max_calls=cfg.breaker.half_open_max_calls,
                ),
                bulkhead=pool,
                timeout_s=cfg.timeouts_s.get(name, cfg.timeout_s),
            )
        authenticate = CachedAuthenticator(authenticate, self.clock, ttl_s=cfg.auth_cache_ttl_s)
        self.proxy = Proxy(
            built,
            authenticate=authenticate,
            policy=policy,
            limiter=self.limiter,
            tokens=UpstreamTokens(tokens, self.clock, ttl_s=cfg.upstream_token_ttl_s),
            auditor=self.auditor,
            retry=cfg.retry,
            max_body_bytes=cfg.max_body_bytes,
            clock=self.clock,
        )
        self.add_router(gateway_router(authenticate, policy, self.upstream_snapshot))
        for router in extra_routers:
            self.add_router(router)

    @property
    def upstreams(self) -> dict[str, Upstream]:
        return self.proxy.upstreams

    def upstream_snapshot(self) -> dict[str, dict[str, Any]]:
        """Return each upstream's transport, breaker and bulkhead state."""
        return {name: u.snapshot() for name, u in self.proxy.upstreams.items()}

    @property
    def app(self) -> FastAPI:
        """The gateway's ASGI app: the service shell, the gateway's routes, the proxy, the edge middleware."""
        if self._app is None:
            app = make_app(self)
            handlers = {name: self.proxy.asgi(name) for name in self.proxy.upstreams}
            for name, handler in handlers.items():
                app.router.routes.append(ProxyRoute(name, handler, PROXY_METHODS))
            shortcuts: dict[str, ASGIApp] = dict(handlers)
            if self.config.cors_origins:
                cors: dict[str, Any] = {
                    "allow_origins": list(self.config.cors_origins),
                    "allow_methods": PROXY_METHODS,
                    "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
                    "expose_headers": [
                        "X-Request-ID",
                        "Retry-After",
                        "RateLimit-Limit",
                        "RateLimit-Remaining",
                        "RateLimit-Reset",
                    ],
                    "max_age": 600,
                }
                app.add_middleware(CORSMiddleware, **cors)
                # The edge's shortcut to the proxy skips the app's middleware, so CORS goes with it.
                shortcuts = {n: CORSMiddleware(h, **cors) for n, h in handlers.items()}
            app.add_middleware(EdgeMiddleware, hsts=self.config.hsts, shortcuts=shortcuts)
            app.openapi = _unique_operation_ids(app)  # type: ignore[method-assign]
            self._app = app
        return self._app

    async def _on_start(self) -> None:
        for component in self.components:
            await component.start()
        self._client = httpx.AsyncClient(
            timeout=self._readiness_timeout, trust_env=False, verify=self._verify
        )
        self.auditor.start()

    async def _on_stop(self) -> None:
        await self.auditor.stop()
        for upstream in self.proxy.upstreams.values():
            await upstream.transport.close()
        await self.limiter.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        for component in reversed(self.components):
            await component.stop()

    async def upstream_readiness(self) -> dict[str, Any]:
        """Ask every upstream's `/health/ready`; return {service: {ready, status, detail}}."""
        client = self._client or httpx.AsyncClient(
            timeout=self._readiness_timeout, trust_env=False, verify=self._verify
        )

        async def one(name: str, url: str) -> tuple[str, dict[str, Any]]:
            try:
                resp = await client.get(f"{url}/health/ready")
                body = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                return name, {"ready": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
            return name, {"ready": resp.status_code == 200, **body}

        results = await asyncio.gather(*(one(n, u) for n, u in self._urls.items()))
        if client is not self._client:
            await client.aclose()
        return dict(results)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        ok, detail = await super().readiness()
        services = await self.upstream_readiness()
        detail["services"] = services
        self.last_report = services
        return ok and all(s["ready"] for s in services.values()), detail
