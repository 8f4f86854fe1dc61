"""The gateway's settings: upstream resilience, bulkheads, rate limits per tier, CORS and security headers.

Every value has a working default, so `GatewayConfig()` is the development gateway. Limits use the
`limits` notation (`"20/second"`, several separated by `;`: `"20/second;600/minute"`), checked at load.
"""

from __future__ import annotations

from typing import Literal

from limits import parse_many
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BreakerConfig",
    "BulkheadConfig",
    "GatewayConfig",
    "RateLimitConfig",
    "RetryConfig",
    "TierLimits",
    "default_tiers",
]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryConfig(_Section):
    """Retries of idempotent calls (GET/HEAD/OPTIONS, or with `Idempotency-Key`): backoff with jitter."""

    attempts: int = Field(default=3, ge=1, le=10)
    """Attempts in all, the first included; 1 turns retries off."""
    initial_s: float = Field(default=0.05, gt=0)
    max_s: float = Field(default=1.0, gt=0)
    jitter_s: float = Field(default=0.05, ge=0)


class BreakerConfig(_Section):
    """The circuit breaker of each upstream."""

    failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failures (unreachable, timeout, 500/502/503/504) that open the breaker."""
    reset_timeout_s: float = Field(default=10.0, gt=0)
    """How long an open breaker refuses calls before it lets a trial call through (half-open)."""
    half_open_max_calls: int = Field(default=1, ge=1)
    """Trial calls allowed at once while half-open."""


class BulkheadConfig(_Section):
    """Separate concurrency limits so trading and analytics traffic cannot starve each other."""

    trading_upstreams: tuple[str, ...] = ("engine",)
    trading_max_in_flight: int = Field(default=64, ge=1)
    analytics_max_in_flight: int = Field(default=128, ge=1)


class TierLimits(_Section):
    """The request rates of one subscription tier."""

    per_principal: str
    """Per user or API key (the principal's subject)."""
    per_tenant: str
    """Per tenant, all its users and keys together."""

    @field_validator("per_principal", "per_tenant")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit such as '20/second;600/minute': {exc}") from None
        if not items:
            raise ValueError("a rate limit needs at least one item, e.g. '20/second'")
        return value


def default_tiers() -> dict[str, TierLimits]:
    """Return the default limits of each tier, from the platform's tier table (`identity.tiers`).

    A tenant gets its tier's `requests_per_minute`; one user or key of it half of that (at least 60), so
    a single runaway script cannot use up its whole tenant's quota.
    """
    from aitrading.gateway.identity.tiers import TIERS

    return {
        name: TierLimits(
            per_principal=f"{max(60, q.requests_per_minute // 2)}/minute",
            per_tenant=f"{q.requests_per_minute}/minute",
        )
        for name, q in TIERS.items()
    }


class RateLimitConfig(_Section):
    """Rate limits per tenant and per principal, by the tenant's tier."""

    enabled: bool = True
    strategy: Literal["fixed-window", "moving-window", "sliding-window-counter"] = "fixed-window"
    storage_url: str = ""
    """`memory://`, `redis://host:port/db`; empty: memory, or `storage.redis_url` when `storage.cache` is
    redis (split mode), so all gateway processes share the counters."""
    tiers: dict[str, TierLimits] = Field(default_factory=default_tiers)
    default_tier: str = "free"
    """The tier of a principal whose token names none, or names one missing from `tiers`."""

    @model_validator(mode="after")
    def _default_tier_exists(self) -> RateLimitConfig:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not in tiers ({', '.join(self.tiers)})")
        return self


class GatewayConfig(_Section):
    """Everything the gateway's edge can be tuned by."""

    timeout_s: float = Field(default=5.0, gt=0)
    """Per-attempt timeout of an upstream call (connect + response headers)."""
    timeouts_s: dict[str, float] = Field(default_factory=lambda: {"ml": 30.0})
    """Per-upstream overrides of `timeout_s` (training and backtests answer slower)."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    bulkhead: BulkheadConfig = Field(default_factory=BulkheadConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    max_body_bytes: int = Field(default=1_048_576, ge=0)
    """Larger request bodies are refused with 413 (bodies are buffered so idempotent calls can retry)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed by CORS; none by default (the dashboard is same-origin)."""
    hsts: Literal["auto", "always", "never"] = "auto"
    """`auto`: send HSTS on requests that arrived over TLS; `always`: behind a TLS-terminating proxy."""
    auth_cache_ttl_s: float = Field(default=1.0, ge=0)
    """How long a verified credential is trusted without asking the authenticator again (JWTs: never
    past `exp`); 0 asks on every request. A logout or revocation takes effect at the gateway within it."""
    upstream_token_ttl_s: int = Field(default=60, ge=10, le=3600)
    """Life of the internal service token the gateway mints per principal for upstream calls."""
    audit_queue_size: int = Field(default=10_000, ge=1)
    """Security events waiting for the audit log; beyond it new ones are dropped and counted."""
    audit_rate_limited_every_s: float = Field(default=60.0, ge=0)
    """Audit a principal's rate-limited requests at most once per this many seconds (floods)."""
