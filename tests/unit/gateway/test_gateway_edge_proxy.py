"""The proxy: routing to the upstream's own path, identity forwarding, request ids, bodies, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import HTTPException, Request
from gateway_edge_helpers import SECRET, TENANT, FakeUpstream, bearer, client_of, make_gateway

from aitrading.common.auth import Principal, TokenService
from aitrading.gateway.config import GatewayConfig
from aitrading.gateway.service import GatewayService


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
def engine(tokens: TokenService) -> FakeUpstream:
    return FakeUpstream("engine", tokens)


@pytest.fixture
def hub(tokens: TokenService) -> FakeUpstream:
    return FakeUpstream("hub", tokens)


@pytest.fixture(params=["in-process", "http"])
async def gateway(
    request: pytest.FixtureRequest, tokens: TokenService, engine: FakeUpstream, hub: FakeUpstream
) -> AsyncIterator[GatewayService]:
    gw = make_gateway({"engine": engine, "hub": hub}, tokens, over_http=request.param == "http")
    await gw.start()
    yield gw
    await gw.stop()


async def test_get_reaches_the_upstreams_own_api_path_with_its_query(
    gateway: GatewayService, tokens: TokenService
) -> None:
    async with client_of(gateway) as client:
        resp = await client.get("/api/v1/hub/whoami?symbol=EURUSD&x=%2F1", headers=bearer(tokens))
    assert resp.status_code == 200
    body = resp.json()
    assert body["service"] == "hub"
    assert body["path"] == "/api/v1/whoami"
    assert body["query"] == "symbol=EURUSD&x=%2F1"


async def test_upstream_sees_the_callers_principal_in_a_gateway_token_never_the_callers_credential(
    gateway: GatewayService, tokens: TokenService, engine: FakeUpstream
) -> None:
    caller = bearer(tokens, "user:bob", roles=("portfolio_manager",), mfa=True, tier="pro")
    async with client_of(gateway) as client:
        resp = await client.get(
            "/api/v1/engine/whoami",
            headers={**caller, "Cookie": "refresh=secret", "X-API-Key": "ak_secret", "Host": "evil.example"},
        )
    assert resp.status_code == 200
    assert resp.json() | {"service": "engine"} == {
        "service": "engine",
        "path": "/api/v1/whoami",
        "query": "",
        "subject": "user:bob",
        "tenant": TENANT,
        "roles": ["portfolio_manager"],
        "mfa": True,
        "tier": "pro",
    }
    seen = engine.seen_headers[-1]
    assert seen["authorization"] != caller["Authorization"]
    assert "cookie" not in seen
    assert "x-api-key" not in seen
    assert seen["host"] != "evil.example"
    assert seen["x-forwarded-for"] == "127.0.0.1"


async def test_the_upstream_token_is_minted_once_per_principal_and_reused(
    gateway: GatewayService, tokens: TokenService, engine: FakeUpstream
) -> None:
    async with client_of(gateway) as client:
        for _ in range(3):
            assert (await client.get("/api/v1/engine/whoami", headers=bearer(tokens))).status_code == 200
        other = bearer(tokens, "user:carol")
        assert (await client.get("/api/v1/engine/whoami", headers=other)).status_code == 200
    seen = [h["authorization"] for h in engine.seen_headers]
    assert seen[0] == seen[1] == seen[2]
    assert seen[3] != seen[0]
    assert tokens.verify(seen[0].removeprefix("Bearer ")).subject == "user:alice"


async def test_post_body_reaches_the_upstream_and_its_201_comes_back(
    gateway: GatewayService, tokens: TokenService
) -> None:
    trader = bearer(tokens, roles=("portfolio_manager",), mfa=True)
    async with client_of(gateway) as client:
        resp = await client.post(
            "/api/v1/engine/orders", json={"symbol": "EURUSD", "volume": "0.10"}, headers=trader
        )
    assert resp.status_code == 201
    assert resp.json() == {"accepted": {"symbol": "EURUSD", "volume": "0.10"}, "by": "user:alice"}


async def test_a_streamed_answer_passes_through_whole(gateway: GatewayService, tokens: TokenService) -> None:
    async with client_of(gateway) as client:
        resp = await client.get("/api/v1/hub/stream", headers=bearer(tokens))
    assert resp.status_code == 200
    assert resp.text == "".join(f"chunk-{i};" for i in range(5))
    assert resp.headers["content-type"].startswith("text/plain")


async def test_an_unknown_service_is_404(gateway: GatewayService, tokens: TokenService) -> None:
    async with client_of(gateway) as client:
        resp = await client.get("/api/v1/nosuch/whoami", headers=bearer(tokens))
    assert resp.status_code == 404


# Percent-encoded, since HTTP clients (httpx too) drop literal dot segments before sending.
@pytest.mark.parametrize(
    "path", ["/api/v1/hub/x/%2e%2e/admin/settings", "/api/v1/hub/%2E/whoami", "/api/v1/hub/%2e%2e"]
)
async def test_dot_segments_are_refused_with_400_before_anything_else(
    gateway: GatewayService, hub: FakeUpstream, path: str
) -> None:
    async with client_of(gateway) as client:
        resp = await client.get(path)  # no credential: the path is judged first
    assert resp.status_code == 400
    assert resp.json()["reason"] == "bad_path"
    assert hub.calls == {}


async def test_missing_or_invalid_credentials_are_401_with_the_reason(
    gateway: GatewayService, tokens: TokenService, hub: FakeUpstream
) -> None:
    forged = TokenService("another-secret-of-enough-length-for-hs256!").issue(
        "user:mallory", roles=["analyst"]
    )
    async with client_of(gateway) as client:
        missing = await client.get("/api/v1/hub/whoami")
        bad = await client.get("/api/v1/hub/whoami", headers={"Authorization": f"Bearer {forged}"})
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing bearer token", "reason": "unauthenticated"}
    assert missing.headers["www-authenticate"] == "Bearer"
    assert bad.status_code == 401
    assert "invalid token" in bad.json()["detail"]
    assert hub.calls == {}


async def test_a_body_over_the_limit_is_413_and_never_reaches_the_upstream(
    tokens: TokenService, engine: FakeUpstream
) -> None:
    gw = make_gateway({"engine": engine}, tokens, config=GatewayConfig(max_body_bytes=64))
    trader = bearer(tokens, roles=("portfolio_manager",), mfa=True)
    async with client_of(gw) as client:
        resp = await client.post("/api/v1/engine/orders", json={"comment": "x" * 100}, headers=trader)
        small = await client.post("/api/v1/engine/orders", json={"ok": 1}, headers=trader)
    assert resp.status_code == 413
    assert resp.json()["reason"] == "too_large"
    assert small.status_code == 201
    assert engine.calls == {"orders": 1}


async def test_a_sane_request_id_is_kept_forwarded_and_echoed(
    gateway: GatewayService, tokens: TokenService, hub: FakeUpstream
) -> None:
    async with client_of(gateway) as client:
        resp = await client.get(
            "/api/v1/hub/whoami", headers={**bearer(tokens), "X-Request-ID": "req-42.a:b"}
        )
    assert resp.headers["x-request-id"] == "req-42.a:b"
    assert hub.seen_headers[-1]["x-request-id"] == "req-42.a:b"


@pytest.mark.parametrize("incoming", [None, "x" * 129, "bad id with spaces", "<script>"])
async def test_a_missing_or_insane_request_id_is_replaced_by_a_fresh_one(
    gateway: GatewayService, tokens: TokenService, hub: FakeUpstream, incoming: str | None
) -> None:
    headers = bearer(tokens) | ({"X-Request-ID": incoming} if incoming is not None else {})
    async with client_of(gateway) as client:
        resp = await client.get("/api/v1/hub/whoami", headers=headers)
        other = await client.get("/api/v1/hub/whoami", headers=headers)
    rid = resp.headers["x-request-id"]
    assert rid != incoming
    assert len(rid) == 16
    assert int(rid, 16) >= 0
    assert other.headers["x-request-id"] != rid
    assert hub.seen_headers[0]["x-request-id"] == rid


async def test_a_failing_authenticator_is_a_503_with_the_reason_not_a_500(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    async def broken(request: Request) -> Principal:
        raise ConnectionError("identity database is down")

    gw = GatewayService(
        {"hub": "http://hub.test"}, in_process={"hub": hub.app}, tokens=tokens, authenticate=broken
    )
    async with client_of(gw) as client:
        resp = await client.get("/api/v1/hub/whoami", headers=bearer(tokens))
    assert resp.status_code == 503
    assert resp.json()["reason"] == "auth_unavailable"


async def test_the_injected_authenticator_decides_who_calls(tokens: TokenService, hub: FakeUpstream) -> None:
    async def api_keys(request: Request) -> Principal:
        if request.headers.get("x-api-key") != "ak_live_1":
            raise HTTPException(401, "unknown API key")
        return Principal("key:1", tenant=TENANT, roles=frozenset({"analyst"}), tier="pro")

    gw = GatewayService(
        {"hub": "http://hub.test"}, in_process={"hub": hub.app}, tokens=tokens, authenticate=api_keys
    )
    async with client_of(gw) as client:
        ok = await client.get("/api/v1/hub/whoami", headers={"X-API-Key": "ak_live_1"})
        no = await client.get("/api/v1/hub/whoami", headers={"X-API-Key": "ak_other"})
    assert ok.status_code == 200
    assert ok.json()["subject"] == "key:1"
    assert no.status_code == 401
    assert no.json()["detail"] == "unknown API key"
