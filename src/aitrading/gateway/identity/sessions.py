"""Sign-in sessions: login (password + second factor), refresh-token rotation with reuse detection, logout.

A login creates an `auth_sessions` row (the refresh-token family) and its first refresh token. Every refresh
marks the presented token used (a conditional UPDATE, so two concurrent uses cannot both win) and hands out
the next one. Presenting a used token means it was copied: the whole family is revoked, its session id
goes on the cache's denylist so its live access tokens die too, and `security.refresh_reuse` is audited.

Failures answer with one generic message whether the tenant or user exists or not, after the same argon2
work; lockouts and throttling answer 429 alike for real and unknown accounts (see `throttle`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.gateway.identity.context import IdentityContext, allow_credential_lookup
from aitrading.gateway.identity.errors import AuthenticationError, ThrottledError
from aitrading.gateway.identity.mfa import Totp, looks_like_backup_code, normalise_backup_code
from aitrading.gateway.identity.schemas import AccessTokenPublic, LoginRequest, TokenPair
from aitrading.gateway.identity.throttle import account_key
from aitrading.gateway.identity.tokens import REFRESH_PREFIX, AccessClaims, hash_secret, new_refresh_token
from aitrading.storage.oltp import Tenant, User, set_tenant
from aitrading.storage.oltp.models_identity import AuthSession, MfaBackupCode, RefreshToken, UserLoginState

__all__ = ["ClientInfo", "SessionManager"]

_NS = 1_000_000_000
_INVALID = "invalid credentials"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Where a request came from (for throttling and the audit trail)."""

    ip: str | None = None
    user_agent: str | None = None

    def audit(self) -> dict[str, Any]:
        return {"ip": self.ip, "user_agent": (self.user_agent or "")[:200] or None}


