"""The security suite end to end: the all-in-one platform, identity wired into the gateway, real services.

Every forged, expired, misdirected, tampered or revoked credential sent to a proxied route answers 401 and
leaves a `security.invalid_token` event (in the token's tenant chain when the signature proves the tenant,
else in the platform chain). RBAC and MFA step-up are checked on the engine's real order route, and the
upstreams are shown to act for the user's own tenant and subject whatever the client sends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_platform import PASSWORD, Platform, User, platform

from aitrading.common.auth import TokenService

pytestmark = pytest.mark.slow

ACCOUNT = "70001"
ACCOUNTS = "/api/v1/engine/accounts"
ORDERS = "/api/v1/engine/orders"


@pytest.fixture
async def p(tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform(tmp_path) as pp:
        yield pp


async def acme(p: Platform, role: str = "portfolio_manager") -> User:
    tenant = await p.tenant("acme")
    await p.trading_account(tenant, ACCOUNT)
    return await p.user(tenant, "acme", f"{role}@acme.io", role)


def claims_of(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


async def gateway_signed(p: Platform, claims: dict[str, Any]) -> str:
    kid, private = await p.identity.ctx.keys.signer()
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})


async def refused(p: Platform, token: str, reason: str) -> None:
    resp = await p.client.get(ACCOUNTS, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.text
    assert reason in resp.json()["detail"]
    assert resp.json()["reason"] == "unauthenticated"
    assert resp.headers["www-authenticate"].startswith("Bearer")


async def invalid_reasons(p: Platform, tenant: uuid.UUID | None) -> list[str]:
    return [e["reason"] for k, e in await p.events(tenant) if k == "security.invalid_token"]


async def eventually(p: Platform, tenant: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    """The gateway audits RBAC refusals off the hot path: wait (briefly) for the event to land."""
    for _ in range(100):
        found = [e for k, e in await p.events(tenant) if k == kind]
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind} event in the tenant's chain")


def order(client_order_id: str) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "symbol": "EURUSD",
        "type": "BUY",
        "volume": "0.10",
        "client_order_id": client_order_id,
    }


# --- the wiring --------------------------------------------------------------------------------------------


async def test_users_access_token_reaches_the_engine_acting_for_the_users_tenant(p: Platform) -> None:
    pat = await acme(p)
    resp = await p.client.get(ACCOUNTS, headers=pat.auth)
    assert resp.status_code == 200, resp.text
    assert [a["account"] for a in resp.json()] == [ACCOUNT]


async def test_upstream_sees_the_users_tenant_and_subject_not_what_the_client_claims(p: Platform) -> None:
    pat = await acme(p)
    other = str(await p.tenant("globex"))
    forged = {**pat.auth, "X-Tenant": other, "X-Forwarded-For": "10.0.0.1", "Cookie": "tenant=" + other}
    effective = await p.client.get("/api/v1/config/effective", headers=forged)
    assert effective.status_code == 200, effective.text
    assert effective.json()["tenant"] == str(pat.tenant)
    assert effective.json()["user"] == str(pat.id)
    # Naming another tenant in the query is the service's own check: only platform admins may.
    assert (
        await p.client.get(f"/api/v1/config/effective?tenant={other}", headers=pat.auth)
    ).status_code == 403


async def test_identity_routes_are_mounted_and_only_health_login_and_jwks_are_public(p: Platform) -> None:
    assert (await p.client.get("/health/live")).status_code == 200
    jwks = await p.client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.json()["keys"][0]["alg"] == "EdDSA"
    login = await p.client.post(
        "/api/v1/auth/login", json={"tenant": "x", "email": "a@b.io", "password": "p" * 12}
    )
    assert login.status_code == 401
    for method, path in [
        ("GET", "/api/v1/auth/me"),
        ("GET", "/api/v1/auth/users"),
        ("GET", "/api/v1/auth/keys"),
        ("POST", "/api/v1/auth/mfa/enrol"),
        ("GET", "/api/v1/gateway/upstreams"),
        ("GET", ACCOUNTS),
        ("GET", "/api/v1/config/effective"),
        ("GET", "/api/v1/hub/services"),
    ]:
        assert (await p.client.request(method, path)).status_code == 401, (method, path)


async def test_platform_service_tokens_keep_working_for_services_and_the_cli(p: Platform) -> None:
    pat = await acme(p)
    token = p.kernel.tokens.issue("cli", tenant=str(pat.tenant), roles=["analyst"])
    resp = await p.client.get(ACCOUNTS, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert [a["account"] for a in resp.json()] == [ACCOUNT]


async def test_service_token_signed_with_another_secret_is_refused_and_audited(p: Platform) -> None:
    pat = await acme(p)
    forged = TokenService("y" * 40).issue("svc", tenant=str(pat.tenant), roles=["platform_admin"])
    await refused(p, forged, "Signature verification failed")
    assert len(await invalid_reasons(p, None)) == 1


# --- forged, broken and revoked access tokens ------------------------------------------------------------


async def test_alg_none_token_is_refused_and_audited_in_the_platform_chain(p: Platform) -> None:
    pat = await acme(p, "analyst")
    claims = {**claims_of(pat.access), "roles": ["portfolio_manager"], "mfa": True}
    await refused(p, jwt.encode(claims, key="", algorithm="none"), "algorithm 'none' is not allowed")
    assert await invalid_reasons(p, None) == ["algorithm 'none' is not allowed"]


async def test_token_with_a_wrong_signature_is_refused_and_audited_in_the_platform_chain(p: Platform) -> None:
    pat = await acme(p)
    kid = jwt.get_unverified_header(pat.access)["kid"]
    forged = jwt.encode(claims_of(pat.access), Ed25519PrivateKey.generate(), "EdDSA", {"kid": kid})
    await refused(p, forged, "bad signature")
    assert len(await invalid_reasons(p, None)) == 1
    assert await invalid_reasons(p, pat.tenant) == []


async def test_tampered_claims_are_refused_and_audited(p: Platform) -> None:
    pat = await acme(p, "analyst")
    header, payload, signature = pat.access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"], claims["mfa"] = ["portfolio_manager"], True
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    await refused(p, f"{header}.{body}.{signature}", "bad signature")
    assert len(await invalid_reasons(p, None)) == 1


async def test_expired_token_is_refused_and_audited_in_its_tenants_chain(p: Platform) -> None:
    pat = await acme(p)
    p.clock.advance(15 * 60 + 6)  # the access token's lifetime plus the 5 s leeway
    await refused(p, pat.access, "token expired")
    assert await invalid_reasons(p, pat.tenant) == ["token expired"]


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [("aud", "someone-else", "wrong audience"), ("iss", "evil-issuer", "wrong issuer")],
)
async def test_token_for_another_audience_or_issuer_is_refused_and_audited(
    p: Platform, claim: str, value: str, reason: str
) -> None:
    pat = await acme(p)
    await refused(p, await gateway_signed(p, {**claims_of(pat.access), claim: value}), reason)
    assert await invalid_reasons(p, pat.tenant) == [reason]


async def test_token_of_a_logged_out_session_is_refused_and_audited(p: Platform) -> None:
    pat = await acme(p)
    assert (await p.client.get(ACCOUNTS, headers=pat.auth)).status_code == 200
    p.clock.advance(2)  # past the gateway's 1 s credential cache
    logout = await p.client.post("/api/v1/auth/logout", headers=pat.auth, json={})
    assert logout.status_code == 204, logout.text
    await refused(p, pat.access, "revoked")
    assert "token.revoked" in [k for k, _ in await p.events(pat.tenant)]
    assert any("revoked" in r for r in await invalid_reasons(p, pat.tenant))


async def test_reused_refresh_token_is_refused_and_kills_the_family_everywhere(p: Platform) -> None:
    pat = await acme(p)
    first = pat.refresh
    rotated = await p.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()["access_token"]
    assert (await p.client.get(ACCOUNTS, headers={"Authorization": f"Bearer {successor}"})).status_code == 200
    p.clock.advance(2)
    replay = await p.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    assert "security.refresh_reuse" in [k for k, _ in await p.events(pat.tenant)]
    await refused(p, successor, "session revoked")  # the thief's and the owner's access tokens die


# --- roles and step-up on the engine's order route ----------------------------------------------------------


async def test_an_analyst_cannot_trade_through_the_gateway(p: Platform) -> None:
    ann = await p.with_mfa(await acme(p, "analyst"))
    resp = await p.client.post(ORDERS, headers=ann.auth, json=order("A1"))
    assert resp.status_code == 403, resp.text
    assert resp.json()["reason"] == "denied"
    assert "portfolio_manager" in resp.json()["detail"]
    denied = await eventually(p, ann.tenant, "gateway.rbac_denied")
    assert denied[0]["path"] == ORDERS
    orders = await p.client.get(f"{ACCOUNTS}/{ACCOUNT}/orders?state=all", headers=ann.auth)
    assert orders.json() == []


async def test_a_trade_without_mfa_is_refused_with_a_step_up_challenge_then_passes(p: Platform) -> None:
    pat = await acme(p)
    resp = await p.client.post(ORDERS, headers=pat.auth, json=order("P1"))
    assert resp.status_code == 403, resp.text
    assert resp.json()["reason"] == "mfa_required"
    assert 'error="insufficient_user_authentication"' in resp.headers["www-authenticate"]
    await eventually(p, pat.tenant, "gateway.mfa_required")
    await p.with_mfa(pat)
    placed = await p.client.post(ORDERS, headers=pat.auth, json=order("P2"))
    assert placed.status_code in (202, 422), placed.text  # the engine decided (accepted or risk-denied)
    mine = await p.client.get(f"{ORDERS}/P2", headers=pat.auth)
    assert mine.status_code == 200, mine.text
    assert mine.json()["client_order_id"] == "P2"


async def test_api_key_trades_only_with_the_trade_scope(p: Platform) -> None:
    admin = await acme(p, "tenant_admin")
    bot = await p.user(admin.tenant, "acme", "bot@acme.io", "api_user")
    _, read_key = await p.api_key(bot, ["read"])
    _, trade_key = await p.api_key(bot, ["read", "trade"])
    refused_key = await p.client.post(ORDERS, headers={"X-API-Key": read_key}, json=order("K1"))
    assert refused_key.status_code == 403
    assert refused_key.json()["reason"] == "denied"
    placed = await p.client.post(ORDERS, headers={"X-API-Key": trade_key}, json=order("K2"))
    assert placed.status_code in (202, 422), placed.text
    garbage = await p.client.get(ACCOUNTS, headers={"X-API-Key": "aitk_" + "0" * 32 + "_" + "A" * 43})
    assert garbage.status_code == 401
    assert garbage.headers["www-authenticate"] == "ApiKey"


# --- brute force -------------------------------------------------------------------------------------------


async def test_brute_force_login_is_throttled_then_locked(p: Platform) -> None:
    pat = await acme(p)
    statuses = [(await p.login(pat, password="guess-guess-guess")).status_code for _ in range(5)]
    assert statuses == [401] * 5
    throttled = await p.login(pat, password="guess-guess-guess")
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    p.clock.advance(int(throttled.headers["retry-after"]))
    failures = 5
    while failures < 10:  # keep guessing, waiting out each growing delay
        resp = await p.login(pat, password="guess-guess-guess")
        if resp.status_code == 429:
            p.clock.advance(int(resp.headers["retry-after"]))
        else:
            assert resp.status_code == 401, resp.text
            failures += 1
    p.clock.advance(16 * 60)  # past any throttling delay, well inside the 30 min lockout
    locked = await p.login(pat, password=PASSWORD)
    assert locked.status_code == 429, locked.text
    assert int(locked.headers["retry-after"]) > 60
    kinds = [k for k, _ in await p.events(pat.tenant)]
    assert {"auth.login_failed", "auth.login_throttled", "auth.locked"} <= set(kinds)
    assert kinds.count("auth.login_failed") == 10
