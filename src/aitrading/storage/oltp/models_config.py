"""ORM models of the config service: versioned configuration entries and their history.

Conventions as in `aitrading.storage.oltp.models` (UUID keys, `UTCDateTime`, `ExactDecimal`, `TenantOwned`).

One row of `config_entries` is the override one scope holds for one namespace: `scope` is `global`,
`tenant` or `user`; `user_id` is the user's principal subject for the user scope and empty otherwise (empty,
not NULL, so the unique key holds). Global entries belong to the platform tenant (slug `platform`), so
every row has a tenant and sits under row-level security on PostgreSQL like every tenant-owned table.
`value` is the canonical JSON of the fields this scope sets; NULL means the override was deleted (the row
stays so the version keeps counting). `config_versions` keeps every change: who, when, old and new value
and a diff, numbered per (scope, user, namespace).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aitrading.storage.oltp.models import Base, TenantOwned, UTCDateTime

__all__ = ["CONFIG_SCOPES", "CONFIG_TENANT_TABLES", "ConfigEntry", "ConfigVersion"]

CONFIG_SCOPES: tuple[str, ...] = ("global", "tenant", "user")
CONFIG_TENANT_TABLES: tuple[str, ...] = ("config_entries", "config_versions")
"""The config tables under row-level security on PostgreSQL (migration 0004)."""

_SCOPE_CHECK = "scope IN (" + ", ".join(f"'{s}'" for s in CONFIG_SCOPES) + ")"


class ConfigEntry(TenantOwned, Base):
    """The current override of one scope for one namespace."""

    __tablename__ = "config_entries"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "scope", "user_id", "namespace"),
        sa.CheckConstraint(_SCOPE_CHECK, name="scope"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    scope: Mapped[str] = mapped_column(sa.String(8))
    user_id: Mapped[str] = mapped_column(
        sa.String(200), default="", server_default=sa.text("''"), comment="principal subject; '' unless user"
    )
    namespace: Mapped[str] = mapped_column(sa.String(64))
    value: Mapped[str | None] = mapped_column(sa.Text, comment="canonical JSON; NULL once deleted")
    version: Mapped[int] = mapped_column(sa.BigInteger, comment="1, 2, … per scope/user/namespace")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(sa.String(200))

    def __repr__(self) -> str:
        return (
            f"ConfigEntry({self.scope}/{self.namespace}, tenant_id={self.tenant_id}, version={self.version})"
        )


class ConfigVersion(TenantOwned, Base):
    """One change of a config entry: the version it made, who and when, old and new value and the diff."""

    __tablename__ = "config_versions"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "scope", "user_id", "namespace", "version"),
        sa.CheckConstraint(_SCOPE_CHECK, name="scope"),
        sa.CheckConstraint("action IN ('put', 'delete')", name="action"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    scope: Mapped[str] = mapped_column(sa.String(8))
    user_id: Mapped[str] = mapped_column(sa.String(200), default="", server_default=sa.text("''"))
    namespace: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column(sa.BigInteger)
    action: Mapped[str] = mapped_column(sa.String(8))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(sa.String(200))
    old_value: Mapped[str | None] = mapped_column(sa.Text)
    new_value: Mapped[str | None] = mapped_column(sa.Text)
    diff: Mapped[str] = mapped_column(sa.Text, comment="canonical JSON list of {op, path, old, new}")

    def __repr__(self) -> str:
        return f"ConfigVersion({self.scope}/{self.namespace} v{self.version} {self.action} by {self.actor!r})"
