"""Shared set-up of the identity tests: a migrated SQLite database, a test clock, the HTTP API in process.

Imported by the `test_gateway_identity_*` modules (pytest puts this folder on `sys.path`); not a test module.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher, Type
from fastapi import FastAPI

from aitrading.common.clock import TestClock
from aitrading.gateway.identity import IdentityConfig, IdentityService, Passwords, build_router
from aitrading.gateway.identity.mfa import Totp
from aitrading.gateway.identity.schemas import UserCreate, UserPublic
from aitrading.storage.audit import AuditLog
from aitrading.storage.cache import MemoryCache
from aitrading.storage.oltp import Database

SECRET = "test-only-identity-secret-0123456789abcdef"
PASSWORD = "correct horse battery staple"
# Cheap argon2id parameters keep the suite fast; production uses argon2-cffi's RFC 9106 defaults.
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1, type=Type.ID)


@dataclass
class Harness:
    clock: TestClock
    db: Database
    cache: MemoryCache
    identity: IdentityService
    client: httpx.AsyncClient

    async def tenant(self, slug: str = "acme", tier: str = "free") -> uuid.UUID:
        t = await self.identity.directory.create_tenant(slug, slug.title(), tier, actor="test")
        return t.id

    async def user(
        self, tenant: uuid.UUID, email: str, role: str = "portfolio_manager", password: str = PASSWORD
    ) -> UserPublic:
        data = UserCreate(email=email, password=password, role=role)  # type: ignore[arg-type]
        return await self.identity.directory.create_user(
            tenant, data, actor="test", may_create_platform_admin=True
        )

    async def login(
        self, email: str, *, tenant: str = "acme", password: str = PASSWORD, code: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"tenant": tenant, "email": email, "password": password}
        if code is not None:
            body["code"] = code
        return await self.client.post("/api/v1/auth/login", json=body)

    async def tokens(self, email: str, **kw: Any) -> dict[str, Any]:
        resp = await self.login(email, **kw)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        return out

    async def me(self, access_token: str) -> httpx.Response:
        return await self.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})

    def code(self, secret: str, steps: int = 0) -> str:
        return Totp(secret).code_at(self.clock.now_ns() // 1_000_000_000 + steps * 30)

    async def enrol_mfa(self, access_token: str) -> tuple[str, dict[str, Any]]:
        """Enrol and confirm TOTP for the token's user; return the secret and the confirm answer."""
        auth = {"Authorization": f"Bearer {access_token}"}
        enrol = await self.client.post("/api/v1/auth/mfa/enrol", headers=auth)
        assert enrol.status_code == 200, enrol.text
        secret = enrol.json()["secret"]
        confirm = await self.client.post(
            "/api/v1/auth/mfa/confirm", headers=auth, json={"code": self.code(secret)}
        )
        assert confirm.status_code == 200, confirm.text
        self.clock.advance(30)  # the next code belongs to a later step (codes are single-use)
        return secret, confirm.json()

    async def events(self, tenant: uuid.UUID | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Return (kind, payload) of every audit event of `tenant` (None: the platform chain)."""
        log = AuditLog(self.db, self.clock)
        records = await log.records(tenant or self.identity.platform_tenant, limit=10_000)
        return [(r.kind, r.payload_dict()) for r in records]

    async def kinds(self, tenant: uuid.UUID | None = None) -> list[str]:
        return [k for k, _ in await self.events(tenant)]


@asynccontextmanager
async def harness(tmp_path: Path, **overrides: Any) -> AsyncIterator[Harness]:
    clock = TestClock()
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'identity.sqlite'}", clock=clock, migrate_on_start=True)
    await db.start()
    cache = MemoryCache(clock)
    config = IdentityConfig(secret_key=SECRET, **overrides)
    identity = IdentityService(db, cache, clock, config, passwords=Passwords(CHEAP))
    await identity.start()
    app = FastAPI()
    app.include_router(build_router(identity))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")
    try:
        yield Harness(clock, db, cache, identity, client)
    finally:
        await client.aclose()
        await identity.stop()
        await db.stop()
