"""Request and response schemas of the identity API (never ORM objects)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aitrading.storage.oltp.models import ROLES

__all__ = [
    "API_KEY_SCOPES",
    "AccessTokenPublic",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPublic",
    "LoginRequest",
    "LogoutRequest",
    "MePublic",
    "MfaCode",
    "MfaConfirmed",
    "MfaEnrolment",
    "RefreshRequest",
    "TenantCreate",
    "TenantPublic",
    "TokenPair",
    "UserCreate",
    "UserPublic",
]

API_KEY_SCOPES: tuple[str, ...] = ("read", "trade")
"""What an API key may do: `read` (market data, positions, history) and `trade` (send orders)."""

Role = Literal["platform_admin", "tenant_admin", "portfolio_manager", "analyst", "api_user"]
assert set(Role.__args__) == set(ROLES)  # type: ignore[attr-defined]  # keep the two lists in step


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class LoginRequest(_In):
    tenant: str = Field(min_length=1, max_length=63, description="the tenant's slug")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    code: str | None = Field(default=None, max_length=32, description="TOTP code or backup code")


class RefreshRequest(_In):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(_In):
    refresh_token: str | None = Field(default=None, max_length=256)


class MfaCode(_In):
    code: str = Field(min_length=6, max_length=32, description="TOTP code or backup code")


class TokenPair(_Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    refresh_token: str
    mfa: bool


class AccessTokenPublic(_Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    mfa: bool


class MfaEnrolment(_Out):
    secret: str
    otpauth_uri: str


class MfaConfirmed(_Out):
    backup_codes: list[str]
    """Shown once; each works once in place of a TOTP code."""
    access_token: AccessTokenPublic | None = None


class TenantCreate(_In):
    slug: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=200)
    tier: str = "free"


class TenantPublic(_Out):
    id: uuid.UUID
    slug: str
    name: str
    tier: str
    disabled: bool
    created_at: datetime


class UserCreate(_In):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    role: Role

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        local, at, domain = value.partition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in value):
            raise ValueError("not an e-mail address")
        return value.lower()


class UserPublic(_Out):
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: str
    disabled: bool
    mfa_enabled: bool
    created_at: datetime
    locked_until: datetime | None = None
    last_login_at: datetime | None = None


class MePublic(_Out):
    user: UserPublic
    tenant: TenantPublic
    roles: list[str]
    mfa: bool
    tier: str
    quota: dict[str, int | str]
    auth: Literal["token", "api_key"]


class ApiKeyCreate(_In):
    user_id: uuid.UUID = Field(description="an api_user of the caller's tenant")
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=len(API_KEY_SCOPES))
    expires_in_days: int | None = Field(default=90, ge=1, le=3650, description="null: never expires")

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(API_KEY_SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; known: {list(API_KEY_SCOPES)}")
        return sorted(set(value))


class ApiKeyPublic(_Out):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    """`aitk_<id>`: how the key shows up in logs and lists (the secret part is never shown again)."""
    scopes: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str
    """The whole key; shown only in this response."""
