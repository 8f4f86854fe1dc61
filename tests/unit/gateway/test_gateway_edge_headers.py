"""Security headers, CORS, the public routes, and the gateway's OpenAPI document."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from gateway_edge_helpers import SECRET, FakeUpstream, bearer, client_of, make_gateway

from aitrading.common.auth import TokenService
from aitrading.gateway.config import GatewayConfig

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
def hub(tokens: TokenService) -> FakeUpstream:
    return FakeUpstream("hub", tokens)


def auth_router() -> APIRouter:
    """Stands in for identity's public routes (mounted through `extra_routers`)."""
    router = APIRouter()

    @router.post("/api/v1/auth/login")
    async def login() -> dict[str, str]:
        return {"access_token": "t"}

    return router


@pytest.mark.parametrize(
    ("method", "path", "authenticated"),
    [
        ("GET", "/api/v1/hub/whoami", True),
        ("GET", "/api/v1/hub/whoami", False),
        ("GET", "/health/live", False),
        ("GET", "/api/v1/gateway/upstreams", True),
        ("POST", "/api/v1/auth/login", False),
    ],
)
async def test_every_answer_carries_the_security_headers_and_a_strict_csp(
    tokens: TokenService, hub: FakeUpstream, method: str, path: str, authenticated: bool
) -> None:
    gw = make_gateway({"hub": hub}, tokens, extra_routers=[auth_router()])
    async with client_of(gw) as client:
        resp = await client.request(method, path, headers=bearer(tokens) if authenticated else {})
    assert {k: resp.headers.get(k) for k in SECURITY} == SECURITY
    assert resp.headers["content-security-policy"].startswith("default-src 'none'")
    assert "strict-transport-security" not in resp.headers  # plain HTTP
    assert resp.headers["x-request-id"]


async def test_auth_answers_and_api_answers_are_not_stored_by_caches(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    gw = make_gateway({"hub": hub}, tokens, extra_routers=[auth_router()])
    async with client_of(gw) as client:
        login = await client.post("/api/v1/auth/login")
        api = await client.get("/api/v1/hub/whoami", headers=bearer(tokens))
        health = await client.get("/health/live")
    assert login.status_code == 200
    assert login.headers["cache-control"] == "no-store"
    assert api.headers["cache-control"] == "no-store"
    assert "cache-control" not in health.headers


async def test_the_docs_page_is_served_without_the_api_csp_that_would_block_its_scripts(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    gw = make_gateway({"hub": hub}, tokens)
    async with client_of(gw) as client:
        docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers
    assert docs.headers["x-frame-options"] == "DENY"


async def test_hsts_is_sent_over_tls_or_when_forced(tokens: TokenService, hub: FakeUpstream) -> None:
    auto = make_gateway({"hub": hub}, tokens)
    forced = make_gateway({"hub": hub}, tokens, config=GatewayConfig(hsts="always"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=auto.app), base_url="https://gateway"
    ) as tls:
        over_tls = await tls.get("/health/live")
    async with client_of(forced) as plain:
        behind_proxy = await plain.get("/health/live")
    assert over_tls.headers["strict-transport-security"].startswith("max-age=")
    assert behind_proxy.headers["strict-transport-security"].startswith("max-age=")


async def test_cors_allows_no_origin_by_default(tokens: TokenService, hub: FakeUpstream) -> None:
    gw = make_gateway({"hub": hub}, tokens)
    async with client_of(gw) as client:
        resp = await client.get(
            "/api/v1/hub/whoami", headers={**bearer(tokens), "Origin": "https://dashboard.example"}
        )
    assert "access-control-allow-origin" not in resp.headers


async def test_a_configured_origin_gets_cors_and_its_preflight_needs_no_credential(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    config = GatewayConfig(cors_origins=("https://dashboard.example",))
    gw = make_gateway({"hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        preflight = await client.options(
            "/api/v1/hub/whoami",
            headers={
                "Origin": "https://dashboard.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        allowed = await client.get(
            "/api/v1/hub/whoami", headers={**bearer(tokens), "Origin": "https://dashboard.example"}
        )
        stranger = await client.get(
            "/api/v1/hub/whoami", headers={**bearer(tokens), "Origin": "https://evil.example"}
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://dashboard.example"
    assert "x-request-id" in preflight.headers
    assert allowed.headers["access-control-allow-origin"] == "https://dashboard.example"
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in stranger.headers
    assert hub.calls == {"whoami": 2}


async def test_the_openapi_document_describes_the_proxy_routes_and_their_errors(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    engine = FakeUpstream("engine", tokens)
    gw = make_gateway({"hub": hub, "engine": engine}, tokens)
    async with client_of(gw) as client:
        doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert {"/api/v1/hub/{path}", "/api/v1/engine/{path}", "/api/v1/gateway/upstreams"} <= set(paths)
    get = paths["/api/v1/engine/{path}"]["get"]
    assert set(paths["/api/v1/engine/{path}"]) >= {"get", "post", "put", "patch", "delete"}
    assert {"401", "403", "429", "502", "503", "504", "default"} <= set(get["responses"])
    assert get["security"] == [{"HTTPBearer": []}]
    assert "/health/ready" in paths
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))
