"""Tenants and users: provisioning, listing, disabling, unlocking; quota checks against the tenant's tier.

Disabling a user or a tenant also ends what is already signed in: the sessions are revoked in the database,
their ids and the users' API keys go on the cache's denylist, so live access tokens stop working at once
(on the shared Redis cache; a gateway with an in-process cache sees revocations made by another process
when the 15-minute access tokens expire and API-key cache entries age out).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.common.errors import BadInputError, NotFoundError, PermissionDeniedError
from aitrading.gateway.identity.context import IdentityContext
from aitrading.gateway.identity.errors import ConflictError
from aitrading.gateway.identity.passwords import check_password_policy
from aitrading.gateway.identity.schemas import TenantPublic, UserCreate, UserPublic
from aitrading.gateway.identity.throttle import account_key
from aitrading.gateway.identity.tiers import quota_of
from aitrading.storage.oltp import Tenant, User, ensure_tenant, set_tenant
from aitrading.storage.oltp.models_identity import ApiKey, AuthSession, UserLoginState

__all__ = ["Directory", "tenant_public", "user_public"]


def tenant_public(t: Tenant) -> TenantPublic:
    return TenantPublic(
        id=t.id, slug=t.slug, name=t.name, tier=t.tier, disabled=t.disabled, created_at=t.created_at
    )


def user_public(u: User, state: UserLoginState | None = None) -> UserPublic:
    return UserPublic(
        id=u.id,
        tenant_id=u.tenant_id,
        email=u.email,
        role=u.role,
        disabled=u.disabled,
        mfa_enabled=u.mfa_enabled_at is not None,
        created_at=u.created_at,
        locked_until=state.locked_until if state is not None else None,
        last_login_at=state.last_login_at if state is not None else None,
    )


def _parse_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


class Directory:
    """Tenants and their users."""

    def __init__(self, ctx: IdentityContext) -> None:
        self._ctx = ctx

    # ----------------------------------------------------------------- tenants

    async def create_tenant(self, slug: str, name: str, tier: str, *, actor: str) -> TenantPublic:
        """Create a tenant; an existing slug is a `ConflictError`."""
        quota_of(tier)
        now = self._ctx.clock.utcnow()
        async with self._ctx.db.session() as s:
            if await s.scalar(sa.select(Tenant.id).where(Tenant.slug == slug)) is not None:
                raise ConflictError(f"tenant {slug!r} already exists")
            tenant = await ensure_tenant(s, slug, name, tier=tier, now=now)
            out = tenant_public(tenant)
        await self._ctx.audit.record(out.id, actor, "tenant.created", {"slug": slug, "tier": tier})
        return out

    async def list_tenants(self) -> list[TenantPublic]:
        async with self._ctx.db.session() as s:
            rows = await s.scalars(sa.select(Tenant).order_by(Tenant.slug))
            return [tenant_public(t) for t in rows]

    async def tenant(self, ref: str | uuid.UUID) -> TenantPublic:
        """Return the tenant with this id or slug."""
        tid = ref if isinstance(ref, uuid.UUID) else _parse_uuid(ref)
        async with self._ctx.db.session() as s:
            cond = Tenant.id == tid if tid is not None else Tenant.slug == str(ref)
            tenant = await s.scalar(sa.select(Tenant).where(cond))
            if tenant is None:
                raise NotFoundError(f"no tenant {ref!s}")
            return tenant_public(tenant)

    async def disable_tenant(self, ref: str | uuid.UUID, *, actor: str) -> TenantPublic:
        """Disable a tenant and end every session and API key of its users."""
        current = await self.tenant(ref)
        if current.slug == self._ctx.config.platform_tenant_slug:
            raise BadInputError("the platform tenant cannot be disabled")
        async with self._ctx.db.session(current.id) as s:
            tenant = await s.get_one(Tenant, current.id)
            tenant.disabled = True
            user_ids = list(await s.scalars(sa.select(User.id).where(User.tenant_id == current.id)))
            sids, keys = await self._revoke_credentials(s, current.id, user_ids, "tenant_disabled")
            out = tenant_public(tenant)
        await self.deny(sids, keys)
        await self._ctx.audit.record(out.id, actor, "tenant.disabled", {"sessions_revoked": len(sids)})
        return out

    # ----------------------------------------------------------------- users

    async def create_user(
        self, tenant_id: uuid.UUID, data: UserCreate, *, actor: str, may_create_platform_admin: bool = False
    ) -> UserPublic:
        """Create a user in `tenant_id` after the password policy and the tier's user quota allow it."""
        if data.role == "platform_admin" and not may_create_platform_admin:
            raise PermissionDeniedError("only a platform admin can create platform admins")
        check_password_policy(
            data.password, min_length=self._ctx.config.min_password_length, email=data.email
        )
        password_hash = await self._ctx.passwords.hash(data.password)
        now = self._ctx.clock.utcnow()
        async with self._ctx.db.session(tenant_id) as s:
            tenant = await s.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFoundError(f"no tenant {tenant_id}")
            if tenant.disabled:
                raise BadInputError(f"tenant {tenant.slug} is disabled")
            count = await s.scalar(
                sa.select(sa.func.count()).select_from(User).where(User.tenant_id == tenant_id)
            )
            quota = quota_of(tenant.tier)
            if (count or 0) >= quota.max_users:
                raise PermissionDeniedError(f"the {quota.name} tier allows {quota.max_users} users")
            taken = await s.scalar(
                sa.select(User.id).where(User.tenant_id == tenant_id, User.email == data.email)
            )
            if taken is not None:
                raise ConflictError(f"a user with e-mail {data.email} already exists in this tenant")
            user = User(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                email=data.email,
                password_hash=password_hash,
                role=data.role,
                created_at=now,
            )
            s.add(user)
            await s.flush()
            out = user_public(user)
        await self._ctx.audit.record(
            tenant_id, actor, "user.created", {"user": str(out.id), "email": out.email, "role": out.role}
        )
        return out

    async def list_users(self, tenant_id: uuid.UUID) -> list[UserPublic]:
        async with self._ctx.db.session(tenant_id) as s:
            rows = await s.execute(
                sa.select(User, UserLoginState)
                .outerjoin(UserLoginState, UserLoginState.user_id == User.id)
                .where(User.tenant_id == tenant_id)
                .order_by(User.email)
            )
            return [user_public(u, st) for u, st in rows]

    async def user(self, tenant_id: uuid.UUID, ref: str | uuid.UUID) -> UserPublic:
        """Return the user of `tenant_id` with this id or e-mail."""
        async with self._ctx.db.session(tenant_id) as s:
            user = await self._user(s, tenant_id, ref)
            state = await s.get(UserLoginState, user.id)
            return user_public(user, state)

    async def disable_user(self, tenant_id: uuid.UUID, ref: str | uuid.UUID, *, actor: str) -> UserPublic:
        """Disable a user and end its sessions and API keys."""
        async with self._ctx.db.session(tenant_id) as s:
            user = await self._user(s, tenant_id, ref)
            user.disabled = True
            sids, keys = await self._revoke_credentials(s, tenant_id, [user.id], "user_disabled")
            out = user_public(user, await s.get(UserLoginState, user.id))
        await self.deny(sids, keys)
        await self._ctx.audit.record(
            tenant_id, actor, "user.disabled", {"user": str(out.id), "sessions_revoked": len(sids)}
        )
        return out

    async def unlock_user(self, tenant_id: uuid.UUID, ref: str | uuid.UUID, *, actor: str) -> UserPublic:
        """Lift a lockout and forget the user's failed attempts."""
        async with self._ctx.db.session(tenant_id) as s:
            user = await self._user(s, tenant_id, ref)
            state = await s.get(UserLoginState, user.id)
            if state is not None:
                state.failed_count = 0
                state.locked_until = None
            tenant = await s.get_one(Tenant, tenant_id)
            out = user_public(user, state)
        await self._ctx.throttle.reset(account_key(tenant.slug, out.email))
        await self._ctx.audit.record(tenant_id, actor, "user.unlocked", {"user": str(out.id)})
        return out

    # ----------------------------------------------------------------- revocation

    async def deny(self, sids: Iterable[uuid.UUID], keys: Iterable[uuid.UUID]) -> None:
        """Put sessions and API keys on the cache's denylist (until any token of theirs is dead anyway)."""
        cfg = self._ctx.config
        for sid in sids:
            await self._ctx.cache.set(f"idn:deny:sid:{sid}", b"1", ttl=cfg.access_ttl_s + cfg.leeway_s)
        for key in keys:
            await self._ctx.cache.set(f"idn:deny:key:{key}", b"1", ttl=max(1.0, cfg.api_key_cache_s * 2))

    async def _revoke_credentials(
        self, s: AsyncSession, tenant_id: uuid.UUID, user_ids: list[uuid.UUID], reason: str
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        if not user_ids:
            return [], []
        now = self._ctx.clock.utcnow()
        live_sessions = sa.and_(
            AuthSession.tenant_id == tenant_id,
            AuthSession.user_id.in_(user_ids),
            AuthSession.revoked_at.is_(None),
        )
        sids = list(await s.scalars(sa.select(AuthSession.id).where(live_sessions)))
        if sids:
            await s.execute(
                sa.update(AuthSession)
                .where(AuthSession.id.in_(sids))
                .values(revoked_at=now, revoke_reason=reason)
                .execution_options(synchronize_session=False)
            )
        keys = list(
            await s.scalars(
                sa.select(ApiKey.id).where(
                    ApiKey.tenant_id == tenant_id, ApiKey.user_id.in_(user_ids), ApiKey.revoked_at.is_(None)
                )
            )
        )
        return sids, keys

    async def _user(self, s: AsyncSession, tenant_id: uuid.UUID, ref: str | uuid.UUID) -> User:
        uid = ref if isinstance(ref, uuid.UUID) else _parse_uuid(ref)
        cond = User.id == uid if uid is not None else User.email == str(ref).strip().lower()
        await set_tenant(s, tenant_id)
        user = await s.scalar(sa.select(User).where(User.tenant_id == tenant_id, cond))
        if user is None:
            raise NotFoundError(f"no user {ref!s} in this tenant")
        return user
