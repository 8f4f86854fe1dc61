"""TOTP enrolment, step-up verification and removal for a signed-in user.

Enrolment stores a new secret (encrypted, bound to the user's id) as pending; the first valid code confirms
it, enables MFA, hands out 10 backup codes (shown once) and marks the session as having proved TOTP. Step-up
(`verify`) proves TOTP again and returns a fresh access token with `mfa=true` for the same session.
Wrong codes count towards the account's throttle and lockout like wrong passwords.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.common.errors import BadInputError, NotFoundError
from aitrading.gateway.identity.context import IdentityContext
from aitrading.gateway.identity.errors import AuthenticationError, ConflictError, ThrottledError
from aitrading.gateway.identity.mfa import Totp, new_backup_codes, new_totp_secret, normalise_backup_code
from aitrading.gateway.identity.schemas import AccessTokenPublic, MfaConfirmed, MfaEnrolment
from aitrading.gateway.identity.sessions import ClientInfo, SessionManager, now_s
from aitrading.gateway.identity.throttle import account_key
from aitrading.gateway.identity.tokens import AccessClaims
from aitrading.storage.oltp import Tenant, User
from aitrading.storage.oltp.models_identity import AuthSession, MfaBackupCode, UserLoginState

__all__ = ["MfaFlows"]


class MfaFlows:
    """Enrol, confirm, step up and disable TOTP for the user behind an access token."""

    def __init__(self, ctx: IdentityContext, sessions: SessionManager) -> None:
        self._ctx = ctx
        self._sessions = sessions

    async def enrol(self, claims: AccessClaims) -> MfaEnrolment:
        """Start enrolment: store a new pending secret and return it with its `otpauth://` URI."""
        ctx = self._ctx
        tenant_id, user_id = _ids(claims)
        secret = new_totp_secret()
        async with ctx.db.session(tenant_id) as s:
            user = await _user(s, tenant_id, user_id)
            if user.mfa_enabled_at is not None:
                raise ConflictError("MFA is already enabled; disable it first to enrol a new authenticator")
            user.mfa_secret = ctx.mfa_box.encrypt(secret, f"mfa:{user.id}")
            user.mfa_last_step = None
            email = user.email
        await ctx.audit.record(tenant_id, f"user:{user_id}", "mfa.enrol_started", {})
        uri = Totp(secret).provisioning_uri(email, ctx.config.totp_issuer)
        return MfaEnrolment(secret=secret, otpauth_uri=uri)

    async def confirm(self, claims: AccessClaims, code: str, client: ClientInfo) -> MfaConfirmed:
        """Enable MFA with the first valid code; return the backup codes and an `mfa=true` access token."""
        ctx = self._ctx
        tenant_id, user_id = _ids(claims)
        await self._not_throttled(claims, client)
        codes = new_backup_codes()
        now = ctx.clock.utcnow()
        async with ctx.db.session(tenant_id) as s:
            user = await _user(s, tenant_id, user_id)
            if user.mfa_enabled_at is not None:
                raise ConflictError("MFA is already enabled")
            if user.mfa_secret is None:
                raise BadInputError("no MFA enrolment is pending: call /mfa/enrol first")
            secret = ctx.mfa_box.open(user.mfa_secret, f"mfa:{user.id}", "the TOTP secret")
            match = Totp(secret).verify(code, now_s(ctx), user.mfa_last_step)
            if match is not None:
                user.mfa_enabled_at, user.mfa_last_step = now, match.step
                await s.execute(sa.delete(MfaBackupCode).where(MfaBackupCode.user_id == user.id))
                s.add_all(_backup_rows(ctx, user, codes, now))
                await _mark_session(s, claims, now)
        if match is None:
            await self._failed(claims, client, "bad mfa code (confirm)")
            raise AuthenticationError("invalid TOTP code", "invalid_mfa")
        await ctx.audit.record(tenant_id, f"user:{user_id}", "mfa.enrolled", {"backup_codes": len(codes)})
        access = await self._access(claims)
        return MfaConfirmed(backup_codes=codes, access_token=access)

    async def verify(self, claims: AccessClaims, code: str, client: ClientInfo) -> AccessTokenPublic:
        """Step up: prove TOTP (or a backup code) again; return a fresh access token with `mfa=true`."""
        ctx = self._ctx
        tenant_id, user_id = _ids(claims)
        await self._not_throttled(claims, client)
        now = ctx.clock.utcnow()
        async with ctx.db.session(tenant_id) as s:
            user = await _user(s, tenant_id, user_id)
            if user.mfa_enabled_at is None:
                raise BadInputError("MFA is not enabled for this user")
            factor = await self._sessions.second_factor(s, user, code)
            if factor is not None:
                await _mark_session(s, claims, now)
        if factor is None:
            await self._failed(claims, client, "bad mfa code (step-up)")
            raise AuthenticationError("invalid TOTP or backup code", "invalid_mfa")
        await ctx.audit.record(
            tenant_id, f"user:{user_id}", "mfa.verified", {"factor": factor, "session": claims.sid}
        )
        return await self._access(claims)

    async def disable(self, claims: AccessClaims, code: str, client: ClientInfo) -> None:
        """Turn MFA off after one more valid TOTP or backup code; the backup codes go with it."""
        ctx = self._ctx
        tenant_id, user_id = _ids(claims)
        await self._not_throttled(claims, client)
        async with ctx.db.session(tenant_id) as s:
            user = await _user(s, tenant_id, user_id)
            if user.mfa_enabled_at is None:
                raise BadInputError("MFA is not enabled for this user")
            factor = await self._sessions.second_factor(s, user, code)
            if factor is not None:
                user.mfa_secret = user.mfa_enabled_at = user.mfa_last_step = None
                await s.execute(sa.delete(MfaBackupCode).where(MfaBackupCode.user_id == user.id))
        if factor is None:
            await self._failed(claims, client, "bad mfa code (disable)")
            raise AuthenticationError("invalid TOTP or backup code", "invalid_mfa")
        await ctx.audit.record(tenant_id, f"user:{user_id}", "mfa.disabled", {"factor": factor})

    # ----------------------------------------------------------------- helpers

    async def _access(self, claims: AccessClaims) -> AccessTokenPublic:
        tenant_id, user_id = _ids(claims)
        async with self._ctx.db.session(tenant_id) as s:
            user = await _user(s, tenant_id, user_id)
            tenant = await s.get_one(Tenant, tenant_id)
        # Only called right after the session proved TOTP.
        return await self._sessions.issue_access(user, tenant, uuid.UUID(claims.sid), mfa=True)

    async def _account(self, claims: AccessClaims) -> tuple[Tenant, User]:
        tenant_id, user_id = _ids(claims)
        async with self._ctx.db.session(tenant_id) as s:
            return await s.get_one(Tenant, tenant_id), await _user(s, tenant_id, user_id)

    async def _not_throttled(self, claims: AccessClaims, client: ClientInfo) -> None:
        tenant, user = await self._account(claims)
        wait = await self._ctx.throttle.retry_after(account_key(tenant.slug, user.email), client.ip)
        async with self._ctx.db.session(tenant.id) as s:
            state = await s.get(UserLoginState, user.id)
        now = self._ctx.clock.utcnow()
        if state is not None and state.locked_until is not None and state.locked_until > now:
            wait = max(wait, int((state.locked_until - now).total_seconds()) + 1)
        if wait:
            await self._ctx.audit.record(
                tenant.id, f"user:{user.id}", "mfa.throttled", {"retry_after": wait, **client.audit()}
            )
            raise ThrottledError(wait)

    async def _failed(self, claims: AccessClaims, client: ClientInfo, reason: str) -> None:
        tenant, user = await self._account(claims)
        await self._ctx.audit.record(tenant.id, f"user:{user.id}", "mfa.failed", {"reason": reason})
        await self._sessions.record_failure(tenant.slug, tenant, user, user.email, client, reason)


def _ids(claims: AccessClaims) -> tuple[uuid.UUID, uuid.UUID]:
    if claims.principal.tenant is None:
        raise BadInputError("this needs a user session of a tenant")
    return uuid.UUID(claims.principal.tenant), uuid.UUID(claims.principal.subject)


async def _user(s: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = await s.scalar(sa.select(User).where(User.tenant_id == tenant_id, User.id == user_id))
    if user is None or user.disabled:
        raise NotFoundError("no such user")
    return user


async def _mark_session(s: AsyncSession, claims: AccessClaims, now: datetime) -> None:
    await s.execute(
        sa.update(AuthSession)
        .where(AuthSession.id == uuid.UUID(claims.sid), AuthSession.revoked_at.is_(None))
        .values(mfa_at=now)
        .execution_options(synchronize_session=False)
    )


def _backup_rows(ctx: IdentityContext, user: User, codes: list[str], now: datetime) -> list[MfaBackupCode]:
    return [
        MfaBackupCode(
            id=uuid.uuid4(),
            tenant_id=user.tenant_id,
            user_id=user.id,
            code_hash=ctx.mfa_box.mac(normalise_backup_code(c)),
            created_at=now,
        )
        for c in codes
    ]
