"""`ConfigClient`: how other services read effective config, cached and invalidated by the bus.

The client asks the config service over HTTP (`GET /api/v1/effective`) with a short-lived service token for
the tenant, and caches the answer per (tenant, user). It subscribes to `cfg.changed.>`: a tenant's
announcement drops that tenant's entries, a global one drops them all. Entries also expire after `ttl_s`,
which bounds staleness should an announcement be lost (a bus outage). A fetch that was in flight while an
announcement arrived is returned to its caller but not cached, so a change is never hidden behind a value
read just before it.

    client = ConfigClient.for_platform(cfg, tokens, bus, clock, identity="engine")
    await client.start()
    risk = await client.namespace(tenant_id, "risk")   # a RiskConfig
    ...
    await client.stop()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from aitrading.common.auth import TokenService
from aitrading.common.bus import Bus, Message, Subscription
from aitrading.common.clock import NS_PER_S, Clock
from aitrading.common.config import PlatformConfig
from aitrading.common.errors import BadInputError, NotFoundError, PermissionDeniedError, TemporaryError
from aitrading.common.tls import httpx_verify, service_url
from aitrading.config_service.messages import CHANGED_ALL, ConfigChanged
from aitrading.config_service.namespaces import namespace as namespace_of

__all__ = ["ConfigClient", "EffectiveConfig"]

TokenProvider = Callable[[str | None], str]
"""Returns a bearer token for reading the given tenant's config (None: global only)."""


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    """The effective config of one user in one tenant: values, where each came from, scope versions."""

    tenant: str | None
    user: str | None
    namespaces: dict[str, dict[str, Any]]

    def values(self, name: str) -> dict[str, Any]:
        """Return the effective values of namespace `name` (JSON-ready)."""
        return dict(self.namespaces[name]["values"])

    def sources(self, name: str) -> dict[str, str]:
        """Return, per field of `name`, the scope its value came from (or `default`)."""
        return dict(self.namespaces[name]["sources"])

    def model(self, name: str) -> BaseModel:
        """Return namespace `name` as its typed model (e.g. `RiskConfig`)."""
        return namespace_of(name).model.model_validate(self.namespaces[name]["values"])


def service_token_provider(tokens: TokenService, subject: str, ttl_s: int = 60) -> TokenProvider:
    """Tokens that read a tenant's effective config, any user's (tenant_admin of that tenant only)."""

    def provide(tenant: str | None) -> str:
        roles = ("tenant_admin",) if tenant is not None else ()
        return tokens.issue(subject, tenant=tenant, roles=roles, ttl_s=ttl_s)

    return provide


class ConfigClient:
    """Cached reads of effective config; call `start` to follow change announcements."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: TokenProvider,
        clock: Clock,
        *,
        bus: Bus | None = None,
        ttl_s: float = 60.0,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._http = http
        self._token = token
        self._clock = clock
        self._bus = bus
        self._ttl_ns = int(ttl_s * NS_PER_S)
        self._cache: dict[tuple[str | None, str | None], tuple[int, EffectiveConfig]] = {}
        self._generation: dict[str | None, int] = {}  # per tenant; None counts global changes
        self._locks: dict[tuple[str | None, str | None], asyncio.Lock] = {}
        self._sub: Subscription | None = None
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    @classmethod
    def for_platform(
        cls,
        config: PlatformConfig,
        tokens: TokenService,
        bus: Bus | None,
        clock: Clock,
        *,
        identity: str,
        ttl_s: float = 60.0,
    ) -> ConfigClient:
        """Build a client of the platform's config service (TLS per config), acting as service `identity`."""
        http = httpx.AsyncClient(
            base_url=service_url(config, "config"), verify=httpx_verify(config, identity), timeout=5.0
        )
        return cls(http, service_token_provider(tokens, f"svc:{identity}"), clock, bus=bus, ttl_s=ttl_s)

    async def start(self) -> None:
        """Follow `cfg.changed.>` announcements (no-op without a bus)."""
        if self._bus is not None and self._sub is None:
            self._sub = await self._bus.subscribe(CHANGED_ALL, self._on_changed)

    async def stop(self) -> None:
        """Stop following announcements and close the HTTP client."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        await self._http.aclose()

    def invalidate(self, tenant: str | None = None) -> None:
        """Drop the cached config of `tenant`, or of everyone for None (a global change)."""
        self.invalidations += 1
        self._generation[tenant] = self._generation.get(tenant, 0) + 1
        if tenant is None:
            self._cache.clear()
        else:
            for key in [k for k in self._cache if k[0] == tenant]:
                del self._cache[key]

    async def _on_changed(self, _subject: str, msg: Message) -> None:
        if isinstance(msg, ConfigChanged):
            self.invalidate(msg.tenant)

    def _stamp(self, tenant: str | None) -> tuple[int, int]:
        return self._generation.get(None, 0), self._generation.get(tenant, 0)

    async def effective(self, tenant: str | None, user: str | None = None) -> EffectiveConfig:
        """Return the effective config of `user` (None: the tenant's own) in `tenant` (None: global only)."""
        key = (tenant, user)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock.now_ns():
            self.hits += 1
            return cached[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > self._clock.now_ns():
                self.hits += 1
                return cached[1]
            self.misses += 1
            stamp = self._stamp(tenant)
            value = await self._fetch(tenant, user)
            if self._stamp(tenant) == stamp:  # no announcement arrived meanwhile
                self._cache[key] = (self._clock.now_ns() + self._ttl_ns, value)
            return value

    async def namespace(self, tenant: str | None, name: str, user: str | None = None) -> BaseModel:
        """Return namespace `name` of the effective config as its typed model."""
        namespace_of(name)
        return (await self.effective(tenant, user)).model(name)

    async def _fetch(self, tenant: str | None, user: str | None) -> EffectiveConfig:
        params = {k: v for k, v in (("user", user),) if v is not None}
        headers = {"Authorization": f"Bearer {self._token(tenant)}"}
        try:
            resp = await self._http.get("/api/v1/effective", params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"config service unreachable: {exc!r}") from exc
        if resp.status_code >= 500:
            raise TemporaryError(f"config service answered {resp.status_code}")
        if resp.status_code != 200:
            detail = _detail(resp)
            if resp.status_code in (401, 403):
                raise PermissionDeniedError(f"config service refused: {detail}")
            if resp.status_code == 404:
                raise NotFoundError(detail)
            raise BadInputError(f"config service answered {resp.status_code}: {detail}")
        body = resp.json()
        return EffectiveConfig(tenant=body["tenant"], user=user, namespaces=body["namespaces"])


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:300]
    except ValueError:
        return resp.text[:300]
