"""`IdentityService`: the one facade the gateway routes, the CLI and tests use for everything identity.

It builds the parts from the platform's database, cache and clock: signing keys and access tokens,
sessions (login, refresh, logout), MFA flows, the tenant and user directory, API keys, the authenticator.
Starting it creates the platform tenant (whose audit chain takes events with no trustworthy tenant) and a
signing key when there is none (or rotates one past its maximum age).
"""

from __future__ import annotations

import uuid
from typing import Any

from aitrading.common.clock import Clock
from aitrading.common.config import PlatformConfig
from aitrading.common.lifecycle import Component
from aitrading.gateway.identity.apikeys import ApiKeyStore
from aitrading.gateway.identity.authenticate import AuthContext, Authenticator
from aitrading.gateway.identity.config import IdentityConfig
from aitrading.gateway.identity.context import IdentityContext, SecurityAudit
from aitrading.gateway.identity.crypto import SecretBox
from aitrading.gateway.identity.enrolment import MfaFlows
from aitrading.gateway.identity.passwords import Passwords
from aitrading.gateway.identity.schemas import MePublic
from aitrading.gateway.identity.sessions import SessionManager
from aitrading.gateway.identity.signing import SigningKeys
from aitrading.gateway.identity.throttle import LoginThrottle
from aitrading.gateway.identity.tiers import quota_of
from aitrading.gateway.identity.tokens import AccessTokens
from aitrading.gateway.identity.users import Directory
from aitrading.storage.audit import AuditLog
from aitrading.storage.cache import Cache
from aitrading.storage.oltp import Database, ensure_tenant

__all__ = ["IdentityService"]


class IdentityService(Component):
    """Users, sessions, MFA, API keys and signing keys of the platform."""

    name = "identity"

    def __init__(
        self,
        db: Database,
        cache: Cache,
        clock: Clock,
        config: IdentityConfig,
        *,
        passwords: Passwords | None = None,
        audit_log: AuditLog | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        keys = SigningKeys(
            db,
            SecretBox(config.secret_key, "signing-keys"),
            clock,
            verify_window_s=config.access_ttl_s + config.leeway_s,
            max_age_s=config.signing_key_max_age_s,
            reload_min_interval_s=config.key_reload_min_interval_s,
        )
        tokens = AccessTokens(
            keys,
            clock,
            issuer=config.issuer,
            audience=config.audience,
            ttl_s=config.access_ttl_s,
            leeway_s=config.leeway_s,
        )
        throttle = LoginThrottle(
            cache,
            clock,
            window_s=config.throttle_window_s,
            account_after=config.account_throttle_after,
            ip_after=config.ip_throttle_after,
            max_delay_s=config.max_throttle_delay_s,
        )
        audit = SecurityAudit(
            audit_log or AuditLog(db, clock), cache, per_minute=config.invalid_token_audits_per_minute
        )
        self.ctx = IdentityContext(
            db=db,
            cache=cache,
            clock=clock,
            config=config,
            passwords=passwords or Passwords(),
            mfa_box=SecretBox(config.secret_key, "mfa"),
            keys=keys,
            tokens=tokens,
            throttle=throttle,
            audit=audit,
        )
        self.sessions = SessionManager(self.ctx)
        self.mfa = MfaFlows(self.ctx, self.sessions)
        self.directory = Directory(self.ctx)
        self.api_keys = ApiKeyStore(self.ctx)
        self.authenticator = Authenticator(tokens, self.api_keys, cache, audit)

    @classmethod
    def from_platform(
        cls, config: PlatformConfig, db: Database, cache: Cache, clock: Clock, **overrides: Any
    ) -> IdentityService:
        """Build the service from the root config (`security.secret_key`) and the kernel's resources."""
        return cls(db, cache, clock, IdentityConfig.from_platform(config, **overrides))

    async def _on_start(self) -> None:
        await self.ensure_platform_tenant()
        await self.ctx.keys.ensure_active()

    async def _on_stop(self) -> None:
        """Nothing is held but the caches, which go with the process."""

    async def ensure_platform_tenant(self) -> uuid.UUID:
        """Create (once) the platform tenant whose chain audits events with no trustworthy tenant."""
        slug = self.config.platform_tenant_slug
        async with self.ctx.db.session() as s:
            tenant = await ensure_tenant(s, slug, "Platform", tier="enterprise", now=self.ctx.clock.utcnow())
            tid = tenant.id
        self.ctx.audit.platform_tenant = tid
        return tid

    @property
    def platform_tenant(self) -> uuid.UUID:
        tid = self.ctx.audit.platform_tenant
        if tid is None:
            raise RuntimeError("the identity service is not started")
        return tid

    async def rotate_signing_key(self, *, actor: str) -> str:
        """Start signing with a new key now; older keys keep verifying until their tokens expire."""
        if self.ctx.audit.platform_tenant is None:
            await self.ensure_platform_tenant()
        old = self.ctx.keys.active_kid
        kid = await self.ctx.keys.rotate()
        await self.ctx.audit.record(
            None, actor, "security.signing_key_rotated", {"kid": kid, "previous": old}
        )
        return kid

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify access tokens (for `/.well-known/jwks.json`)."""
        return self.ctx.keys.jwks()

    async def me(self, auth: AuthContext) -> MePublic:
        """Describe the caller: user, tenant, roles, MFA state, tier and quotas."""
        p = auth.principal
        if p.tenant is None:
            raise RuntimeError("user principals always carry a tenant")
        tenant = await self.directory.tenant(uuid.UUID(p.tenant))
        user = await self.directory.user(tenant.id, uuid.UUID(p.subject))
        return MePublic(
            user=user,
            tenant=tenant,
            roles=sorted(p.roles),
            mfa=p.mfa,
            tier=tenant.tier,
            quota=quota_of(tenant.tier).as_dict(),
            auth="token" if auth.claims is not None else "api_key",
        )
