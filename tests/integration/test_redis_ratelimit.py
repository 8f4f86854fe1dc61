"""Gateway rate limits on a real Redis (database 15, flushed first): counters shared by gateway processes."""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from aitrading.common.auth import Principal, TokenService, principal_dependency
from aitrading.gateway.config import GatewayConfig, RateLimitConfig, TierLimits
from aitrading.gateway.ratelimit import TenantRateLimiter
from aitrading.gateway.service import GatewayService

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "gateway"))
from gateway_edge_helpers import SECRET, FakeUpstream, bearer

pytestmark = pytest.mark.integration


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


def config(
    url: str, *, strategy: str = "fixed-window", principal: str = "3/minute", tenant: str = "100/minute"
):
    return RateLimitConfig(
        strategy=strategy,  # type: ignore[arg-type]
        storage_url=url,
        tiers={"t": TierLimits(per_principal=principal, per_tenant=tenant)},
        default_tier="t",
    )


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
async def test_two_gateway_processes_share_the_counters_in_redis(
    redis_url: str, raw: Redis, strategy: str
) -> None:
    first = TenantRateLimiter(config(redis_url, strategy=strategy))
    second = TenantRateLimiter(config(redis_url, strategy=strategy))
    principal = Principal("user:alice", tenant=str(uuid.uuid4()))
    try:
        decisions = [await limiter.check(principal) for limiter in (first, second, first, second)]
    finally:
        await first.close()
        await second.close()
    assert [d.allowed for d in decisions if d is not None] == [True, True, True, False]
    refused = decisions[3]
    assert refused is not None
    assert refused.scope == "principal"
    assert 1 <= refused.reset_s <= 60
    assert await raw.keys("aitrading-rl*")  # the counters live in Redis under the gateway's prefix


async def test_the_gateway_answers_429_from_redis_counters(redis_url: str, raw: Redis) -> None:
    tokens = TokenService(SECRET)
    hub = FakeUpstream("hub", tokens)
    gw = GatewayService(
        {"hub": "http://hub.test"},
        in_process={"hub": hub.app},
        tokens=tokens,
        authenticate=principal_dependency(tokens),
        config=GatewayConfig(rate_limit=config(redis_url, principal="100/minute", tenant="2/minute")),
    )
    await gw.start()
    try:
        transport = httpx.ASGITransport(app=gw.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answers = [
                await client.get("/api/v1/hub/whoami", headers=bearer(tokens, f"user:{i}")) for i in range(3)
            ]
    finally:
        await gw.stop()
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["ratelimit-limit"] == "2"
    assert answers[2].headers["retry-after"]
    assert "tenant" in answers[2].json()["detail"]


async def test_an_unreachable_redis_lets_requests_through(raw: Redis) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    limiter = TenantRateLimiter(config(f"redis://127.0.0.1:{port}/15"))
    try:
        assert await limiter.check(Principal("user:a", tenant="t")) is None
    finally:
        await limiter.close()
