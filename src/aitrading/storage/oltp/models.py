"""ORM models of the platform's transactional state: tenants, users and agent devices.

Conventions every table follows:

- Primary keys are UUIDs (`sqlalchemy.Uuid`: native `uuid` on PostgreSQL, `CHAR(32)` on SQLite).
- Timestamps are aware UTC datetimes in `DateTime(timezone=True)` columns. `UTCDateTime` refuses naive values
  and hands back aware ones on SQLite too, which has no time-zone type.
- Prices, volumes and money (orders, deals, balances; later migrations) use `ExactDecimal`, never `Float`:
  `NUMERIC(p, s)` on PostgreSQL and a scaled 64-bit integer on SQLite, whose `NUMERIC` is a binary float
  that would drift from what MT5 reports (see `ExactDecimal`).
- Constraint and index names come from `NAMING_CONVENTION`, so autogenerate, hand-written migrations and
  downgrades name the same objects on every database.
- Tables whose rows belong to a tenant mix in `TenantOwned`; on PostgreSQL the migrations put them under
  row-level security keyed on the `app.tenant_id` setting (see `aitrading.storage.oltp.tenancy`).
- Rows are created with explicit timestamps from an injected clock where the caller has one; the column
  defaults are a safety net for rows written by raw SQL or by callers without a clock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from aitrading.common.clock import LiveClock

__all__ = [
    "MONEY_SCALE",
    "NAMING_CONVENTION",
    "ROLES",
    "TENANT_OWNED_TABLES",
    "AuditEvent",
    "Base",
    "Device",
    "ExactDecimal",
    "Tenant",
    "TenantOwned",
    "UTCDateTime",
    "User",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES: tuple[str, ...] = ("platform_admin", "tenant_admin", "portfolio_manager", "analyst", "api_user")
"""The roles of the security model; the `users.role` check constraint allows exactly these."""

TENANT_OWNED_TABLES: tuple[str, ...] = ("users", "devices", "audit_events")
"""Tables of this module under row-level security on PostgreSQL (each migration adding one enables it there).

Every table with a `tenant_id` column, in any models module, is tenant-owned; the PostgreSQL tests check
that each of them is under forced row-level security."""

MONEY_SCALE = 8
"""Decimal places kept for money columns; bookings quantize to the account currency's digits first."""

_clock = LiveClock()


def _utcnow() -> datetime:
    return _clock.utcnow()


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database; naive datetimes are refused rather than guessed at."""

    impl = sa.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime (use the injected clock)")
        value = value.astimezone(UTC)
        # SQLite's DATETIME is text without an offset: store the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal of `scale` places: NUMERIC(precision, scale) on PostgreSQL, scaled integer elsewhere.

    SQLite's `NUMERIC` affinity stores a binary float, so 0.1 + 0.2 drifts and values beyond ~15 significant
    digits round. Storing `value × 10^scale` as a 64-bit integer keeps values exact and keeps SQL ordering,
    comparison and `SUM` working; the range is ±9.2e18 / 10^scale (±92 billion at scale 8). A value with more
    than `scale` decimals is refused, never rounded silently: quantize it first.
    """

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int = 28, scale: int = MONEY_SCALE) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(self.precision, self.scale, asdecimal=True))
        return dialect.type_descriptor(sa.BigInteger())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float | bool):
            raise TypeError(f"ExactDecimal takes Decimal, int or str, not {type(value).__name__}")
        dec = Decimal(value)
        scaled = dec.scaleb(self.scale)
        if not dec.is_finite() or scaled != scaled.to_integral_value():
            raise ValueError(f"{value} does not fit {self.scale} decimal places exactly")
        if dialect.name == "postgresql":
            return dec
        return int(scaled)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return Decimal(value)
        # SUM/AVG over the integer column may come back as int, float or str; float is only exact for ints.
        raw = Decimal(int(value)) if isinstance(value, int | float) else Decimal(str(value))
        return raw.scaleb(-self.scale)


class Base(DeclarativeBase):
    """Declarative base of every OLTP table."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class TenantOwned:
    """Mixin for tables whose every row belongs to exactly one tenant."""

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, sa.ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=False
    )


class Tenant(Base):
    """A customer: a trader or a fund. Tenants are disabled, never deleted (audit history refers to them)."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(sa.String(63), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    tier: Mapped[str] = mapped_column(sa.String(32), default="free", server_default="free")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow, server_default=sa.func.now())
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())

    def __repr__(self) -> str:
        return f"Tenant(id={self.id}, slug={self.slug!r})"


class User(TenantOwned, Base):
    """A person (or program, role `api_user`) who logs in to one tenant."""

    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "email"),
        sa.CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="role"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(sa.String(320), comment="normalised to lower case by the caller")
    password_hash: Mapped[str] = mapped_column(sa.String(255), comment="argon2id PHC string")
    role: Mapped[str] = mapped_column(sa.String(32))
    mfa_secret: Mapped[str | None] = mapped_column(sa.String(255), comment="TOTP secret, encrypted at rest")
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mfa_last_step: Mapped[int | None] = mapped_column(sa.BigInteger, comment="last accepted TOTP step")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow, server_default=sa.func.now())
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())

    def __repr__(self) -> str:
        return f"User(id={self.id}, email={self.email!r}, role={self.role!r})"


class Device(TenantOwned, Base):
    """A PC agent installation; it authenticates with a per-device key of which only the hash is kept."""

    __tablename__ = "devices"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    device_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    key_hash: Mapped[str] = mapped_column(sa.String(64), comment="sha256 hex of the device key")
    scopes: Mapped[str] = mapped_column(
        sa.String(512), default="", server_default=sa.text("''"), comment="space-separated"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow, server_default=sa.func.now())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def scope_set(self) -> frozenset[str]:
        """Return the device's scopes as a set."""
        return frozenset(self.scopes.split())

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def __repr__(self) -> str:
        return f"Device(device_id={self.device_id!r}, tenant_id={self.tenant_id})"


class AuditEvent(TenantOwned, Base):
    """One event of a tenant's append-only, hash-chained audit log (see `aitrading.storage.audit.chain`).

    `hash` = sha256(`prev_hash` ‖ canonical(seq, ts, actor, kind, payload)); the first event of a tenant
    chains to 64 zeros. Rows are never updated (PostgreSQL refuses it by trigger); only the archiver
    deletes the oldest ones after writing them to Parquet.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "seq"),
        sa.CheckConstraint("seq >= 1", name="seq_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(sa.BigInteger, comment="1, 2, … per tenant, no gaps")
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(64), comment="e.g. order.submitted, risk.denied")
    payload: Mapped[str] = mapped_column(sa.Text, comment="canonical JSON: sorted keys, no whitespace")
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), comment="sha256 hex")

    def __repr__(self) -> str:
        return f"AuditEvent(tenant_id={self.tenant_id}, seq={self.seq}, kind={self.kind!r})"
