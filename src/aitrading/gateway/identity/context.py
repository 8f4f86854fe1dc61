"""What every part of the identity service shares: storage, clock, settings, crypto, audit, throttle."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.common.clock import Clock
from aitrading.gateway.identity.config import IdentityConfig
from aitrading.gateway.identity.crypto import SecretBox
from aitrading.gateway.identity.passwords import Passwords
from aitrading.gateway.identity.signing import SigningKeys
from aitrading.gateway.identity.throttle import LoginThrottle
from aitrading.gateway.identity.tokens import AccessTokens
from aitrading.storage.audit import AuditLog
from aitrading.storage.cache import Cache
from aitrading.storage.oltp import Database

__all__ = ["CREDENTIAL_SETTING", "IdentityContext", "SecurityAudit", "allow_credential_lookup"]

CREDENTIAL_SETTING = "app.credential_hash"
_SET_CONFIG = sa.text("SELECT set_config(:name, :value, true)")


async def allow_credential_lookup(session: AsyncSession, credential_hash: str) -> None:
    """Let the transaction read the refresh-token or API-key row with this hash before its tenant is known.

    The `credential_lookup` policies reveal exactly that row, read-only; no-op on SQLite.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_SET_CONFIG, {"name": CREDENTIAL_SETTING, "value": credential_hash})


class SecurityAudit:
    """Security events into the tenants' hash chains; events with no trustworthy tenant go to the platform's.

    The platform chain belongs to the reserved tenant `IdentityConfig.platform_tenant_slug` ("platform"),
    created at start. Invalid tokens are audited at most `per_minute` times per client IP and reason, so a
    flood of garbage tokens cannot turn into a flood of database writes.
    """

    def __init__(self, log: AuditLog, cache: Cache, *, per_minute: int) -> None:
        self._log = log
        self._cache = cache
        self._per_minute = per_minute
        self.platform_tenant: uuid.UUID | None = None

    async def record(
        self, tenant: uuid.UUID | str | None, actor: str, kind: str, payload: dict[str, Any]
    ) -> None:
        """Append one event to `tenant`'s chain, or to the platform chain when `tenant` is None."""
        target = tenant if tenant is not None else self.platform_tenant
        if target is None:
            raise RuntimeError("the identity service is not started (no platform tenant)")
        await self._log.append(target, actor[:200], kind, payload)

    async def invalid_credential(
        self, tenant: str | None, ip: str | None, reason: str, payload: dict[str, Any]
    ) -> bool:
        """Audit a rejected token or key unless this IP spent its per-minute budget; return whether it did."""
        count = await self._cache.incr(f"idn:audit:bad:{ip}:{reason[:40]}", 1, ttl=60)
        if count > self._per_minute:
            return False
        await self.record(
            tenant, f"ip:{ip or 'unknown'}", "security.invalid_token", {"reason": reason, **payload}
        )
        return True


@dataclass(frozen=True, slots=True)
class IdentityContext:
    """The collaborators of the identity components."""

    db: Database
    cache: Cache
    clock: Clock
    config: IdentityConfig
    passwords: Passwords
    mfa_box: SecretBox
    keys: SigningKeys
    tokens: AccessTokens
    throttle: LoginThrottle
    audit: SecurityAudit
