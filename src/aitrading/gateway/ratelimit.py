"""Rate limits per principal (user or API key) and per tenant, by the tenant's tier, with `limits`.

Counters live in memory (one gateway process) or in Redis (split mode: every gateway process shares
them). Each request is counted against its principal's limits first, then its tenant's; the first limit
exhausted refuses it. Responses carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
(draft-ietf-httpapi-ratelimit-headers; Reset is delta-seconds) of the principal's first (shortest) limit, or
of the limit that refused; a refusal adds `Retry-After`.

A failing counter store fails open: trading must not stop because the rate-limit cache is down. The
failure is logged and counted (`aitrading_gateway_ratelimit_errors_total`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from aitrading.common import metrics
from aitrading.common.auth import Principal
from aitrading.gateway.config import RateLimitConfig

__all__ = ["Closer", "RateDecision", "TenantRateLimiter", "make_storage"]

_log = structlog.get_logger("gateway.ratelimit")

_STRATEGIES: dict[str, type[RateLimiter]] = {
    "fixed-window": FixedWindowRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}
_LIMITED = metrics.counter("gateway_rate_limited", "Requests refused by a rate limit", ("scope",))
_MAX_KEYS = 100_000
_ERRORS = metrics.counter("gateway_ratelimit_errors", "Rate-limit store failures (requests let through)")


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may pass, and the figures of the limit reported in its headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    scope: str = ""
    """`principal` or `tenant`: which limit refused (empty when allowed)."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Return the IETF draft headers, plus `Retry-After` on a refusal."""
        out = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_s).encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(max(1, self.reset_s)).encode()))
        return out


Closer = Callable[[], Awaitable[None]]


def make_storage(url: str) -> tuple[Storage, Closer | None]:
    """Return the counter store for `url` (`memory://` or empty, `redis://host:port/db`) and its closer."""
    if not url or url.startswith("memory://"):
        return MemoryStorage(), None
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"rate-limit storage must be memory:// or redis://, got {url!r}")
    import redis.asyncio

    # The pool is ours, so stopping the gateway closes its connections (the store has no close of its own).
    pool = redis.asyncio.ConnectionPool.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    store = RedisStorage(
        "async+" + url,
        implementation="redispy",
        key_prefix="aitrading-rl",
        wrap_exceptions=True,
        connection_pool=pool,  # type: ignore[arg-type]  # passed through to redis.asyncio.Redis
    )
    return store, pool.disconnect


class TenantRateLimiter:
    """Counts requests per principal and per tenant against the limits of the tenant's tier."""

    def __init__(self, config: RateLimitConfig, storage: Storage | None = None) -> None:
        self.config = config
        self._close: Closer | None = None
        if storage is None:
            storage, self._close = make_storage(config.storage_url)
        self.storage = storage
        self._limiter = _STRATEGIES[config.strategy](self.storage)
        self._tiers: dict[str, tuple[list[RateLimitItem], list[RateLimitItem]]] = {
            name: (parse_many(t.per_principal), parse_many(t.per_tenant)) for name, t in config.tiers.items()
        }
        self._default = self._tiers[config.default_tier]
        self._fixed = config.strategy == "fixed-window"
        # Keys by (id of an item held in `_tiers`, scope, identifier); window ends by key (fixed window).
        self._keys: dict[tuple[int, str, str], str] = {}
        self._ends: dict[str, float] = {}

    def tier_of(self, principal: Principal) -> str:
        """Return the tier whose limits apply to `principal`."""
        tier = principal.tier
        return tier if tier is not None and tier in self._tiers else self.config.default_tier

    async def check(self, principal: Principal) -> RateDecision | None:
        """Count one request of `principal`; None when limits are off or the store failed (fail open)."""
        if not self.config.enabled:
            return None
        tier = principal.tier
        per_principal, per_tenant = self._tiers.get(tier, self._default) if tier else self._default
        try:
            if self._fixed:
                return await self._check_fixed(principal, per_principal, per_tenant)
            limiter = self._limiter
            subject = principal.subject
            for item in per_principal:
                if not await limiter.hit(item, "p", subject):
                    return await self._refused(item, ("p", subject), "principal")
            tenant = principal.tenant
            if tenant is not None:
                for item in per_tenant:
                    if not await limiter.hit(item, "t", tenant):
                        return await self._refused(item, ("t", tenant), "tenant")
            first = per_principal[0]
            stats = await limiter.get_window_stats(first, "p", subject)
        except Exception as exc:  # any store failure: let the request through, say so once per failure
            _ERRORS.inc()
            _log.warning("ratelimit_store_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return None
        return RateDecision(True, first.amount, max(0, stats.remaining), _reset_s(stats.reset_time))

    async def _check_fixed(
        self, principal: Principal, per_principal: list[RateLimitItem], per_tenant: list[RateLimitItem]
    ) -> RateDecision:
        """Fixed window, as `FixedWindowRateLimiter.hit` counts, minus the work it repeats per request.

        The strategy builds each key afresh and the headers took two more store calls (count, expiry); here
        keys are cached, the count is the one the increment returned, and a window's end is remembered
        until it passes (a window's end never moves; in Redis this saves two round trips per request).
        """
        storage = self.storage
        subject = principal.subject
        first_count = 0
        for item in per_principal:
            key = self._key(item, "p", subject)
            count = await storage.incr(key, item.get_expiry(), amount=1)
            if count == 1:
                self._ends[key] = time.time() + item.get_expiry()
            if count > item.amount:
                return await self._refused(item, ("p", subject), "principal")
            if not first_count:
                first_count = count
        tenant = principal.tenant
        if tenant is not None:
            for item in per_tenant:
                if (
                    await storage.incr(self._key(item, "t", tenant), item.get_expiry(), amount=1)
                    > item.amount
                ):
                    return await self._refused(item, ("t", tenant), "tenant")
        first = per_principal[0]
        key = self._key(first, "p", subject)
        end = self._ends.get(key, 0.0)
        if end <= time.time():
            end = self._ends[key] = await storage.get_expiry(key)
        return RateDecision(True, first.amount, max(0, first.amount - first_count), _reset_s(end))

    def _key(self, item: RateLimitItem, scope: str, identifier: str) -> str:
        cache = self._keys
        found = cache.get((id(item), scope, identifier))
        if found is None:
            if len(cache) >= _MAX_KEYS:
                cache.clear()  # simplest bound; each key is rebuilt on its next use
                self._ends.clear()
            found = cache[(id(item), scope, identifier)] = item.key_for(scope, identifier)
        return found

    async def _refused(self, item: RateLimitItem, key: tuple[str, str], scope: str) -> RateDecision:
        _LIMITED.labels(scope).inc()
        stats = await self._limiter.get_window_stats(item, *key)
        return RateDecision(False, item.amount, 0, max(1, _reset_s(stats.reset_time)), scope)

    async def close(self) -> None:
        """Release the store's connections (Redis)."""
        if self._close is not None:
            await self._close()
            self._close = None


def _reset_s(reset_time: float) -> int:
    # `limits` keeps window ends as Unix time, so the delta is taken against the same wall clock.
    return max(0, math.ceil(reset_time - time.time()))
