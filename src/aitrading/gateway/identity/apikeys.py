"""API keys of `api_user` users: `aitk_<id>_<secret>`, stored as SHA-256, scoped, expiring, revocable.

SHA-256 rather than argon2: the secret is 256 random bits from `secrets`, so there is nothing to slow an
attacker down on (guessing is infeasible at any speed), while argon2 would cost tens of milliseconds and
tens of MiB per request. The hash covers the whole key, id included; lookups go by hash, so the database
never sees the secret and a timing difference in the index lookup tells nothing useful.

Verified keys are cached in the gateway's memory for `api_key_cache_s`; revocation puts the key on the
shared cache's denylist, checked on every request, so a revoked key stops at once where the cache is shared.
`last_used_at` is written at most every `api_key_touch_s`, not per request.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import SQLAlchemyError

from aitrading.common.auth import Principal
from aitrading.common.errors import NotFoundError, PermissionDeniedError
from aitrading.gateway.identity.context import IdentityContext, allow_credential_lookup
from aitrading.gateway.identity.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from aitrading.gateway.identity.tiers import quota_of
from aitrading.gateway.identity.tokens import TokenRejected, hash_secret
from aitrading.storage.oltp import Tenant, User, set_tenant
from aitrading.storage.oltp.models_identity import ApiKey

_log = structlog.get_logger("gateway.identity.apikeys")

__all__ = ["API_KEY_PREFIX", "SCOPE_ROLE_PREFIX", "ApiKeyStore", "parse_api_key"]

API_KEY_PREFIX: Final = "aitk_"
SCOPE_ROLE_PREFIX: Final = "scope:"
"""An API key's scopes reach `Principal.roles` as `scope:read`, `scope:trade` beside the role `api_user`."""
_KEY = re.compile(r"^aitk_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$")


def parse_api_key(key: str) -> uuid.UUID | None:
    """Return the id inside a well-formed key, or None."""
    m = _KEY.match(key)
    return uuid.UUID(m.group(1)) if m else None


