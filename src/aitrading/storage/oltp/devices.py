"""Agent devices: registration, provisioning of known keys, and key authentication.

Device keys are hashed with plain SHA-256, not a password hash such as argon2. A password hash exists to
slow down guessing of low-entropy secrets chosen by people; a device key is 256 random bits from `secrets`,
so no amount of hashing speed makes guessing feasible, while argon2 would spend ~50 ms and tens of MB per
agent connection for no gain. The database holds only the hash, so a leaked table does not leak keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.common.clock import LiveClock
from aitrading.common.errors import BadInputError
from aitrading.storage.oltp.models import Device, Tenant
from aitrading.storage.oltp.tenancy import allow_device_lookup, set_tenant

__all__ = [
    "DEFAULT_DEVICE_SCOPES",
    "MIN_DEVICE_KEY_LENGTH",
    "authenticate_device",
    "ensure_device",
    "hash_device_key",
    "register_device",
    "revoke_device",
]

DEFAULT_DEVICE_SCOPES: tuple[str, ...] = ("md:publish", "orders:execute")
"""What an agent may do by default: publish market data and execute the orders it is sent."""

MIN_DEVICE_KEY_LENGTH = 16
"""Shortest key `ensure_device` accepts; generated keys are 43 characters (32 random bytes)."""

_DUMMY_HASH = hashlib.sha256(b"no such device").hexdigest()


def hash_device_key(key: str) -> str:
    """Return the SHA-256 hex digest under which `key` is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else LiveClock().utcnow()


def _scopes(scopes: Iterable[str]) -> str:
    out = sorted(set(scopes))
    if any(not s or any(c.isspace() for c in s) for s in out):
        raise BadInputError(f"device scopes must be non-empty words without spaces: {out!r}")
    return " ".join(out)


async def register_device(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    device_id: str,
    name: str,
    *,
    scopes: Iterable[str] = DEFAULT_DEVICE_SCOPES,
    now: datetime | None = None,
) -> tuple[Device, str]:
    """Create a device with a fresh random key; return it and the plaintext key, which is shown only once.

    Scopes the transaction to `tenant_id`. A `device_id` already in use (by any tenant) is a `BadInputError`.
    """
    await set_tenant(session, tenant_id)
    await allow_device_lookup(session, device_id)
    taken = BadInputError(f"device id {device_id!r} is already registered")
    if await _device_row(session, device_id) is not None:
        raise taken
    key = secrets.token_urlsafe(32)
    device = Device(
        tenant_id=tenant_id,
        device_id=device_id,
        name=name,
        key_hash=hash_device_key(key),
        scopes=_scopes(scopes),
        created_at=_now(now),
    )
    try:
        async with session.begin_nested():
            session.add(device)
    except IntegrityError:
        if await _device_row(session, device_id) is None:
            raise  # not a duplicate id: an unknown tenant, for one
        raise taken from None
    return device, key


async def ensure_device(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    device_id: str,
    key: str,
    *,
    name: str | None = None,
    scopes: Iterable[str] = DEFAULT_DEVICE_SCOPES,
    now: datetime | None = None,
) -> Device:
    """Make `device_id` exist in `tenant_id` with `key` (development provisioning of a known key).

    Idempotent: an existing device gets the key's hash if it differs and keeps everything else, including a
    revocation (revoking must stick). A device of another tenant is a `BadInputError`. Scopes the transaction
    to `tenant_id`.
    """
    if len(key) < MIN_DEVICE_KEY_LENGTH:
        raise BadInputError(f"device key must be at least {MIN_DEVICE_KEY_LENGTH} characters")
    await set_tenant(session, tenant_id)
    await allow_device_lookup(session, device_id)
    device = await _device_row(session, device_id)
    key_hash = hash_device_key(key)
    if device is None:
        device = Device(
            tenant_id=tenant_id,
            device_id=device_id,
            name=name or device_id,
            key_hash=key_hash,
            scopes=_scopes(scopes),
            created_at=_now(now),
        )
        session.add(device)
    elif device.tenant_id != tenant_id:
        raise BadInputError(f"device id {device_id!r} belongs to another tenant")
    elif not hmac.compare_digest(device.key_hash, key_hash):
        device.key_hash = key_hash
    await session.flush()
    return device


async def authenticate_device(
    session: AsyncSession, device_id: str, key: str, *, now: datetime | None = None
) -> Device | None:
    """Return the device if `key` is its key and it and its tenant are active, else None.

    The comparison is constant-time, and an unknown device costs the same as a wrong key. On success the
    device's `last_seen_at` becomes `now` (pass the service clock's time) and the transaction is scoped to
    the device's tenant.
    """
    await allow_device_lookup(session, device_id)
    result = await session.execute(
        sa.select(Device, Tenant.disabled)
        .join(Tenant, Tenant.id == Device.tenant_id)
        .where(Device.device_id == device_id)
    )
    row = result.one_or_none()
    presented = hash_device_key(key)
    if row is None:
        hmac.compare_digest(presented, _DUMMY_HASH)
        return None
    device, tenant_disabled = row
    if not hmac.compare_digest(presented, device.key_hash):
        return None
    if device.revoked_at is not None or tenant_disabled:
        return None
    await set_tenant(session, device.tenant_id)
    device.last_seen_at = _now(now)
    await session.flush()
    return device


async def revoke_device(session: AsyncSession, device_id: str, *, now: datetime | None = None) -> bool:
    """Revoke `device_id` so its key stops working; return False if the current tenant has no such device.

    On PostgreSQL call `set_tenant` first: row-level security lets a tenant revoke only its own devices.
    """
    device = await _device_row(session, device_id)
    if device is None:
        return False
    if device.revoked_at is None:
        device.revoked_at = _now(now)
        await session.flush()
    return True


async def _device_row(session: AsyncSession, device_id: str) -> Device | None:
    result = await session.execute(sa.select(Device).where(Device.device_id == device_id))
    return result.scalar_one_or_none()
