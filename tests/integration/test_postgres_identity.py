"""The identity tables on a real PostgreSQL: forced row-level security, the credential lookup policies,
and the whole sign-in flow as a plain (non-owner, non-superuser) application role.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher, Type
from fastapi import FastAPI

from aitrading.common.clock import TestClock
from aitrading.gateway.identity import IdentityConfig, IdentityService, Passwords, build_router
from aitrading.gateway.identity.mfa import Totp
from aitrading.gateway.identity.schemas import ApiKeyCreate, UserCreate
from aitrading.storage.audit import AuditLog
from aitrading.storage.cache import MemoryCache
from aitrading.storage.oltp import Database
from aitrading.storage.oltp.models import Base
from aitrading.storage.oltp.models_identity import IDENTITY_TENANT_TABLES

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def seed(admin: asyncpg.Connection) -> dict[str, uuid.UUID]:
    """Give tenants A and B one row in every identity table (as superuser, so RLS does not apply)."""
    ids = {}
    for slug in ("a", "b"):
        tenant, user, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        ids[slug] = tenant
        await admin.execute(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)", tenant, f"tenant-{slug}"
        )
        await admin.execute(
            "INSERT INTO users (id, tenant_id, email, password_hash, role) "
            "VALUES ($1, $2, 'u@x.io', 'h', 'api_user')",
            user,
            tenant,
        )
        await admin.execute(
            "INSERT INTO auth_sessions (id, tenant_id, user_id, created_at, expires_at) "
            "VALUES ($1, $2, $3, now(), now() + interval '1 day')",
            session,
            tenant,
            user,
        )
        await admin.execute(
            "INSERT INTO refresh_tokens (id, tenant_id, session_id, token_hash, issued_at, expires_at) "
            "VALUES ($1, $2, $3, $4, now(), now() + interval '1 day')",
            uuid.uuid4(),
            tenant,
            session,
            sha(f"refresh-{slug}"),
        )
        await admin.execute(
            "INSERT INTO api_keys (id, tenant_id, user_id, name, key_hash, scopes, created_at, created_by) "
            "VALUES ($1, $2, $3, 'k', $4, 'read', now(), 'test')",
            uuid.uuid4(),
            tenant,
            user,
            sha(f"key-{slug}"),
        )
        await admin.execute(
            "INSERT INTO mfa_backup_codes (id, tenant_id, user_id, code_hash, created_at) "
            "VALUES ($1, $2, $3, 'c', now())",
            uuid.uuid4(),
            tenant,
            user,
        )
        await admin.execute(
            "INSERT INTO user_login_states (user_id, tenant_id, failed_count) VALUES ($1, $2, 3)",
            user,
            tenant,
        )
    return ids


async def count_as(
    conn: asyncpg.Connection, role: str, sql: str, *args: object, settings: dict[str, str] | None = None
) -> int:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role}")
        for name, value in (settings or {}).items():
            await conn.execute("SELECT set_config($1, $2, true)", name, value)
        value = await conn.fetchval(sql, *args)
    return int(value)


async def test_identity_tables_are_tenant_owned_and_under_forced_row_level_security(
    admin: asyncpg.Connection,
) -> None:
    with_tenant = {t.name for t in Base.metadata.sorted_tables if "tenant_id" in t.columns}
    assert set(IDENTITY_TENANT_TABLES) <= with_tenant
    assert {"signing_keys", *IDENTITY_TENANT_TABLES} - with_tenant == {"signing_keys"}
    rows = await admin.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
    )
    flags = {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}
    for table in IDENTITY_TENANT_TABLES:
        assert flags[table] == (True, True), table
    assert flags["signing_keys"] == (False, False)  # platform-wide, no tenant
    policies = {
        (r["tablename"], r["policyname"], r["cmd"]) for r in await admin.fetch("SELECT * FROM pg_policies")
    }
    for table in IDENTITY_TENANT_TABLES:
        assert (table, "tenant_isolation", "ALL") in policies
    assert ("refresh_tokens", "credential_lookup", "SELECT") in policies
    assert ("api_keys", "credential_lookup", "SELECT") in policies


async def test_inside_tenant_as_transaction_the_rows_of_tenant_b_are_invisible(
    admin: asyncpg.Connection, app_role: str
) -> None:
    ids = await seed(admin)
    a, b = ids["a"], ids["b"]
    for table in IDENTITY_TENANT_TABLES:
        of_b = f"SELECT count(*) FROM {table} WHERE tenant_id = $1"
        scoped_a = {"app.tenant_id": str(a)}
        assert await count_as(admin, app_role, of_b, b, settings=scoped_a) == 0, table
        assert await count_as(admin, app_role, f"SELECT count(*) FROM {table}", settings=scoped_a) == 1, table
        assert await count_as(admin, app_role, f"SELECT count(*) FROM {table}") == 0, table
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == 2, table


async def test_credential_lookup_reveals_only_the_named_row_and_only_for_reading(
    admin: asyncpg.Connection, app_role: str
) -> None:
    await seed(admin)
    lookup = {"app.credential_hash": sha("refresh-b")}
    assert await count_as(admin, app_role, "SELECT count(*) FROM refresh_tokens", settings=lookup) == 1
    assert await count_as(admin, app_role, "SELECT count(*) FROM api_keys", settings=lookup) == 0
    assert await count_as(admin, app_role, "SELECT count(*) FROM auth_sessions", settings=lookup) == 0
    key_lookup = {"app.credential_hash": sha("key-a")}
    assert await count_as(admin, app_role, "SELECT count(*) FROM api_keys", settings=key_lookup) == 1
    async with admin.transaction():
        await admin.execute(f"SET LOCAL ROLE {app_role}")
        await admin.execute("SELECT set_config('app.credential_hash', $1, true)", sha("refresh-b"))
        updated = await admin.execute("UPDATE refresh_tokens SET used_at = now()")
    assert updated == "UPDATE 0"


async def test_the_sign_in_flow_works_as_the_application_role_under_rls(app_url: str, tmp_path: Path) -> None:
    clock = TestClock()
    db = Database(app_url, clock=clock)
    await db.start()
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1, type=Type.ID)
    identity = IdentityService(
        db, MemoryCache(clock), clock, IdentityConfig(secret_key="s" * 40), passwords=Passwords(cheap)
    )
    await identity.start()
    app = FastAPI()
    app.include_router(build_router(identity))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")
    try:
        a = (await identity.directory.create_tenant("tenant-a", "A", "pro", actor="test")).id
        b = (await identity.directory.create_tenant("tenant-b", "B", "pro", actor="test")).id
        for tenant in (a, b):
            for email, role in (("pat@x.io", "portfolio_manager"), ("bot@x.io", "api_user")):
                data = UserCreate(email=email, password=PASSWORD, role=role)  # type: ignore[arg-type]
                await identity.directory.create_user(tenant, data, actor="test")

        login = {"tenant": "tenant-a", "email": "pat@x.io", "password": PASSWORD}
        pair = (await client.post("/api/v1/auth/login", json=login)).json()
        me = (
            await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
        ).json()
        assert me["tenant"]["id"] == str(a)

        # MFA enrolment and a TOTP login, all under RLS.
        auth = {"Authorization": f"Bearer {pair['access_token']}"}
        secret = (await client.post("/api/v1/auth/mfa/enrol", headers=auth)).json()["secret"]
        code = Totp(secret).code_at(clock.now_ns() // 10**9)
        assert (
            await client.post("/api/v1/auth/mfa/confirm", headers=auth, json={"code": code})
        ).status_code == 200
        clock.advance(30)
        code = Totp(secret).code_at(clock.now_ns() // 10**9)
        pair = (await client.post("/api/v1/auth/login", json={**login, "code": code})).json()
        assert pair["mfa"] is True

        # Refresh tokens are found through the credential lookup policy, then rotated in the tenant's scope.
        second = (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        ).json()
        assert second["refresh_token"].startswith("rt_")
        reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert reuse.status_code == 401
        after_reuse = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        assert after_reuse.status_code == 401

        # API keys likewise.
        bot = await identity.directory.user(b, "bot@x.io")
        created = await identity.api_keys.create(
            b, ApiKeyCreate(user_id=bot.id, name="k", scopes=["read"]), actor="test"
        )
        me_b = (await client.get("/api/v1/auth/me", headers={"X-API-Key": created.key})).json()
        assert me_b["tenant"]["id"] == str(b)
        assert me_b["roles"] == ["api_user", "scope:read"]

        # Failed logins are audited and the chains verify.
        assert (
            await client.post("/api/v1/auth/login", json={**login, "password": "x" * 12})
        ).status_code == 401
        log = AuditLog(db, clock)
        kinds = [r.kind for r in await log.records(a)]
        assert "security.refresh_reuse" in kinds
        assert "auth.login_failed" in kinds
        assert (await log.verify(a)).ok
        assert (await log.verify(b)).ok
        # A tenant-B user cannot see tenant A's sessions even through the service's own queries.
        assert await identity.api_keys.list(a) == []
    finally:
        await client.aclose()
        await identity.stop()
        await db.stop()
