"""The verified-credential cache: fewer verifications, never past a token's expiry, never for a failure."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from gateway_edge_helpers import SECRET
from starlette.requests import Request

from aitrading.common.auth import Principal, TokenService, principal_dependency
from aitrading.common.clock import TestClock
from aitrading.gateway.authcache import CachedAuthenticator


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


class Counting:
    def __init__(self, tokens: TokenService) -> None:
        self.calls = 0
        self._inner = principal_dependency(tokens)

    async def __call__(self, req: Request) -> Principal:
        self.calls += 1
        return await self._inner(req)


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def tokens(clock: TestClock) -> TokenService:
    return TokenService(SECRET, clock=clock, leeway_s=0)


async def test_a_credential_is_verified_once_within_the_ttl_and_again_after(
    clock: TestClock, tokens: TokenService
) -> None:
    inner = Counting(tokens)
    cached = CachedAuthenticator(inner, clock, ttl_s=1.0)
    headers = {"Authorization": f"Bearer {tokens.issue('user:a', roles=['analyst'], ttl_s=600)}"}
    principals = [await cached(request(headers)) for _ in range(5)]
    assert inner.calls == 1
    assert {p.subject for p in principals} == {"user:a"}
    clock.advance(1.0)
    await cached(request(headers))
    assert inner.calls == 2


async def test_a_cached_token_is_refused_once_it_expires_even_within_the_ttl(
    clock: TestClock, tokens: TokenService
) -> None:
    inner = Counting(tokens)
    cached = CachedAuthenticator(inner, clock, ttl_s=60.0)
    headers = {"Authorization": f"Bearer {tokens.issue('user:a', ttl_s=10)}"}
    await cached(request(headers))
    clock.advance(11.5)  # the verifier compares whole seconds
    with pytest.raises(HTTPException) as refused:
        await cached(request(headers))
    assert refused.value.status_code == 401
    assert inner.calls == 2


async def test_failures_are_never_cached(clock: TestClock, tokens: TokenService) -> None:
    inner = Counting(tokens)
    cached = CachedAuthenticator(inner, clock, ttl_s=60.0)
    for _ in range(3):
        with pytest.raises(HTTPException):
            await cached(request({"Authorization": "Bearer not-a-token"}))
    assert inner.calls == 3


async def test_different_credentials_are_different_entries(clock: TestClock, tokens: TokenService) -> None:
    inner = Counting(tokens)
    cached = CachedAuthenticator(inner, clock, ttl_s=60.0)
    a = await cached(request({"Authorization": f"Bearer {tokens.issue('user:a')}"}))
    b = await cached(request({"Authorization": f"Bearer {tokens.issue('user:b')}"}))
    assert (a.subject, b.subject) == ("user:a", "user:b")
    assert inner.calls == 2


async def test_a_zero_ttl_asks_the_authenticator_every_time(clock: TestClock, tokens: TokenService) -> None:
    inner = Counting(tokens)
    cached = CachedAuthenticator(inner, clock, ttl_s=0)
    headers = {"Authorization": f"Bearer {tokens.issue('user:a')}"}
    for _ in range(3):
        await cached(request(headers))
    assert inner.calls == 3
