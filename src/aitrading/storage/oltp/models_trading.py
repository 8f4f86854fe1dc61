"""ORM models of trading: accounts, orders, deals, positions and risk limits (the engine's books).

Conventions as in `aitrading.storage.oltp.models` (UUID keys, `UTCDateTime`, `ExactDecimal`, `TenantOwned`).
Prices and volumes are the model's raw integers (1e-9 and 1e-8 lots) in BIGINT columns, so they are exact on
every database; money is `ExactDecimal`. Orders and positions also keep their whole model struct as JSON in
`data`, so the engine reloads exactly what it booked; the other columns are for queries and reports.
`account` is the platform's account id (by default the MT5 login), unique per tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aitrading.storage.oltp.models import Base, ExactDecimal, TenantOwned, UTCDateTime

__all__ = ["TRADING_TABLES", "DealRow", "OrderRow", "PositionRow", "RiskLimitRow", "TradingAccount"]

TRADING_TABLES: tuple[str, ...] = ("trading_accounts", "orders", "deals", "positions", "risk_limits")
"""Tenant-owned tables of this module (row-level security on PostgreSQL)."""


class TradingAccount(TenantOwned, Base):
    """A trading account (one MT5 login) and the engine's latest view of its money and risk state."""

    __tablename__ = "trading_accounts"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "account"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    account: Mapped[str] = mapped_column(sa.String(64))
    feed: Mapped[str] = mapped_column(sa.String(64), comment="broker server of the account's terminal")
    login: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(8))
    digits: Mapped[int] = mapped_column(sa.Integer)
    leverage: Mapped[int] = mapped_column(sa.Integer)
    margin_mode: Mapped[int] = mapped_column(sa.Integer, comment="ACCOUNT_MARGIN_MODE_*")
    balance: Mapped[Decimal] = mapped_column(ExactDecimal())
    credit: Mapped[Decimal] = mapped_column(ExactDecimal())
    equity: Mapped[Decimal] = mapped_column(ExactDecimal())
    margin: Mapped[Decimal] = mapped_column(ExactDecimal())
    profit: Mapped[Decimal] = mapped_column(ExactDecimal())
    risk_state: Mapped[str] = mapped_column(sa.String(16), comment="ACTIVE, REDUCING or HALTED")
    risk_reason: Mapped[str] = mapped_column(sa.String(500))
    peak_equity: Mapped[Decimal] = mapped_column(ExactDecimal())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrderRow(TenantOwned, Base):
    """An order as the engine knows it; `data` is the whole `model.orders.Order` as JSON."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "client_order_id"),
        sa.Index("ix_orders_tenant_id_account_state", "tenant_id", "account", "state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    account: Mapped[str] = mapped_column(sa.String(64))
    client_order_id: Mapped[str] = mapped_column(sa.String(31), comment="also the MT5 comment")
    strategy: Mapped[str | None] = mapped_column(sa.String(64))
    symbol: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[int] = mapped_column(sa.Integer, comment="ORDER_TYPE_*")
    state: Mapped[int] = mapped_column(sa.Integer, comment="ORDER_STATE_*")
    volume: Mapped[int] = mapped_column(sa.BigInteger, comment="raw, 1e-8 lots")
    volume_filled: Mapped[int] = mapped_column(sa.BigInteger)
    price: Mapped[int] = mapped_column(sa.BigInteger, comment="raw, 1e-9")
    ticket: Mapped[int] = mapped_column(sa.BigInteger, comment="the terminal's order ticket, 0 until known")
    retcode: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.Text)
    data: Mapped[str] = mapped_column(sa.Text, comment="model.orders.Order as JSON")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DealRow(TenantOwned, Base):
    """A deal the broker made (MT5's `TradeDeal`), booked once per ticket."""

    __tablename__ = "deals"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "account", "ticket"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    account: Mapped[str] = mapped_column(sa.String(64))
    ticket: Mapped[int] = mapped_column(sa.BigInteger)
    order: Mapped[int] = mapped_column(sa.BigInteger)
    position_id: Mapped[int] = mapped_column(sa.BigInteger)
    symbol: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[int] = mapped_column(sa.Integer, comment="DEAL_TYPE_*")
    entry: Mapped[int] = mapped_column(sa.Integer, comment="DEAL_ENTRY_*")
    volume: Mapped[int] = mapped_column(sa.BigInteger)
    price: Mapped[int] = mapped_column(sa.BigInteger)
    commission: Mapped[Decimal] = mapped_column(ExactDecimal())
    swap: Mapped[Decimal] = mapped_column(ExactDecimal())
    profit: Mapped[Decimal] = mapped_column(ExactDecimal())
    fee: Mapped[Decimal] = mapped_column(ExactDecimal())
    time_ns: Mapped[int] = mapped_column(sa.BigInteger, comment="UTC epoch ns")
    magic: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[int] = mapped_column(sa.Integer, comment="DEAL_REASON_*")
    comment: Mapped[str] = mapped_column(sa.String(64))


class PositionRow(TenantOwned, Base):
    """An open position; `data` is the whole `model.positions.Position` as JSON."""

    __tablename__ = "positions"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "account", "identifier"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    account: Mapped[str] = mapped_column(sa.String(64))
    identifier: Mapped[int] = mapped_column(sa.BigInteger)
    symbol: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[int] = mapped_column(sa.Integer, comment="POSITION_TYPE_*")
    volume: Mapped[int] = mapped_column(sa.BigInteger)
    data: Mapped[str] = mapped_column(sa.Text, comment="model.positions.Position as JSON")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RiskLimitRow(TenantOwned, Base):
    """One level's risk limits (`engine.limits.RiskLimits` as JSON): the tenant, an account or a strategy."""

    __tablename__ = "risk_limits"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "scope", "scope_id"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    scope: Mapped[str] = mapped_column(sa.String(16), comment="tenant, account or strategy")
    scope_id: Mapped[str] = mapped_column(sa.String(64))
    limits: Mapped[str] = mapped_column(sa.Text, comment="engine.limits.RiskLimits as JSON")
    updated_by: Mapped[str] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
