"""Config service: versioned hierarchical configuration entries and their history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Written by hand and checked against autogenerate (tests compare the migrated schema with the models).
Types are spelled with plain SQLAlchemy types so later model changes cannot rewrite this history.

Row-level security (PostgreSQL only): both tables belong to a tenant (global entries to the platform
tenant) and are under FORCE row-level security keyed on `app.tenant_id`, like 0001/0002.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_OWNED = ("config_entries", "config_versions")
TENANT_MATCH = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"
SCOPE_CHECK = "scope IN ('global', 'tenant', 'user')"


def _is_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _tenant(table: str) -> tuple[sa.Column[object], sa.ForeignKeyConstraint]:
    return (
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="RESTRICT"
        ),
    )


def upgrade() -> None:
    op.create_table(
        "config_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column(
            "user_id",
            sa.String(length=200),
            server_default=sa.text("''"),
            nullable=False,
            comment="principal subject; '' unless user",
        ),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True, comment="canonical JSON; NULL once deleted"),
        sa.Column("version", sa.BigInteger(), nullable=False, comment="1, 2, … per scope/user/namespace"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        *_tenant("config_entries"),
        sa.CheckConstraint(SCOPE_CHECK, name=op.f("ck_config_entries_scope")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_config_entries_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_entries")),
        sa.UniqueConstraint(
            "tenant_id",
            "scope",
            "user_id",
            "namespace",
            name=op.f("uq_config_entries_tenant_id_scope_user_id_namespace"),
        ),
    )
    op.create_index(op.f("ix_config_entries_tenant_id"), "config_entries", ["tenant_id"], unique=False)
    op.create_table(
        "config_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.String(length=200), server_default=sa.text("''"), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("diff", sa.Text(), nullable=False, comment="canonical JSON list of {op, path, old, new}"),
        *_tenant("config_versions"),
        sa.CheckConstraint(SCOPE_CHECK, name=op.f("ck_config_versions_scope")),
        sa.CheckConstraint("action IN ('put', 'delete')", name=op.f("ck_config_versions_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_versions")),
        sa.UniqueConstraint(
            "tenant_id",
            "scope",
            "user_id",
            "namespace",
            "version",
            name=op.f("uq_config_versions_tenant_id_scope_user_id_namespace_version"),
        ),
    )
    op.create_index(op.f("ix_config_versions_tenant_id"), "config_versions", ["tenant_id"], unique=False)

    if _is_postgresql():
        for table in TENANT_OWNED:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} "
                f"USING ({TENANT_MATCH}) WITH CHECK ({TENANT_MATCH})"
            )


def downgrade() -> None:
    if _is_postgresql():
        for table in TENANT_OWNED:
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
    op.drop_index(op.f("ix_config_versions_tenant_id"), table_name="config_versions")
    op.drop_table("config_versions")
    op.drop_index(op.f("ix_config_entries_tenant_id"), table_name="config_entries")
    op.drop_table("config_entries")
