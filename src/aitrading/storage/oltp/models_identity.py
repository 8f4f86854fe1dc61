"""ORM models of identity: login sessions, refresh tokens, API keys, MFA backup codes, lockouts, signing keys.

Conventions as in `aitrading.storage.oltp.models` (UUID keys, `UTCDateTime`, `ExactDecimal`, `TenantOwned`).

Every table but `signing_keys` belongs to a tenant and sits under row-level security on PostgreSQL. Two rows
must be found before their tenant is known: a refresh token and an API key, each presented by a client that
names no tenant. Like agent devices, they are found through a lookup policy that reveals (read-only) exactly
the row whose hash the transaction names in `app.credential_hash`; only someone holding the secret can
compute that hash. `signing_keys` is platform-wide (the gateway signs every tenant's tokens with it); its
private keys are encrypted with a key derived from `security.secret_key`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aitrading.storage.oltp.models import Base, TenantOwned, UTCDateTime

__all__ = [
    "IDENTITY_TENANT_TABLES",
    "ApiKey",
    "AuthSession",
    "MfaBackupCode",
    "RefreshToken",
    "SigningKey",
    "UserLoginState",
]

IDENTITY_TENANT_TABLES: tuple[str, ...] = (
    "auth_sessions",
    "refresh_tokens",
    "api_keys",
    "mfa_backup_codes",
    "user_login_states",
)
"""The identity tables under row-level security (every identity table with a `tenant_id`)."""

_USER_FK = "users.id"


class SigningKey(Base):
    """An asymmetric key that signs access tokens; the newest unretired one signs, the others only verify."""

    __tablename__ = "signing_keys"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    kid: Mapped[str] = mapped_column(sa.String(64), unique=True, comment="JWK thumbprint (RFC 7638)")
    algorithm: Mapped[str] = mapped_column(sa.String(16), comment="JWS alg, e.g. EdDSA")
    public_key: Mapped[str] = mapped_column(sa.Text, comment="PEM (SubjectPublicKeyInfo)")
    private_key: Mapped[str] = mapped_column(sa.Text, comment="PKCS#8 PEM, AES-GCM encrypted")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), comment="stopped signing; verifies until its last token expires"
    )

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, retired_at={self.retired_at})"


class AuthSession(TenantOwned, Base):
    """One login: the family of refresh tokens it hands out, revoked as a whole on logout or reuse."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, sa.ForeignKey(_USER_FK, ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), comment="absolute end of the session")
    last_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mfa_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="last TOTP proof in the session")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(64))
    client_ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(256))

    def __repr__(self) -> str:
        return f"AuthSession(id={self.id}, user_id={self.user_id}, revoked_at={self.revoked_at})"


class RefreshToken(TenantOwned, Base):
    """One opaque refresh token of a session; only its SHA-256 is kept, and each one is used once."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, comment="sha256 hex")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), comment="rotated; a second use is reuse")

    def __repr__(self) -> str:
        return f"RefreshToken(id={self.id}, session_id={self.session_id}, used_at={self.used_at})"


class ApiKey(TenantOwned, Base):
    """A programmatic credential `aitk_<id>_<secret>` of an `api_user`; only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, sa.ForeignKey(_USER_FK, ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, comment="sha256 hex of the whole key")
    scopes: Mapped[str] = mapped_column(sa.String(256), comment="space-separated, e.g. 'read trade'")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(sa.String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def scope_set(self) -> frozenset[str]:
        """Return the key's scopes as a set."""
        return frozenset(self.scopes.split())

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id}, name={self.name!r}, revoked_at={self.revoked_at})"


class MfaBackupCode(TenantOwned, Base):
    """A one-time MFA backup code (80 random bits), kept as an HMAC-SHA256 under a server-side key."""

    __tablename__ = "mfa_backup_codes"
    __table_args__ = (sa.UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, sa.ForeignKey(_USER_FK, ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(sa.String(64), comment="hmac-sha256 hex")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserLoginState(TenantOwned, Base):
    """Failed sign-in attempts and the lockout of one user (durable, unlike the cache's throttle counters)."""

    __tablename__ = "user_login_states"

    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, sa.ForeignKey(_USER_FK, ondelete="CASCADE"), primary_key=True
    )
    failed_count: Mapped[int] = mapped_column(
        sa.Integer, default=0, server_default=sa.text("0"), comment="consecutive failures"
    )
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
