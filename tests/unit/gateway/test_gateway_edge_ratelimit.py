"""Rate limits per principal and per tenant by tier: 429 with Retry-After, RateLimit-* on every answer."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_edge_helpers import SECRET, TENANT, FakeUpstream, bearer, client_of, make_gateway
from limits.aio.storage import MemoryStorage
from pydantic import ValidationError

from aitrading.common.auth import Principal, TokenService
from aitrading.gateway.config import GatewayConfig, RateLimitConfig, TierLimits, default_tiers
from aitrading.gateway.identity.tiers import TIERS
from aitrading.gateway.ratelimit import TenantRateLimiter

OTHER_TENANT = "0b9e3c55-2222-4f7e-8a11-fedcba987654"


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
def hub(tokens: TokenService) -> FakeUpstream:
    return FakeUpstream("hub", tokens)


def limited(**tiers: TierLimits) -> GatewayConfig:
    return GatewayConfig(rate_limit=RateLimitConfig(tiers=tiers, default_tier=next(iter(tiers))))


async def test_every_proxied_answer_carries_the_ratelimit_headers(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    config = limited(free=TierLimits(per_principal="5/minute", per_tenant="50/minute"))
    gw = make_gateway({"hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        first = await client.get("/api/v1/hub/whoami", headers=bearer(tokens))
        second = await client.get("/api/v1/hub/whoami", headers=bearer(tokens))
    assert first.headers["ratelimit-limit"] == "5"
    assert first.headers["ratelimit-remaining"] == "4"
    assert second.headers["ratelimit-remaining"] == "3"
    assert 0 <= int(second.headers["ratelimit-reset"]) <= 60
    assert "retry-after" not in second.headers


async def test_a_principal_past_its_tier_limit_gets_429_with_retry_after(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    config = limited(free=TierLimits(per_principal="3/minute", per_tenant="100/minute"))
    gw = make_gateway({"hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        answers = [await client.get("/api/v1/hub/whoami", headers=bearer(tokens)) for _ in range(4)]
        other_user = await client.get("/api/v1/hub/whoami", headers=bearer(tokens, "user:bob"))
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[3]
    assert refused.json()["reason"] == "rate_limited"
    assert "principal" in refused.json()["detail"]
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert hub.calls["whoami"] == 4  # three of alice, one of bob: the refused call never reached the hub
    assert other_user.status_code == 200


async def test_a_tenant_limit_is_shared_by_all_its_principals(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    config = limited(free=TierLimits(per_principal="100/minute", per_tenant="4/minute"))
    gw = make_gateway({"hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        codes = [
            (await client.get("/api/v1/hub/whoami", headers=bearer(tokens, f"user:{i % 2}"))).status_code
            for i in range(5)
        ]
        other_tenant = await client.get("/api/v1/hub/whoami", headers=bearer(tokens, tenant=OTHER_TENANT))
        last = await client.get("/api/v1/hub/whoami", headers=bearer(tokens, "user:new"))
    assert codes == [200, 200, 200, 200, 429]
    assert other_tenant.status_code == 200
    assert last.status_code == 429
    assert "tenant" in last.json()["detail"]


async def test_the_tier_in_the_token_chooses_the_limits(tokens: TokenService, hub: FakeUpstream) -> None:
    config = limited(
        free=TierLimits(per_principal="1/minute", per_tenant="100/minute"),
        pro=TierLimits(per_principal="3/minute", per_tenant="100/minute"),
    )
    gw = make_gateway({"hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        free = [
            (await client.get("/api/v1/hub/whoami", headers=bearer(tokens, "u:f", tier="free"))).status_code
            for _ in range(2)
        ]
        pro = [
            (await client.get("/api/v1/hub/whoami", headers=bearer(tokens, "u:p", tier="pro"))).status_code
            for _ in range(4)
        ]
        unknown = [
            (
                await client.get("/api/v1/hub/whoami", headers=bearer(tokens, "u:x", tier="platinum"))
            ).status_code
            for _ in range(2)
        ]
    assert free == [200, 429]
    assert pro == [200, 200, 200, 429]
    assert unknown == [200, 429]  # an unknown tier gets the default tier's limits


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
async def test_each_strategy_refuses_past_the_limit(strategy: Any) -> None:
    config = RateLimitConfig(
        strategy=strategy,
        tiers={"t": TierLimits(per_principal="2/minute", per_tenant="9/minute")},
        default_tier="t",
    )
    limiter = TenantRateLimiter(config)
    principal = Principal("user:z", tenant=TENANT)
    decisions = [await limiter.check(principal) for _ in range(3)]
    assert [d.allowed for d in decisions if d is not None] == [True, True, False]
    assert decisions[0] is not None
    assert decisions[0].remaining == 1


async def test_a_failing_counter_store_lets_requests_through() -> None:
    class Broken(MemoryStorage):
        async def incr(self, *args: Any, **kwargs: Any) -> int:
            raise ConnectionError("counter store down")

    config = RateLimitConfig(
        tiers={"t": TierLimits(per_principal="1/minute", per_tenant="1/minute")}, default_tier="t"
    )
    limiter = TenantRateLimiter(config, storage=Broken())
    assert await limiter.check(Principal("user:a", tenant=TENANT)) is None


async def test_limits_can_be_switched_off(tokens: TokenService, hub: FakeUpstream) -> None:
    config = GatewayConfig(rate_limit=RateLimitConfig(enabled=False))
    gw = make_gateway({"hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        resp = await client.get("/api/v1/hub/whoami", headers=bearer(tokens))
    assert resp.status_code == 200
    assert "ratelimit-limit" not in resp.headers


def test_default_tiers_follow_the_platform_tier_table() -> None:
    tiers = default_tiers()
    assert set(tiers) == set(TIERS)
    for name, quota in TIERS.items():
        assert tiers[name].per_tenant == f"{quota.requests_per_minute}/minute"


@pytest.mark.parametrize("bad", ["", "lots", "10 per fortnight"])
def test_a_limit_that_does_not_parse_is_refused_at_load(bad: str) -> None:
    with pytest.raises(ValidationError, match="rate limit"):
        TierLimits(per_principal=bad, per_tenant="1/second")


def test_the_default_tier_must_exist() -> None:
    with pytest.raises(ValidationError, match="default_tier"):
        RateLimitConfig(
            tiers={"a": TierLimits(per_principal="1/second", per_tenant="1/second")}, default_tier="b"
        )
