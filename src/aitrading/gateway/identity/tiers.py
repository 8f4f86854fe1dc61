"""Subscription tiers and their quotas: one typed table that the gateway, identity and engine read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Final

from aitrading.common.errors import BadInputError

__all__ = ["DEFAULT_TIER", "TIERS", "TierQuota", "quota_of"]


@dataclass(frozen=True, slots=True)
class TierQuota:
    """What a tenant of one tier may use."""

    name: str
    requests_per_minute: int
    """API requests per minute per tenant (the gateway's rate limiter)."""
    max_api_keys: int
    """Active (unrevoked, unexpired) API keys per tenant."""
    max_users: int
    max_trading_accounts: int
    max_strategies: int

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


TIERS: Final[dict[str, TierQuota]] = {
    t.name: t
    for t in (
        TierQuota(
            "free",
            requests_per_minute=60,
            max_api_keys=2,
            max_users=3,
            max_trading_accounts=1,
            max_strategies=2,
        ),
        TierQuota(
            "pro",
            requests_per_minute=600,
            max_api_keys=10,
            max_users=20,
            max_trading_accounts=5,
            max_strategies=20,
        ),
        TierQuota(
            "enterprise",
            requests_per_minute=6000,
            max_api_keys=100,
            max_users=500,
            max_trading_accounts=100,
            max_strategies=500,
        ),
    )
}
DEFAULT_TIER: Final = "free"


def quota_of(tier: str | None) -> TierQuota:
    """Return the quotas of `tier` (None: the default tier); an unknown tier is a `BadInputError`."""
    name = tier or DEFAULT_TIER
    try:
        return TIERS[name]
    except KeyError:
        raise BadInputError(f"unknown tier {name!r}; known: {', '.join(TIERS)}") from None
