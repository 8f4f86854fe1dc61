"""Tenant scoping of database work, and tenant provisioning.

On PostgreSQL every tenant-owned table is under row-level security: a row is visible and writable only while
the transaction's `app.tenant_id` setting names its tenant. `set_tenant` sets it with `set_config(..., true)`,
which lasts until the transaction ends, so a pooled connection never carries one tenant's scope into another
request. The policies bind only a role that is not a superuser, has no BYPASSRLS and owns no table, so the
services connect as such a role (`aitrading.storage.oltp.roles`, ADR 0015), never as the schema owner.
SQLite has no row-level security; there the queries' own `tenant_id` filters are the only guard, which is
acceptable for the single-tenant embedded deployment.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aitrading.common.errors import BadInputError
from aitrading.storage.oltp.models import Tenant

__all__ = ["DEVICE_SETTING", "TENANT_SETTING", "allow_device_lookup", "ensure_tenant", "set_tenant"]

TENANT_SETTING = "app.tenant_id"
DEVICE_SETTING = "app.device_id"

# Slugs appear in URLs and as bus subject tokens, so no dots, wildcards or upper case.
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

_SET_CONFIG = sa.text("SELECT set_config(:name, :value, true)")


def _dialect_name(target: AsyncSession | AsyncConnection) -> str:
    if isinstance(target, AsyncConnection):
        return target.dialect.name
    return target.get_bind().dialect.name


async def set_tenant(target: AsyncSession | AsyncConnection, tenant_id: uuid.UUID | str) -> None:
    """Scope the current transaction to `tenant_id` (PostgreSQL row-level security; no-op on SQLite)."""
    value = str(tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(tenant_id))
    if _dialect_name(target) == "postgresql":
        await target.execute(_SET_CONFIG, {"name": TENANT_SETTING, "value": value})


async def allow_device_lookup(target: AsyncSession | AsyncConnection, device_id: str) -> None:
    """Let the current transaction read the device row `device_id` before its tenant is known.

    Agents present a device id and key, not a tenant; the `device_lookup` policy makes exactly that one
    row readable (not writable) so authentication can find its tenant. No-op on SQLite.
    """
    if _dialect_name(target) == "postgresql":
        await target.execute(_SET_CONFIG, {"name": DEVICE_SETTING, "value": device_id})


async def ensure_tenant(
    session: AsyncSession, slug: str, name: str, *, tier: str = "free", now: datetime | None = None
) -> Tenant:
    """Return the tenant with `slug`, creating it if absent; safe to call concurrently and repeatedly.

    An existing tenant is returned as it is (its name and tier are not overwritten).
    """
    if not _SLUG.match(slug):
        raise BadInputError(
            f"invalid tenant slug {slug!r}: use 1-63 lower-case letters, digits and inner hyphens"
        )
    existing = await _tenant_by_slug(session, slug)
    if existing is not None:
        return existing
    tenant = Tenant(slug=slug, name=name, tier=tier)
    if now is not None:
        tenant.created_at = now
    try:
        async with session.begin_nested():
            session.add(tenant)
    except IntegrityError:
        # Another transaction created it between our read and our insert.
        raced = await _tenant_by_slug(session, slug)
        if raced is None:
            raise
        return raced
    return tenant


async def _tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    result = await session.execute(sa.select(Tenant).where(Tenant.slug == slug))
    return result.scalar_one_or_none()