def _secs(delta: timedelta) -> int:
    return max(1, int(-(-delta.total_seconds() // 1)))


class SessionManager:
    """Login, refresh, logout and second-factor checks."""

    def __init__(self, ctx: IdentityContext) -> None:
        self._ctx = ctx

    # ----------------------------------------------------------------- login

    async def login(self, req: LoginRequest, client: ClientInfo) -> TokenPair:
        """Check the password (and TOTP or backup code when enrolled); return access and refresh tokens."""
        ctx = self._ctx
        slug, email = req.tenant.strip().lower(), req.email.strip().lower()
        tenant, user = await self._account(slug, email, client)
        live = user if user is not None and not user.disabled else None
        check = await ctx.passwords.verify(live.password_hash if live is not None else None, req.password)
        if live is None or tenant is None or not check.ok:
            await self.record_failure(slug, tenant, user, email, client, _failure_reason(tenant, user))
            raise AuthenticationError(_INVALID)
        outcome, factor = "ok", None
        refresh = new_refresh_token()
        async with ctx.db.session(tenant.id) as s:
            row = await s.get_one(User, live.id)
            if row.mfa_enabled_at is not None:
                factor = await self.second_factor(s, row, req.code) if req.code else None
                outcome = "ok" if factor else "bad_mfa" if req.code else "mfa_required"
            if outcome == "ok":
                if check.new_hash is not None:
                    row.password_hash = check.new_hash
                session = await self._start_session(s, row, refresh, client, mfa=factor is not None)
        if outcome == "mfa_required":
            raise AuthenticationError("a TOTP code or backup code is required", "mfa_required")
        if outcome == "bad_mfa":
            await self.record_failure(slug, tenant, live, email, client, "bad mfa code")
            raise AuthenticationError("invalid TOTP or backup code", "invalid_mfa")
        await ctx.throttle.reset(account_key(slug, email))
        await ctx.audit.record(
            tenant.id,
            f"user:{live.id}",
            "auth.login_ok",
            {
                "email": email,
                "session": str(session.id),
                "mfa": factor,
                "rehashed": check.new_hash is not None,
                **client.audit(),
            },
        )
        access = await self.issue_access(live, tenant, session.id, mfa=factor is not None)
        return TokenPair(
            access_token=access.access_token,
            expires_in=access.expires_in,
            refresh_token=refresh,
            mfa=access.mfa,
        )

    async def _account(self, slug: str, email: str, client: ClientInfo) -> tuple[Tenant | None, User | None]:
        """Find the tenant and user signing in; 429 while the account or IP is throttled or locked."""
        ctx = self._ctx
        async with ctx.db.session() as s:
            tenant = await s.scalar(sa.select(Tenant).where(Tenant.slug == slug))
        tid = tenant.id if tenant is not None else None
        attempt = {"tenant": slug, "email": email, **client.audit()}
        wait = await ctx.throttle.retry_after(account_key(slug, email), client.ip)
        if wait:
            payload = {**attempt, "retry_after": wait}
            await ctx.audit.record(tid, f"ip:{client.ip}", "auth.login_throttled", payload)
            raise ThrottledError(wait)
        if tenant is None or tenant.disabled:
            return tenant, None
        async with ctx.db.session(tenant.id) as s:
            user = await s.scalar(sa.select(User).where(User.tenant_id == tenant.id, User.email == email))
            state = await s.get(UserLoginState, user.id) if user is not None else None
        now = ctx.clock.utcnow()
        if user is not None and state is not None and state.locked_until and state.locked_until > now:
            await ctx.audit.record(tid, f"user:{user.id}", "auth.login_locked", attempt)
            raise ThrottledError(_secs(state.locked_until - now))
        return tenant, user

    async def _start_session(
        self, s: AsyncSession, user: User, refresh: str, client: ClientInfo, *, mfa: bool
    ) -> AuthSession:
        now = self._ctx.clock.utcnow()
        state = await self._state(s, user)
        state.failed_count, state.locked_until, state.last_login_at = 0, None, now
        session = AuthSession(
            id=uuid.uuid4(),
            tenant_id=user.tenant_id,
            user_id=user.id,
            created_at=now,
            expires_at=now + timedelta(seconds=self._ctx.config.session_max_age_s),
            mfa_at=now if mfa else None,
            client_ip=(client.ip or "")[:64] or None,
            user_agent=(client.user_agent or "")[:256] or None,
        )
        s.add(session)
        s.add(self._refresh_row(user.tenant_id, session.id, refresh, now))
        return session

    async def record_failure(
        self, slug: str, tenant: Tenant | None, user: User | None, email: str, client: ClientInfo, reason: str
    ) -> None:
        """Count a failed sign-in or second-factor check; lock the account after `lockout_after` of them.

        `slug` is the tenant as the client named it (the throttle key of unknown tenants too).
        """
        ctx, cfg = self._ctx, self._ctx.config
        acct = account_key(slug, email)
        window_failures = await ctx.throttle.failed(acct, client.ip)
        now = ctx.clock.utcnow()
        failures, locked = window_failures, False
        if tenant is not None and user is not None:
            async with ctx.db.session(tenant.id) as s:
                state = await self._state(s, user)
                state.failed_count += 1
                state.last_failed_at = now
                failures = state.failed_count
                if failures >= cfg.lockout_after:
                    state.locked_until = now + timedelta(seconds=cfg.lockout_s)
                    state.failed_count = 0
                    locked = True
        elif window_failures >= cfg.lockout_after:
            locked = True
        if locked:
            await ctx.throttle.lock(acct, cfg.lockout_s)
        tid = tenant.id if tenant is not None else None
        actor = f"user:{user.id}" if user is not None else f"ip:{client.ip}"
        payload = {"tenant": slug, "email": email, "reason": reason, "failures": failures, **client.audit()}
        await ctx.audit.record(tid, actor, "auth.login_failed", payload)
        if locked:
            await ctx.audit.record(tid, actor, "auth.locked", {**payload, "locked_for_s": cfg.lockout_s})

    # ----------------------------------------------------------------- refresh and logout

    async def refresh(self, token: str, client: ClientInfo) -> TokenPair:
        """Rotate a refresh token: mark it used and return a new pair; a reused token revokes its family."""
        ctx, cfg = self._ctx, self._ctx.config
        if not token.startswith(REFRESH_PREFIX) or len(token) > 100:
            await ctx.audit.invalid_credential(None, client.ip, "malformed refresh token", {})
            raise AuthenticationError("invalid refresh token", "invalid_token")
        digest = hash_secret(token)
        now = ctx.clock.utcnow()
        outcome, new = "unknown", new_refresh_token()
        user: User | None = None
        tenant: Tenant | None = None
        session: AuthSession | None = None
        async with ctx.db.session() as s:
            await allow_credential_lookup(s, digest)
            row = await s.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == digest))
            if row is not None:
                await set_tenant(s, row.tenant_id)
                session = await s.get_one(AuthSession, row.session_id)
                user = await s.get_one(User, session.user_id)
                tenant = await s.get_one(Tenant, row.tenant_id)
                outcome = await self._rotate(s, row, session, user, tenant, new)
        if outcome == "unknown":
            await ctx.audit.invalid_credential(None, client.ip, "unknown refresh token", {})
            raise AuthenticationError("invalid refresh token", "invalid_token")
        assert session is not None
        assert user is not None
        assert tenant is not None
        actor, sid = f"user:{user.id}", str(session.id)
        if outcome == "reuse":
            await self._deny_sid(session.id)
            await ctx.audit.record(
                tenant.id, actor, "security.refresh_reuse", {"session": sid, **client.audit()}
            )
            raise AuthenticationError("refresh token reuse detected; the session is revoked", "invalid_token")
        if outcome != "ok":
            await ctx.audit.record(
                tenant.id,
                actor,
                "security.invalid_token",
                {"reason": f"refresh token {outcome}", "session": sid},
            )
            raise AuthenticationError(f"refresh token {outcome}", "invalid_token")
        mfa = session.mfa_at is not None and now - session.mfa_at < timedelta(seconds=cfg.mfa_max_age_s)
        access = await self.issue_access(user, tenant, session.id, mfa=mfa)
        await ctx.audit.record(tenant.id, actor, "token.refreshed", {"session": sid, **client.audit()})
        return TokenPair(
            access_token=access.access_token, expires_in=access.expires_in, refresh_token=new, mfa=mfa
        )

    async def _rotate(
        self, s: AsyncSession, row: RefreshToken, session: AuthSession, user: User, tenant: Tenant, new: str
    ) -> str:
        """Mark `row` used and add `new` to its family; return the outcome (ok, reuse, revoked, expired)."""
        now = self._ctx.clock.utcnow()
        marked = await s.execute(
            sa.update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if marked.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
            if session.revoked_at is None:
                session.revoked_at, session.revoke_reason = now, "refresh_reuse"
            return "reuse"
        if session.revoked_at is not None:
            return "revoked"
        if row.expires_at <= now or session.expires_at <= now:
            return "expired"
        if user.disabled or tenant.disabled:
            session.revoked_at, session.revoke_reason = now, "user_disabled"
            return "revoked"
        session.last_refreshed_at = now
        s.add(self._refresh_row(row.tenant_id, session.id, new, now))
        return "ok"

    async def logout(self, claims: AccessClaims | None, refresh_token: str | None, client: ClientInfo) -> int:
        """Revoke the caller's session (by access token and/or refresh token); return sessions revoked."""
        ctx = self._ctx
        now = ctx.clock.utcnow()
        revoked: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = []
        targets: set[uuid.UUID] = set()
        tenant_id: uuid.UUID | None = None
        if claims is not None:
            targets.add(uuid.UUID(claims.sid))
            tenant_id = uuid.UUID(claims.principal.tenant or "")
            ttl = max(1, claims.exp - now_s(ctx) + ctx.config.leeway_s)
            await ctx.cache.set(f"idn:deny:jti:{claims.jti}", b"1", ttl=ttl)
        async with ctx.db.session() as s:
            if refresh_token and refresh_token.startswith(REFRESH_PREFIX):
                digest = hash_secret(refresh_token)
                await allow_credential_lookup(s, digest)
                row = await s.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == digest))
                if row is not None and (tenant_id is None or row.tenant_id == tenant_id):
                    targets.add(row.session_id)
                    tenant_id = row.tenant_id
            if tenant_id is not None and targets:
                await set_tenant(s, tenant_id)
                rows = await s.scalars(sa.select(AuthSession).where(AuthSession.id.in_(targets)))
                for sess in rows:
                    if sess.revoked_at is None:
                        sess.revoked_at, sess.revoke_reason = now, "logout"
                    revoked.append((sess.id, sess.tenant_id, sess.user_id))
        if claims is None and not revoked:
            raise AuthenticationError(
                "nothing to log out: send the access token or the refresh token", "invalid_token"
            )
        for sid, tid, uid in revoked:
            await self._deny_sid(sid)
            await ctx.audit.record(
                tid, f"user:{uid}", "token.revoked", {"session": str(sid), "reason": "logout"}
            )
        return len(revoked)

    # ----------------------------------------------------------------- shared pieces

    async def second_factor(self, s: AsyncSession, user: User, code: str) -> str | None:
        """Check a TOTP or backup code of `user` inside `s` and consume it; return which kind, or None."""
        ctx = self._ctx
        now = ctx.clock.utcnow()
        if looks_like_backup_code(code):
            digest = ctx.mfa_box.mac(normalise_backup_code(code))
            used = await s.execute(
                sa.update(MfaBackupCode)
                .where(
                    MfaBackupCode.user_id == user.id,
                    MfaBackupCode.code_hash == digest,
                    MfaBackupCode.used_at.is_(None),
                )
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            return "backup" if used.rowcount == 1 else None  # type: ignore[attr-defined]
        if user.mfa_secret is None:
            return None
        secret = ctx.mfa_box.open(user.mfa_secret, f"mfa:{user.id}", "the TOTP secret")
        match = Totp(secret).verify(code, now_s(ctx), user.mfa_last_step)
        if match is None:
            return None
        # Conditional, so two requests racing with the same code cannot both pass (replay protection).
        won = await s.execute(
            sa.update(User)
            .where(User.id == user.id, sa.or_(User.mfa_last_step.is_(None), User.mfa_last_step < match.step))
            .values(mfa_last_step=match.step)
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined]
            return None
        user.mfa_last_step = match.step
        return "totp"

    async def issue_access(
        self, user: User, tenant: Tenant, sid: uuid.UUID, *, mfa: bool
    ) -> AccessTokenPublic:
        """Sign an access token for `user` in session `sid`."""
        issued = await self._ctx.tokens.issue(
            subject=str(user.id),
            tenant=str(tenant.id),
            roles=[user.role],
            sid=str(sid),
            mfa=mfa,
            tier=tenant.tier,
        )
        return AccessTokenPublic(access_token=issued.token, expires_in=self._ctx.tokens.ttl_s, mfa=mfa)

    async def _deny_sid(self, sid: uuid.UUID) -> None:
        cfg = self._ctx.config
        await self._ctx.cache.set(f"idn:deny:sid:{sid}", b"1", ttl=cfg.access_ttl_s + cfg.leeway_s)

    def _refresh_row(self, tenant_id: uuid.UUID, sid: uuid.UUID, token: str, now: datetime) -> RefreshToken:
        return RefreshToken(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            session_id=sid,
            token_hash=hash_secret(token),
            issued_at=now,
            expires_at=now + timedelta(seconds=self._ctx.config.refresh_ttl_s),
        )

    async def _state(self, s: AsyncSession, user: User) -> UserLoginState:
        """Return the user's login state row, locked for update, creating it if missing."""
        dialect = s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await s.execute(
            insert(UserLoginState)
            .values(user_id=user.id, tenant_id=user.tenant_id, failed_count=0)
            .on_conflict_do_nothing(index_elements=["user_id"])
        )
        state = await s.scalar(
            sa.select(UserLoginState)
            .where(UserLoginState.user_id == user.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert state is not None
        return state


def _failure_reason(tenant: Tenant | None, user: User | None) -> str:
    """Say (for the audit trail only) why a sign-in failed; the client always hears the same thing."""
    if tenant is None:
        return "unknown tenant"
    if tenant.disabled:
        return "tenant disabled"
    if user is None:
        return "unknown user"
    return "user disabled" if user.disabled else "bad password"


def now_s(ctx: IdentityContext) -> int:
    return ctx.clock.now_ns() // _NS
