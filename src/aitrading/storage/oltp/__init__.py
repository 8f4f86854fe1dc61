"""The transactional (OLTP) database: tenants, users, devices and, later, accounts, orders, deals and audit.

SQLAlchemy 2 async over SQLite (embedded default) or PostgreSQL (split deployments, with row-level security
per tenant, enforced by connecting as a non-owner `AppRole`); Alembic migrations ship inside the package and
run programmatically.
"""

from aitrading.storage.oltp import models_config, models_identity, models_trading  # noqa: F401  # register tables
from aitrading.storage.oltp.database import Database, make_engine
from aitrading.storage.oltp.devices import (
    DEFAULT_DEVICE_SCOPES,
    authenticate_device,
    ensure_device,
    hash_device_key,
    register_device,
    revoke_device,
)
from aitrading.storage.oltp.migrate import current, downgrade, ensure_database, head, upgrade
from aitrading.storage.oltp.models import (
    ROLES,
    AuditEvent,
    Base,
    Device,
    ExactDecimal,
    Tenant,
    TenantOwned,
    User,
    UTCDateTime,
)
from aitrading.storage.oltp.roles import AppRole
from aitrading.storage.oltp.tenancy import allow_device_lookup, ensure_tenant, set_tenant

__all__ = [
    "DEFAULT_DEVICE_SCOPES",
    "ROLES",
    "AppRole",
    "AuditEvent",
    "Base",
    "Database",
    "Device",
    "ExactDecimal",
    "Tenant",
    "TenantOwned",
    "UTCDateTime",
    "User",
    "allow_device_lookup",
    "authenticate_device",
    "current",
    "downgrade",
    "ensure_database",
    "ensure_device",
    "ensure_tenant",
    "hash_device_key",
    "head",
    "make_engine",
    "register_device",
    "revoke_device",
    "set_tenant",
    "upgrade",
]
