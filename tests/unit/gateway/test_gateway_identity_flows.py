"""Identity over HTTP: login, refresh rotation, logout, MFA enrolment and step-up, users and API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from identity_harness import PASSWORD, Harness, harness

from aitrading.gateway.identity import IdentityService, Passwords
from aitrading.storage.audit import AuditLog
from aitrading.storage.oltp import User
from aitrading.storage.oltp.models_identity import MfaBackupCode, SigningKey


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(tmp_path) as hh:
        yield hh


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- login, refresh, logout ------------------------------------------------------------------------------


async def test_login_returns_a_token_pair_whose_access_token_describes_the_user(h: Harness) -> None:
    tenant = await h.tenant("acme", tier="pro")
    user = await h.user(tenant, "Pat@Acme.io", role="portfolio_manager")
    pair = await h.tokens("PAT@acme.io")
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    assert pair["refresh_token"].startswith("rt_")
    assert pair["mfa"] is False
    me = await h.me(pair["access_token"])
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["user"]["id"] == str(user.id)
    assert body["user"]["email"] == "pat@acme.io"
    assert body["tenant"]["slug"] == "acme"
    assert body["roles"] == ["portfolio_manager"]
    assert body["tier"] == "pro"
    assert body["quota"]["max_api_keys"] == 10
    assert "auth.login_ok" in await h.kinds(tenant)


async def test_refresh_rotates_the_token_and_the_used_one_cannot_be_used_again(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    first = await h.tokens("pat@acme.io")
    h.clock.advance(60)
    resp = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200, resp.text
    second = resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await h.me(second["access_token"])).status_code == 200
    again = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 401
    assert "token.refreshed" in await h.kinds(tenant)


async def test_logout_revokes_the_session_its_access_token_and_its_refresh_token(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    pair = await h.tokens("pat@acme.io")
    resp = await h.client.post(
        "/api/v1/auth/logout",
        headers=bearer(pair["access_token"]),
        json={"refresh_token": pair["refresh_token"]},
    )
    assert resp.status_code == 204, resp.text
    me = await h.me(pair["access_token"])
    assert me.status_code == 401
    assert "revoked" in me.json()["detail"]
    refreshed = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401
    assert "token.revoked" in await h.kinds(tenant)


async def test_logout_with_only_the_refresh_token_ends_the_session(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    pair = await h.tokens("pat@acme.io")
    resp = await h.client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert resp.status_code == 204
    assert (await h.me(pair["access_token"])).status_code == 401


async def test_refresh_after_the_refresh_lifetime_is_refused(tmp_path: Path) -> None:
    async with harness(tmp_path, refresh_ttl_s=3600) as h:
        tenant = await h.tenant()
        await h.user(tenant, "pat@acme.io")
        pair = await h.tokens("pat@acme.io")
        h.clock.advance(3601)
        resp = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert resp.status_code == 401
        assert resp.json()["detail"]["reason"] == "refresh token expired"


async def test_a_changed_argon2_parameter_rehashes_the_password_at_the_next_login(
    h: Harness, tmp_path: Path
) -> None:
    tenant = await h.tenant()
    user = await h.user(tenant, "pat@acme.io")
    async with h.db.session(tenant) as s:
        before = (await s.get_one(User, user.id)).password_hash
    assert "t=1" in before
    stronger = PasswordHasher(time_cost=2, memory_cost=64, parallelism=1, type=Type.ID)
    upgraded = IdentityService(h.db, h.cache, h.clock, h.identity.config, passwords=Passwords(stronger))
    await upgraded.start()
    from aitrading.gateway.identity import ClientInfo
    from aitrading.gateway.identity.schemas import LoginRequest

    await upgraded.sessions.login(
        LoginRequest(tenant="acme", email="pat@acme.io", password=PASSWORD), ClientInfo()
    )
    async with h.db.session(tenant) as s:
        after = (await s.get_one(User, user.id)).password_hash
    assert after.startswith("$argon2id$")
    assert "t=2" in after
    assert stronger.verify(after, PASSWORD)


# --- MFA ---------------------------------------------------------------------------------------------------


async def test_mfa_enrolment_confirm_login_with_code_and_backup_code_each_once(h: Harness) -> None:
    tenant = await h.tenant()
    user = await h.user(tenant, "pat@acme.io")
    pair = await h.tokens("pat@acme.io")
    secret, confirmed = await h.enrol_mfa(pair["access_token"])
    assert len(confirmed["backup_codes"]) == 10
    assert confirmed["access_token"]["mfa"] is True

    no_code = await h.login("pat@acme.io")
    assert no_code.status_code == 401
    assert no_code.json()["detail"]["code"] == "mfa_required"

    with_code = await h.login("pat@acme.io", code=h.code(secret))
    assert with_code.status_code == 200, with_code.text
    assert with_code.json()["mfa"] is True

    h.clock.advance(30)
    backup = confirmed["backup_codes"][0]
    assert (await h.login("pat@acme.io", code=backup.lower())).status_code == 200
    assert (await h.login("pat@acme.io", code=backup)).status_code == 401  # one use only

    async with h.db.session(tenant) as s:
        stored = (await s.get_one(User, user.id)).mfa_secret or ""
        hashes = list(await s.scalars(sa.select(MfaBackupCode.code_hash)))
    assert secret not in stored
    assert stored.startswith("v1.")
    assert len(hashes) == 10
    assert all(code.replace("-", "") not in hashes for code in confirmed["backup_codes"])
    kinds = await h.kinds(tenant)
    assert {"mfa.enrol_started", "mfa.enrolled"} <= set(kinds)


async def test_step_up_returns_a_fresh_access_token_with_mfa_true_for_the_same_session(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    secret, _ = await h.enrol_mfa((await h.tokens("pat@acme.io"))["access_token"])
    pair = await h.tokens("pat@acme.io", code=h.code(secret))
    h.clock.advance(30)
    resp = await h.client.post(
        "/api/v1/auth/mfa/verify", headers=bearer(pair["access_token"]), json={"code": h.code(secret)}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["mfa"] is True
    me = (await h.me(resp.json()["access_token"])).json()
    assert me["mfa"] is True
    assert "mfa.verified" in await h.kinds(tenant)


async def test_mfa_claim_of_refreshed_tokens_lapses_after_the_mfa_max_age(tmp_path: Path) -> None:
    async with harness(tmp_path, mfa_max_age_s=3600) as h:
        tenant = await h.tenant()
        await h.user(tenant, "pat@acme.io")
        secret, _ = await h.enrol_mfa((await h.tokens("pat@acme.io"))["access_token"])
        pair = await h.tokens("pat@acme.io", code=h.code(secret))
        h.clock.advance(600)
        fresh = (
            await h.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        ).json()
        assert fresh["mfa"] is True
        h.clock.advance(3600)
        stale = (
            await h.client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        ).json()
        assert stale["mfa"] is False


async def test_mfa_disable_needs_a_valid_code_and_then_login_needs_none(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    secret, _ = await h.enrol_mfa((await h.tokens("pat@acme.io"))["access_token"])
    pair = await h.tokens("pat@acme.io", code=h.code(secret))
    h.clock.advance(30)
    wrong = await h.client.post(
        "/api/v1/auth/mfa/disable", headers=bearer(pair["access_token"]), json={"code": "000000"}
    )
    assert wrong.status_code == 401
    ok = await h.client.post(
        "/api/v1/auth/mfa/disable", headers=bearer(pair["access_token"]), json={"code": h.code(secret)}
    )
    assert ok.status_code == 204, ok.text
    assert (await h.login("pat@acme.io")).status_code == 200
    kinds = await h.kinds(tenant)
    assert "mfa.failed" in kinds
    assert "mfa.disabled" in kinds


# --- administration --------------------------------------------------------------------------------------


async def admin_with_mfa(h: Harness) -> tuple[str, str]:
    tenant = await h.tenant()
    await h.user(tenant, "boss@acme.io", role="tenant_admin")
    secret, confirmed = await h.enrol_mfa((await h.tokens("boss@acme.io"))["access_token"])
    return confirmed["access_token"]["access_token"], secret


async def test_admin_routes_need_a_session_that_proved_totp(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "boss@acme.io", role="tenant_admin")
    plain = await h.tokens("boss@acme.io")
    resp = await h.client.get("/api/v1/auth/users", headers=bearer(plain["access_token"]))
    assert resp.status_code == 403
    assert resp.json()["detail"]["code"] == "mfa_required"


async def test_analyst_cannot_administer_users(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "ann@acme.io", role="analyst")
    token = (await h.tokens("ann@acme.io"))["access_token"]
    resp = await h.client.post(
        "/api/v1/auth/users",
        headers=bearer(token),
        json={"email": "x@acme.io", "password": PASSWORD, "role": "analyst"},
    )
    assert resp.status_code == 403


async def test_tenant_admin_creates_lists_disables_and_unlocks_users(h: Harness) -> None:
    token, _ = await admin_with_mfa(h)
    auth = bearer(token)
    weak = await h.client.post(
        "/api/v1/auth/users",
        headers=auth,
        json={"email": "ann@acme.io", "password": "short", "role": "analyst"},
    )
    assert weak.status_code == 400
    assert "12 characters" in weak.json()["detail"]
    created = await h.client.post(
        "/api/v1/auth/users",
        headers=auth,
        json={"email": "Ann@acme.io", "password": PASSWORD, "role": "analyst"},
    )
    assert created.status_code == 201, created.text
    ann = created.json()
    assert ann["email"] == "ann@acme.io"
    assert "password" not in ann
    assert "password_hash" not in ann
    dup = await h.client.post(
        "/api/v1/auth/users",
        headers=auth,
        json={"email": "ann@acme.io", "password": PASSWORD, "role": "analyst"},
    )
    assert dup.status_code == 409
    escalate = await h.client.post(
        "/api/v1/auth/users",
        headers=auth,
        json={"email": "root@acme.io", "password": PASSWORD, "role": "platform_admin"},
    )
    assert escalate.status_code == 403

    listed = await h.client.get("/api/v1/auth/users", headers=auth)
    assert sorted(u["email"] for u in listed.json()) == ["ann@acme.io", "boss@acme.io"]

    ann_tokens = await h.tokens("ann@acme.io")
    disabled = await h.client.post(f"/api/v1/auth/users/{ann['id']}/disable", headers=auth)
    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True
    assert (await h.me(ann_tokens["access_token"])).status_code == 401  # live session ended
    assert (await h.login("ann@acme.io")).status_code == 401
    missing = await h.client.post(
        "/api/v1/auth/users/00000000-0000-0000-0000-000000000000/unlock", headers=auth
    )
    assert missing.status_code == 404
    tenant = (await h.identity.directory.tenant("acme")).id
    assert {"user.created", "user.disabled"} <= set(await h.kinds(tenant))


async def test_tenant_admin_cannot_act_on_another_tenant(h: Harness) -> None:
    token, _ = await admin_with_mfa(h)
    await h.tenant("other")
    resp = await h.client.get("/api/v1/auth/users?tenant=other", headers=bearer(token))
    assert resp.status_code == 403


# --- API keys --------------------------------------------------------------------------------------------


async def test_api_keys_authenticate_with_either_header_and_carry_scopes_as_roles(h: Harness) -> None:
    token, _ = await admin_with_mfa(h)
    tenant = (await h.identity.directory.tenant("acme")).id
    bot = await h.user(tenant, "bot@acme.io", role="api_user")
    resp = await h.client.post(
        "/api/v1/auth/keys",
        headers=bearer(token),
        json={"user_id": str(bot.id), "name": "reporting", "scopes": ["read"], "expires_in_days": 30},
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    key = created["key"]
    assert key.startswith(f"aitk_{created['prefix'][5:]}_")
    for headers in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}):
        me = await h.client.get("/api/v1/auth/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["roles"] == ["api_user", "scope:read"]
        assert me.json()["auth"] == "api_key"
    listed = (await h.client.get("/api/v1/auth/keys", headers=bearer(token))).json()
    assert [k["name"] for k in listed] == ["reporting"]
    assert listed[0]["last_used_at"] is not None
    assert "key" not in listed[0]
    own = (await h.client.get("/api/v1/auth/keys", headers={"X-API-Key": key})).json()
    assert [k["id"] for k in own] == [created["id"]]
    assert "apikey.created" in await h.kinds(tenant)


async def test_api_keys_are_only_for_api_users_and_limited_by_the_tier(h: Harness) -> None:
    token, _ = await admin_with_mfa(h)
    tenant = (await h.identity.directory.tenant("acme")).id
    pm = await h.user(tenant, "pm@acme.io")
    bot = await h.user(tenant, "bot@acme.io", role="api_user")
    body = {"name": "k", "scopes": ["read", "trade"]}
    assert (
        await h.client.post("/api/v1/auth/keys", headers=bearer(token), json={**body, "user_id": str(pm.id)})
    ).status_code == 403
    for _ in range(2):  # the free tier allows two active keys
        ok = await h.client.post(
            "/api/v1/auth/keys", headers=bearer(token), json={**body, "user_id": str(bot.id)}
        )
        assert ok.status_code == 201
    third = await h.client.post(
        "/api/v1/auth/keys", headers=bearer(token), json={**body, "user_id": str(bot.id)}
    )
    assert third.status_code == 403
    assert "free tier" in third.json()["detail"]
    bad_scope = await h.client.post(
        "/api/v1/auth/keys", headers=bearer(token), json={**body, "scopes": ["admin"], "user_id": str(bot.id)}
    )
    assert bad_scope.status_code == 422


# --- keys at rest and the chain ---------------------------------------------------------------------------


async def test_signing_private_keys_are_stored_encrypted_and_the_jwks_is_public(h: Harness) -> None:
    async with h.db.session() as s:
        rows = list(await s.scalars(sa.select(SigningKey)))
    assert len(rows) == 1
    assert "PRIVATE KEY" not in rows[0].private_key
    assert "PUBLIC KEY" in rows[0].public_key
    for path in ("/.well-known/jwks.json", "/api/v1/auth/jwks"):
        jwks = (await h.client.get(path)).json()
        assert [k["kid"] for k in jwks["keys"]] == [rows[0].kid]
        assert jwks["keys"][0]["kty"] == "OKP"
        assert jwks["keys"][0]["alg"] == "EdDSA"
        assert "d" not in jwks["keys"][0]


async def test_the_tenant_and_platform_chains_verify_after_a_session_of_security_events(h: Harness) -> None:
    tenant = await h.tenant()
    await h.user(tenant, "pat@acme.io")
    await h.login("pat@acme.io", password="wrong password!")
    await h.login("nobody@acme.io")
    await h.login("pat@acme.io", tenant="no-such-tenant")
    pair = await h.tokens("pat@acme.io")
    await h.client.post("/api/v1/auth/logout", headers=bearer(pair["access_token"]))
    log = AuditLog(h.db, h.clock)
    assert (await log.verify(tenant)).ok
    assert (await log.verify(h.identity.platform_tenant)).ok
    kinds = await h.kinds(tenant)
    assert kinds.count("auth.login_failed") == 2
    platform = await h.events(None)
    assert [p["reason"] for k, p in platform if k == "auth.login_failed"] == ["unknown tenant"]