def _public(row: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=f"{API_KEY_PREFIX}{row.id.hex}",
        scopes=sorted(row.scope_set),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


_MAX_CACHED: Final = 10_000


@dataclass(frozen=True, slots=True)
class _Cached:
    key_id: uuid.UUID
    principal: Principal
    expires_at: datetime | None
    cached_until_ns: int


class ApiKeyStore:
    """Create, list, revoke and authenticate API keys."""

    def __init__(self, ctx: IdentityContext) -> None:
        self._ctx = ctx
        self._verified: dict[str, _Cached] = {}
        self._touched: dict[uuid.UUID, int] = {}

    async def create(self, tenant_id: uuid.UUID, data: ApiKeyCreate, *, actor: str) -> ApiKeyCreated:
        """Create a key for an `api_user` of `tenant_id`; the whole key is in the answer, and only there."""
        ctx = self._ctx
        now = ctx.clock.utcnow()
        key_id = uuid.uuid4()
        key = f"{API_KEY_PREFIX}{key_id.hex}_{secrets.token_urlsafe(32)}"
        async with ctx.db.session(tenant_id) as s:
            tenant = await s.get_one(Tenant, tenant_id)
            user = await s.scalar(sa.select(User).where(User.tenant_id == tenant_id, User.id == data.user_id))
            if user is None:
                raise NotFoundError(f"no user {data.user_id} in this tenant")
            if user.role != "api_user" or user.disabled:
                raise PermissionDeniedError("API keys are for active users with the role api_user")
            live = await s.scalar(
                sa.select(sa.func.count())
                .select_from(ApiKey)
                .where(
                    ApiKey.tenant_id == tenant_id,
                    ApiKey.revoked_at.is_(None),
                    sa.or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
                )
            )
            quota = quota_of(tenant.tier)
            if (live or 0) >= quota.max_api_keys:
                raise PermissionDeniedError(
                    f"the {quota.name} tier allows {quota.max_api_keys} active API keys"
                )
            row = ApiKey(
                id=key_id,
                tenant_id=tenant_id,
                user_id=user.id,
                name=data.name,
                key_hash=hash_secret(key),
                scopes=" ".join(sorted(set(data.scopes))),
                created_at=now,
                created_by=actor[:200],
                expires_at=None
                if data.expires_in_days is None
                else now + timedelta(days=data.expires_in_days),
            )
            s.add(row)
            await s.flush()
            out = ApiKeyCreated(**_public(row).model_dump(), key=key)
        await ctx.audit.record(
            tenant_id,
            actor,
            "apikey.created",
            {"key": str(key_id), "user": str(user.id), "scopes": out.scopes},
        )
        return out

    async def list(self, tenant_id: uuid.UUID, *, user_id: uuid.UUID | None = None) -> list[ApiKeyPublic]:
        """Return the tenant's keys (or one user's), newest first."""
        async with self._ctx.db.session(tenant_id) as s:
            q = sa.select(ApiKey).where(ApiKey.tenant_id == tenant_id)
            if user_id is not None:
                q = q.where(ApiKey.user_id == user_id)
            rows = await s.scalars(q.order_by(ApiKey.created_at.desc()))
            return [_public(r) for r in rows]

    async def revoke(self, tenant_id: uuid.UUID, key_id: uuid.UUID, *, actor: str) -> ApiKeyPublic:
        """Revoke a key of `tenant_id` (idempotent); it stops working at once on a shared cache."""
        now = self._ctx.clock.utcnow()
        async with self._ctx.db.session(tenant_id) as s:
            row = await s.scalar(sa.select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id))
            if row is None:
                raise NotFoundError(f"no API key {key_id} in this tenant")
            if row.revoked_at is None:
                row.revoked_at = now
            out = _public(row)
        cfg = self._ctx.config
        await self._ctx.cache.set(f"idn:deny:key:{key_id}", b"1", ttl=max(1.0, cfg.api_key_cache_s * 2))
        self._verified = {h: c for h, c in self._verified.items() if c.key_id != key_id}
        await self._ctx.audit.record(tenant_id, actor, "apikey.revoked", {"key": str(key_id)})
        return out

    async def authenticate(self, key: str) -> tuple[Principal, uuid.UUID]:
        """Return the principal (the key's user) and the key id; raise `TokenRejected` with the reason."""
        ctx = self._ctx
        key_id = parse_api_key(key)
        if key_id is None:
            raise TokenRejected("malformed API key")
        digest = hash_secret(key)
        now = ctx.clock.utcnow()
        cached = self._verified.get(digest)
        if cached is not None and cached.cached_until_ns > ctx.clock.monotonic_ns():
            if await ctx.cache.get(f"idn:deny:key:{key_id}") is not None:
                self._verified.pop(digest, None)
                raise TokenRejected("API key revoked", tenant=cached.principal.tenant)
            if cached.expires_at is not None and cached.expires_at <= now:
                raise TokenRejected("API key expired", tenant=cached.principal.tenant)
            return cached.principal, key_id
        async with ctx.db.session() as s:
            await allow_credential_lookup(s, digest)
            row = await s.scalar(sa.select(ApiKey).where(ApiKey.key_hash == digest))
            if row is None:
                raise TokenRejected("unknown API key")
            await set_tenant(s, row.tenant_id)
            user = await s.get_one(User, row.user_id)
            tenant = await s.get_one(Tenant, row.tenant_id)
            tid = str(row.tenant_id)
            if row.revoked_at is not None:
                raise TokenRejected("API key revoked", tenant=tid)
            if row.expires_at is not None and row.expires_at <= now:
                raise TokenRejected("API key expired", tenant=tid)
            if user.disabled or tenant.disabled or user.role != "api_user":
                raise TokenRejected("API key's user or tenant is disabled", tenant=tid)
            last = self._touched.get(row.id)
            touch = (
                last is None or ctx.clock.monotonic_ns() - last >= ctx.config.api_key_touch_s * 1_000_000_000
            )
            row_id, row_tenant = row.id, row.tenant_id
            roles = {"api_user", *(SCOPE_ROLE_PREFIX + sc for sc in row.scope_set)}
            principal = Principal(subject=str(user.id), tenant=tid, roles=frozenset(roles), tier=tenant.tier)
            expires_at = row.expires_at
        if touch:
            await self._touch(row_id, row_tenant, now)
        self._remember(digest, _Cached(key_id, principal, expires_at, 0))
        return principal, key_id

    async def _touch(self, key_id: uuid.UUID, tenant: uuid.UUID, now: datetime) -> None:
        """Record `last_used_at` in a write transaction of its own; a failure must not refuse the key.

        Writing in the read transaction above made SQLite answer "database is locked" (a read transaction
        cannot become a writer once another connection committed), turning a valid key into a 503.
        """
        ctx = self._ctx
        try:
            async with ctx.db.session(tenant) as s:
                await s.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        except SQLAlchemyError as exc:
            _log.warning("api_key_touch_failed", key=str(key_id), error=f"{type(exc).__name__}: {exc}"[:300])
            return
        self._touched[key_id] = ctx.clock.monotonic_ns()

    def _remember(self, digest: str, entry: _Cached) -> None:
        now_ns = self._ctx.clock.monotonic_ns()
        if len(self._verified) >= _MAX_CACHED:
            self._verified = {h: c for h, c in self._verified.items() if c.cached_until_ns > now_ns}
            while len(self._verified) >= _MAX_CACHED:  # still full of live entries: drop the oldest
                self._verified.pop(next(iter(self._verified)))
        until = now_ns + int(self._ctx.config.api_key_cache_s * 1_000_000_000)
        self._verified[digest] = _Cached(entry.key_id, entry.principal, entry.expires_at, until)
