"""The security suite: forged, expired, misdirected, tampered and revoked credentials; brute force; replay.

Every rejected credential must answer 401 with a reason and leave an audit event: in the tenant's chain
when the signature proves the tenant, in the platform chain when nothing about the token can be trusted.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from identity_harness import Harness, harness
from starlette.requests import Request

from aitrading.common.auth import TokenService
from aitrading.gateway.identity.signing import jwk_thumbprint


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(tmp_path) as hh:
        yield hh


async def signed_in(h: Harness, role: str = "portfolio_manager") -> tuple[uuid.UUID, dict[str, Any]]:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io", role=role)
    return tenant, await h.tokens("pat@acme.io")


def claims_of(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


async def sign_with_gateway_key(h: Harness, claims: dict[str, Any]) -> str:
    kid, private = await h.identity.ctx.keys.signer()
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})


async def rejected(h: Harness, token: str, reason: str) -> None:
    resp = await h.me(token)
    assert resp.status_code == 401, resp.text
    assert reason in resp.json()["detail"]
    assert resp.headers["www-authenticate"].startswith("Bearer")


async def invalid_token_reasons(h: Harness, tenant: uuid.UUID | None) -> list[str]:
    return [p["reason"] for k, p in await h.events(tenant) if k == "security.invalid_token"]


# --- forged and broken access tokens ---------------------------------------------------------------------


async def test_alg_none_token_is_refused_and_audited_in_the_platform_chain(h: Harness) -> None:
    _, pair = await signed_in(h)
    claims = claims_of(pair["access_token"])
    claims["roles"] = ["platform_admin"]
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    await rejected(h, unsigned, "algorithm 'none' is not allowed")
    assert await invalid_token_reasons(h, None) == ["algorithm 'none' is not allowed"]


async def test_hs256_service_token_is_not_accepted_as_a_user_token(h: Harness) -> None:
    tenant, _ = await signed_in(h)
    service = TokenService("x" * 40, clock=h.clock).issue("svc", tenant=str(tenant), roles=["platform_admin"])
    await rejected(h, service, "algorithm 'HS256' is not allowed")


async def test_token_signed_by_another_key_under_our_kid_is_refused_as_bad_signature(h: Harness) -> None:
    _, pair = await signed_in(h)
    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    forged = jwt.encode(claims_of(pair["access_token"]), Ed25519PrivateKey.generate(), "EdDSA", {"kid": kid})
    await rejected(h, forged, "bad signature")
    assert len(await invalid_token_reasons(h, None)) == 1


async def test_token_with_an_unknown_kid_is_refused(h: Harness) -> None:
    _, pair = await signed_in(h)
    other = Ed25519PrivateKey.generate()
    forged = jwt.encode(
        claims_of(pair["access_token"]), other, "EdDSA", {"kid": jwk_thumbprint(other.public_key())}
    )
    await rejected(h, forged, "unknown signing key")


async def test_tampered_claims_break_the_signature(h: Harness) -> None:
    _, pair = await signed_in(h, role="analyst")
    header, payload, signature = pair["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["portfolio_manager"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    await rejected(h, f"{header}.{forged_payload}.{signature}", "bad signature")
    assert len(await invalid_token_reasons(h, None)) == 1


async def test_expired_token_is_refused_and_audited_in_its_tenants_chain(h: Harness) -> None:
    tenant, pair = await signed_in(h)
    h.clock.advance(15 * 60 + 6)  # lifetime plus the 5 s leeway
    await rejected(h, pair["access_token"], "token expired")
    assert await invalid_token_reasons(h, tenant) == ["token expired"]
    assert await invalid_token_reasons(h, None) == []


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [("aud", "someone-else", "wrong audience"), ("iss", "evil-issuer", "wrong issuer")],
)
async def test_validly_signed_token_for_another_audience_or_issuer_is_refused(
    h: Harness, claim: str, value: str, reason: str
) -> None:
    tenant, pair = await signed_in(h)
    claims = {**claims_of(pair["access_token"]), claim: value}
    await rejected(h, await sign_with_gateway_key(h, claims), reason)
    assert await invalid_token_reasons(h, tenant) == [reason]


async def test_token_missing_a_required_claim_is_refused(h: Harness) -> None:
    _, pair = await signed_in(h)
    claims = claims_of(pair["access_token"])
    del claims["jti"]
    await rejected(h, await sign_with_gateway_key(h, claims), "missing claim 'jti'")


async def test_token_living_longer_than_an_access_token_may_is_refused(h: Harness) -> None:
    _, pair = await signed_in(h)
    claims = claims_of(pair["access_token"])
    claims["exp"] = claims["iat"] + 86_400
    await rejected(h, await sign_with_gateway_key(h, claims), "lifetime")


async def test_revoked_jti_is_refused_and_audited(h: Harness) -> None:
    tenant, pair = await signed_in(h)
    # Revoke this one token only: the session itself stays.
    jti, exp = claims_of(pair["access_token"])["jti"], claims_of(pair["access_token"])["exp"]
    await h.cache.set(f"idn:deny:jti:{jti}", b"1", ttl=exp - h.clock.now_ns() // 10**9 + 5)
    await rejected(h, pair["access_token"], "token revoked")
    assert await invalid_token_reasons(h, tenant) == ["token revoked"]


async def test_missing_and_garbage_credentials_get_401_with_a_reason(h: Harness) -> None:
    none = await h.client.get("/api/v1/auth/me")
    assert none.status_code == 401
    assert "missing credentials" in none.json()["detail"]
    await rejected(h, "not-a-jwt", "malformed token")


async def test_invalid_token_audits_are_capped_per_ip_and_reason(h: Harness) -> None:
    for _ in range(15):
        await rejected(h, "not-a-jwt", "malformed token")
    assert len(await invalid_token_reasons(h, None)) == 10


# --- refresh-token reuse -----------------------------------------------------------------------------------


async def test_reused_refresh_token_revokes_the_whole_family_and_is_audited(h: Harness) -> None:
    tenant, first = await signed_in(h)
    second = (
        await h.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    # The first token was stolen and is replayed: 401, and the legitimate successor dies with it.
    replay = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert "reuse" in replay.json()["detail"]["reason"]
    successor = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert successor.status_code == 401
    assert successor.json()["detail"]["reason"] == "refresh token revoked"
    assert (await h.me(second["access_token"])).status_code == 401  # live access tokens of the family too
    assert "security.refresh_reuse" in await h.kinds(tenant)


async def test_unknown_refresh_token_is_refused_and_audited_in_the_platform_chain(h: Harness) -> None:
    resp = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_" + "A" * 43})
    assert resp.status_code == 401
    assert await invalid_token_reasons(h, None) == ["unknown refresh token"]


# --- brute force -------------------------------------------------------------------------------------------


async def test_brute_force_is_throttled_after_5_failures_then_locked_after_10(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    for _ in range(5):
        assert (await h.login("pat@acme.io", password="guess-guess-guess")).status_code == 401
    throttled = await h.login("pat@acme.io", password="guess-guess-guess")
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    delays = []
    for _ in range(5):  # keep guessing, waiting out each (growing) delay
        wait = int((await h.login("pat@acme.io", password="guess")).headers.get("retry-after", "0"))
        delays.append(wait)
        h.clock.advance(wait)
        assert (await h.login("pat@acme.io", password="guess-guess-guess")).status_code == 401
    assert delays == sorted(delays)
    assert delays[-1] > delays[0]
    # Ten failures: locked for 30 minutes, even with the right password.
    locked = await h.login("pat@acme.io")
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 25 * 60
    h.clock.advance(31 * 60)
    assert (await h.login("pat@acme.io")).status_code == 200
    kinds = await h.kinds(tenant)
    assert kinds.count("auth.login_failed") == 10
    assert "auth.locked" in kinds
    assert "auth.login_throttled" in kinds


async def test_an_admin_unlock_lifts_the_lockout_at_once(tmp_path: Path) -> None:
    async with harness(tmp_path, lockout_after=3, account_throttle_after=10) as h:
        tenant = await h.tenant()
        user = await h.user(tenant, "pat@acme.io")
        for _ in range(3):
            assert (await h.login("pat@acme.io", password="guess-guess-guess")).status_code == 401
        assert (await h.login("pat@acme.io")).status_code == 429
        await h.identity.directory.unlock_user(tenant, user.id, actor="test")
        assert (await h.login("pat@acme.io")).status_code == 200


async def test_unknown_and_real_accounts_fail_with_the_same_answers(tmp_path: Path) -> None:
    async with harness(tmp_path, lockout_after=3, account_throttle_after=10) as h:
        tenant = await h.tenant()
        await h.user(tenant, "pat@acme.io")

        async def answers(email: str) -> list[tuple[int, object]]:
            out = []
            for _ in range(4):
                resp = await h.login(email, password="guess-guess-guess")
                out.append((resp.status_code, resp.json()["detail"]))
            return out

        assert await answers("pat@acme.io") == await answers("nobody@acme.io")
        wrong_tenant = await h.login("pat@acme.io", tenant="nope")
        assert wrong_tenant.json() == {
            "detail": {"code": "invalid_credentials", "reason": "invalid credentials"}
        }


async def test_throttling_per_client_ip_spans_accounts(tmp_path: Path) -> None:
    async with harness(tmp_path, ip_throttle_after=4) as h:
        await h.tenant()
        for n in range(4):
            assert (await h.login(f"user{n}@acme.io")).status_code == 401
        assert (await h.login("someone-else@acme.io")).status_code == 429


# --- MFA replay ----------------------------------------------------------------------------------------


async def test_a_totp_code_used_once_is_refused_the_second_time(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    secret, _ = await h.enrol_mfa((await h.tokens("pat@acme.io"))["access_token"])
    code = h.code(secret)
    assert (await h.login("pat@acme.io", code=code)).status_code == 200
    replay = await h.login("pat@acme.io", code=code)
    assert replay.status_code == 401
    assert replay.json()["detail"]["code"] == "invalid_mfa"
    older = await h.login("pat@acme.io", code=h.code(secret, steps=-1))  # an earlier step is spent too
    assert older.status_code == 401
    assert "mfa.failed" not in await h.kinds(tenant)  # login failures are auth.login_failed
    assert (await h.kinds(tenant)).count("auth.login_failed") == 2


# --- API keys ------------------------------------------------------------------------------------------


async def api_key(h: Harness, *, days: int | None = 30) -> tuple[uuid.UUID, str, str]:
    from aitrading.gateway.identity.schemas import ApiKeyCreate

    tenant = await h.tenant()
    bot = await h.user(tenant, "bot@acme.io", role="api_user")
    created = await h.identity.api_keys.create(
        tenant, ApiKeyCreate(user_id=bot.id, name="bot", scopes=["trade"], expires_in_days=days), actor="test"
    )
    return tenant, created.key, str(created.id)


async def test_expired_api_key_is_refused_and_audited(h: Harness) -> None:
    tenant, key, _ = await api_key(h, days=1)
    assert (await h.client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 200
    h.clock.advance(86_401)
    resp = await h.client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert resp.status_code == 401
    assert resp.json()["detail"] == "invalid API key: API key expired"
    assert await invalid_token_reasons(h, tenant) == ["API key expired"]


async def test_revoked_api_key_is_refused_at_once_even_while_cached(h: Harness) -> None:
    tenant, key, key_id = await api_key(h)
    assert (await h.client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 200
    await h.identity.api_keys.revoke(tenant, uuid.UUID(key_id), actor="test")
    resp = await h.client.get("/api/v1/auth/me", headers={"Authorization": f"ApiKey {key}"})
    assert resp.status_code == 401
    assert "revoked" in resp.json()["detail"]
    assert "apikey.revoked" in await h.kinds(tenant)
    h.clock.advance(120)  # after the cache entries age out, the database still says revoked
    assert (await h.client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 401


async def test_unknown_or_malformed_api_keys_are_refused(h: Harness) -> None:
    _, key, _ = await api_key(h)
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for bad, reason in ((wrong_secret, "unknown API key"), ("aitk_nope", "malformed API key")):
        resp = await h.client.get("/api/v1/auth/me", headers={"X-API-Key": bad})
        assert resp.status_code == 401
        assert reason in resp.json()["detail"]


# --- roles into the Principal ----------------------------------------------------------------------------


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "client": ("10.0.0.1", 1)})


async def test_analyst_and_portfolio_manager_roles_end_up_in_the_principal(h: Harness) -> None:
    tenant = await h.tenant("fund", tier="pro")
    await h.user(tenant, "ann@fund.io", role="analyst")
    await h.user(tenant, "pm@fund.io", role="portfolio_manager")
    for email, role in (("ann@fund.io", "analyst"), ("pm@fund.io", "portfolio_manager")):
        token = (await h.tokens(email, tenant="fund"))["access_token"]
        principal = await h.identity.authenticator.authenticate(
            request_with({"Authorization": f"Bearer {token}"})
        )
        assert principal.roles == frozenset({role})
        assert principal.tenant == str(tenant)
        assert principal.tier == "pro"
        assert principal.mfa is False
        assert principal.has_role(role)


# --- key rotation ------------------------------------------------------------------------------------------


async def test_rotation_keeps_old_tokens_valid_until_they_expire_then_drops_the_old_key(h: Harness) -> None:
    _, old_pair = await signed_in(h)
    old_kid = jwt.get_unverified_header(old_pair["access_token"])["kid"]
    new_kid = await h.identity.rotate_signing_key(actor="test")
    assert new_kid != old_kid
    jwks = (await h.client.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    assert (await h.me(old_pair["access_token"])).status_code == 200
    new_pair = await h.tokens("pat@acme.io")
    assert jwt.get_unverified_header(new_pair["access_token"])["kid"] == new_kid
    h.clock.advance(15 * 60 + 6)
    assert [k["kid"] for k in (await h.client.get("/.well-known/jwks.json")).json()["keys"]] == [new_kid]
    assert "security.signing_key_rotated" in await h.kinds(None)


async def test_keys_older_than_the_maximum_age_rotate_by_themselves(tmp_path: Path) -> None:
    async with harness(tmp_path, signing_key_max_age_s=3600) as h:
        _, pair = await signed_in(h)
        first = jwt.get_unverified_header(pair["access_token"])["kid"]
        h.clock.advance(3601)
        later = await h.tokens("pat@acme.io")
        assert jwt.get_unverified_header(later["access_token"])["kid"] != first


# --- speed -------------------------------------------------------------------------------------------------


async def test_verifying_an_access_token_asks_the_database_nothing(h: Harness) -> None:
    _, pair = await signed_in(h)
    request = request_with({"Authorization": f"Bearer {pair['access_token']}"})
    authenticate = h.identity.authenticator.authenticate
    await authenticate(request)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(h.db.engine.sync_engine, "before_cursor_execute", count)
    n = 500
    started = time.perf_counter()
    for _ in range(n):
        await authenticate(request)
    per_call_us = (time.perf_counter() - started) / n * 1e6
    sa.event.remove(h.db.engine.sync_engine, "before_cursor_execute", count)
    # A figure, not a pass/fail on wall-clock time (shared CI machines); the property tested is "no I/O".
    print(f"access-token verification: {per_call_us:.0f} µs per request (in-process cache)")
    assert statements == []
