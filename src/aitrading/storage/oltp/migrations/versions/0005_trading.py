"""Trading: accounts, orders, deals, positions and risk limits (the engine's books).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

Generated from `aitrading.storage.oltp.models_trading` with autogenerate, then frozen here (tests compare
the migrated schema with the models). On PostgreSQL every table is under forced row-level security keyed on
`app.tenant_id`, like the other tenant-owned tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aitrading.storage.oltp.models import ExactDecimal

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("trading_accounts", "orders", "deals", "positions", "risk_limits")
TENANT_MATCH = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def _is_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "deals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("order", sa.BigInteger(), nullable=False),
        sa.Column("position_id", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False, comment="DEAL_TYPE_*"),
        sa.Column("entry", sa.Integer(), nullable=False, comment="DEAL_ENTRY_*"),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("commission", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("swap", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("profit", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("fee", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False, comment="UTC epoch ns"),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False, comment="DEAL_REASON_*"),
        sa.Column("comment", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_deals_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deals")),
        sa.UniqueConstraint("tenant_id", "account", "ticket", name=op.f("uq_deals_tenant_id_account_ticket")),
    )
    op.create_index(op.f("ix_deals_tenant_id"), "deals", ["tenant_id"], unique=False)
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("client_order_id", sa.String(length=31), nullable=False, comment="also the MT5 comment"),
        sa.Column("strategy", sa.String(length=64), nullable=True),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False, comment="ORDER_TYPE_*"),
        sa.Column("state", sa.Integer(), nullable=False, comment="ORDER_STATE_*"),
        sa.Column("volume", sa.BigInteger(), nullable=False, comment="raw, 1e-8 lots"),
        sa.Column("volume_filled", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False, comment="raw, 1e-9"),
        sa.Column(
            "ticket", sa.BigInteger(), nullable=False, comment="the terminal's order ticket, 0 until known"
        ),
        sa.Column("retcode", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False, comment="model.orders.Order as JSON"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_orders_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("tenant_id", "client_order_id", name=op.f("uq_orders_tenant_id_client_order_id")),
    )
    op.create_index(op.f("ix_orders_tenant_id"), "orders", ["tenant_id"], unique=False)
    op.create_index(
        "ix_orders_tenant_id_account_state", "orders", ["tenant_id", "account", "state"], unique=False
    )
    op.create_table(
        "positions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("identifier", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False, comment="POSITION_TYPE_*"),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False, comment="model.positions.Position as JSON"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_positions_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.UniqueConstraint(
            "tenant_id", "account", "identifier", name=op.f("uq_positions_tenant_id_account_identifier")
        ),
    )
    op.create_index(op.f("ix_positions_tenant_id"), "positions", ["tenant_id"], unique=False)
    op.create_table(
        "risk_limits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False, comment="tenant, account or strategy"),
        sa.Column("scope_id", sa.String(length=64), nullable=False),
        sa.Column("limits", sa.Text(), nullable=False, comment="engine.limits.RiskLimits as JSON"),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_risk_limits_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_limits")),
        sa.UniqueConstraint(
            "tenant_id", "scope", "scope_id", name=op.f("uq_risk_limits_tenant_id_scope_scope_id")
        ),
    )
    op.create_index(op.f("ix_risk_limits_tenant_id"), "risk_limits", ["tenant_id"], unique=False)
    op.create_table(
        "trading_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column(
            "feed", sa.String(length=64), nullable=False, comment="broker server of the account's terminal"
        ),
        sa.Column("login", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("digits", sa.Integer(), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        sa.Column("margin_mode", sa.Integer(), nullable=False, comment="ACCOUNT_MARGIN_MODE_*"),
        sa.Column("balance", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("credit", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("equity", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("margin", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("profit", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("risk_state", sa.String(length=16), nullable=False, comment="ACTIVE, REDUCING or HALTED"),
        sa.Column("risk_reason", sa.String(length=500), nullable=False),
        sa.Column("peak_equity", ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_trading_accounts_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_accounts")),
        sa.UniqueConstraint("tenant_id", "account", name=op.f("uq_trading_accounts_tenant_id_account")),
    )
    op.create_index(op.f("ix_trading_accounts_tenant_id"), "trading_accounts", ["tenant_id"], unique=False)
    if _is_postgresql():
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} "
                f"USING ({TENANT_MATCH}) WITH CHECK ({TENANT_MATCH})"
            )


def downgrade() -> None:
    if _is_postgresql():
        for table in TABLES:
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
    op.drop_index(op.f("ix_trading_accounts_tenant_id"), table_name="trading_accounts")
    op.drop_table("trading_accounts")
    op.drop_index(op.f("ix_risk_limits_tenant_id"), table_name="risk_limits")
    op.drop_table("risk_limits")
    op.drop_index(op.f("ix_positions_tenant_id"), table_name="positions")
    op.drop_table("positions")
    op.drop_index("ix_orders_tenant_id_account_state", table_name="orders")
    op.drop_index(op.f("ix_orders_tenant_id"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_deals_tenant_id"), table_name="deals")
    op.drop_table("deals")
