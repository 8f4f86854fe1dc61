"""Identity: credentials, MFA, refresh-token families, API keys, signing keys, login throttling.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

Written by hand and checked against autogenerate (tests compare the migrated schema with the models).
Types are spelled with plain SQLAlchemy types so later model changes cannot rewrite this history.

Row-level security (PostgreSQL only): every table but `signing_keys` belongs to a tenant and is under
FORCE row-level security keyed on `app.tenant_id`, like 0001/0002. A refresh token or an API key is
presented without a tenant, so `refresh_tokens` and `api_keys` also let the transaction read (not write)
the one row whose hash `app.credential_hash` names, as `devices` does with `app.device_id`.
`signing_keys` is platform-wide: no tenant owns the gateway's signing keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_OWNED = ("auth_sessions", "refresh_tokens", "api_keys", "mfa_backup_codes", "user_login_states")
TENANT_MATCH = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"
LOOKUPS = {"refresh_tokens": "token_hash", "api_keys": "key_hash"}


def _is_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _ts(name: str, *, nullable: bool = True, comment: str | None = None) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def _tenant(table: str) -> tuple[sa.Column[object], sa.ForeignKeyConstraint]:
    return (
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="RESTRICT"
        ),
    )


def _user_fk(table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False, comment="JWK thumbprint (RFC 7638)"),
        sa.Column("algorithm", sa.String(length=16), nullable=False, comment="JWS alg, e.g. EdDSA"),
        sa.Column("public_key", sa.Text(), nullable=False, comment="PEM (SubjectPublicKeyInfo)"),
        sa.Column("private_key", sa.Text(), nullable=False, comment="PKCS#8 PEM, AES-GCM encrypted"),
        _ts("created_at", nullable=False),
        _ts("retired_at", comment="stopped signing; verifies until its last token expires"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("kid", name=op.f("uq_signing_keys_kid")),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("expires_at", nullable=False, comment="absolute end of the session"),
        _ts("last_refreshed_at"),
        _ts("mfa_at", comment="last TOTP proof in the session"),
        _ts("revoked_at"),
        sa.Column("revoke_reason", sa.String(length=64), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        *_tenant("auth_sessions"),
        _user_fk("auth_sessions", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, comment="sha256 hex"),
        _ts("issued_at", nullable=False),
        _ts("expires_at", nullable=False),
        _ts("used_at", comment="rotated; a second use is reuse"),
        *_tenant("refresh_tokens"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_auth_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False, comment="sha256 hex of the whole key"),
        sa.Column(
            "scopes", sa.String(length=256), nullable=False, comment="space-separated, e.g. 'read trade'"
        ),
        _ts("created_at", nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _ts("expires_at"),
        _ts("last_used_at"),
        _ts("revoked_at"),
        *_tenant("api_keys"),
        _user_fk("api_keys", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "mfa_backup_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False, comment="hmac-sha256 hex"),
        _ts("created_at", nullable=False),
        _ts("used_at"),
        *_tenant("mfa_backup_codes"),
        _user_fk("mfa_backup_codes", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_backup_codes")),
        sa.UniqueConstraint("user_id", "code_hash", name=op.f("uq_mfa_backup_codes_user_id_code_hash")),
    )
    op.create_table(
        "user_login_states",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "failed_count",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="consecutive failures",
        ),
        _ts("last_failed_at"),
        _ts("locked_until"),
        _ts("last_login_at"),
        *_tenant("user_login_states"),
        _user_fk("user_login_states", "CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_login_states")),
    )
    for table in TENANT_OWNED:
        op.create_index(op.f(f"ix_{table}_tenant_id"), table, ["tenant_id"], unique=False)
    for table in ("auth_sessions", "api_keys", "mfa_backup_codes"):
        op.create_index(op.f(f"ix_{table}_user_id"), table, ["user_id"], unique=False)
    op.create_index(op.f("ix_refresh_tokens_session_id"), "refresh_tokens", ["session_id"], unique=False)

    if _is_postgresql():
        for table in TENANT_OWNED:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} "
                f"USING ({TENANT_MATCH}) WITH CHECK ({TENANT_MATCH})"
            )
        for table, column in LOOKUPS.items():
            op.execute(
                f"CREATE POLICY credential_lookup ON {table} FOR SELECT "
                f"USING ({column} = current_setting('app.credential_hash', true))"
            )


def downgrade() -> None:
    if _is_postgresql():
        for table in LOOKUPS:
            op.execute(f"DROP POLICY IF EXISTS credential_lookup ON {table}")
        for table in TENANT_OWNED:
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.drop_index(op.f("ix_refresh_tokens_session_id"), table_name="refresh_tokens")
    for table in ("auth_sessions", "api_keys", "mfa_backup_codes"):
        op.drop_index(op.f(f"ix_{table}_user_id"), table_name=table)
    for table in TENANT_OWNED:
        op.drop_index(op.f(f"ix_{table}_tenant_id"), table_name=table)
    for table in ("user_login_states", "mfa_backup_codes", "api_keys", "refresh_tokens", "auth_sessions"):
        op.drop_table(table)
    op.drop_table("signing_keys")
