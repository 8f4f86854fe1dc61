"""Settings of the identity service, with the defaults the security model asks for.

They live here rather than in `PlatformConfig` until the gateway's config section settles; `from_platform`
takes the one secret they need (`security.secret_key`) from the root config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aitrading.common.config import DEV_SECRET_PREFIX, PlatformConfig
from aitrading.common.errors import ConfigError

__all__ = ["IdentityConfig"]


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Lifetimes, throttling and lockout thresholds of user authentication (seconds unless named)."""

    secret_key: str = field(repr=False)
    """Master secret; MFA secrets, signing keys and backup-code hashes use keys derived from it (HKDF)."""
    issuer: str = "aitrading"
    audience: str = "aitrading-api"
    access_ttl_s: int = 15 * 60
    refresh_ttl_s: int = 7 * 86_400
    """How long one refresh token lives unused; each refresh hands out a new one."""
    session_max_age_s: int = 30 * 86_400
    """Absolute end of a login session, however often it refreshes."""
    mfa_max_age_s: int = 12 * 3600
    """A session's TOTP proof counts (`mfa=true` in refreshed tokens) for this long."""
    signing_key_max_age_s: int = 30 * 86_400
    """Active signing keys older than this are rotated automatically."""
    leeway_s: int = 5
    min_password_length: int = 12
    throttle_window_s: int = 15 * 60
    account_throttle_after: int = 5
    """Failures of one account within the window after which each attempt must wait (exponential delay)."""
    ip_throttle_after: int = 20
    """Failures from one client IP within the window after which its attempts must wait (a NAT hides many)."""
    max_throttle_delay_s: int = 15 * 60
    lockout_after: int = 10
    """Consecutive failures that lock an account."""
    lockout_s: int = 30 * 60
    admin_requires_mfa: bool = True
    """User and API-key administration needs a session that proved TOTP."""
    totp_issuer: str = "AI Trading"
    api_key_cache_s: float = 30.0
    """How long the gateway trusts a verified API key without asking the database (revocations are pushed)."""
    api_key_touch_s: int = 60
    """`last_used_at` of an API key is written at most this often."""
    key_reload_min_interval_s: float = 5.0
    """Least time between reloads of the public keys triggered by an unknown `kid`."""
    invalid_token_audits_per_minute: int = 10
    """Per client IP and reason; more bad tokens in a minute are refused but not each audited."""
    platform_tenant_slug: str = "platform"
    """The tenant whose audit chain records events with no trustworthy tenant (forged tokens and the like)."""

    def __post_init__(self) -> None:
        if len(self.secret_key.encode()) < 32:
            raise ValueError("the identity secret (security.secret_key) must be at least 32 bytes")
        if self.access_ttl_s <= 0 or self.refresh_ttl_s <= 0 or self.session_max_age_s <= 0:
            raise ValueError("token lifetimes must be positive")
        if self.min_password_length < 12:
            raise ValueError("min_password_length must be at least 12")
        if self.lockout_after < 1 or self.account_throttle_after < 1 or self.ip_throttle_after < 1:
            raise ValueError("throttle and lockout thresholds must be at least 1")

    @classmethod
    def from_platform(cls, config: PlatformConfig, **overrides: object) -> IdentityConfig:
        """Build the settings from the root config (`security.secret_key`) plus `overrides`.

        Outside development and test the secret that encrypts the signing keys and TOTP secrets must not be
        the development default (the root config refuses it too; a config built with `model_construct` or
        `model_copy` skips that validator, this check does not).
        """
        secret = config.security.secret_key.get_secret_value()
        if config.mode == "production" and (not secret or secret.startswith(DEV_SECRET_PREFIX)):
            raise ConfigError(
                "production mode needs a real security.secret_key (AITRADING_SECURITY__SECRET_KEY): it "
                "encrypts the gateway's signing keys and the users' TOTP secrets"
            )
        return cls(secret_key=secret, **overrides)  # type: ignore[arg-type]
