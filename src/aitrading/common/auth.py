"""Authentication of HTTP calls between the platform's parts: short-lived signed service tokens.

Every route but health, metrics, version (and later login/JWKS) requires `Authorization: Bearer <token>`.
The tokens are HS256 JWTs signed with `security.service_token_secret`, carrying the subject, the tenant
(if the caller acts for one) and roles. User tokens (asymmetric keys with `kid`/JWKS, `identity`) resolve to
the same `Principal`, so routes do not change.

Verification is cached per token string: a caller (the gateway, above all) sends the same token thousands
of times, and PyJWT's base64, JSON and HMAC work was about a third of a small service's CPU per request.
Only a token that passed every check is cached, keyed by its exact text (any other text, e.g. a tampered
one, is verified in full), and its times are checked against the injected clock on every call, so a cached
token stops passing the moment it expires. These tokens cannot be revoked (they live minutes), so a cache
hit answers exactly what a full verification would. The cache is bounded (`cache_entries`; 0 turns it off).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from fastapi import HTTPException, Request, status

from aitrading.common.clock import Clock, LiveClock

__all__ = ["ISSUER", "USER_CONFIG_WRITERS", "Principal", "TokenService", "principal_dependency"]

ISSUER = "aitrading"
AUDIENCE = "aitrading"
_ALGORITHM = "HS256"
_MAX_TTL_S = 24 * 3600

USER_CONFIG_WRITERS = frozenset({"platform_admin", "tenant_admin", "portfolio_manager", "api_user"})
"""Roles that may write their own user-scope config: everyone but a read-only analyst. The config service
enforces it, and the gateway's route table lets these roles through to it."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a subject, the tenant it acts for (None for platform-wide) and its roles."""

    subject: str
    tenant: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    mfa: bool = False
    """True when the user proved a second factor in the session behind this call (MFA step-up)."""
    tier: str | None = None
    """The tenant's subscription tier, when known (quotas and rate limits)."""

    def has_role(self, *roles: str) -> bool:
        """Tell whether the principal has any of `roles`."""
        return bool(self.roles.intersection(roles))


class TokenService:
    """Issues and verifies the platform's signed tokens."""

    def __init__(
        self,
        secret: str,
        *,
        clock: Clock | None = None,
        leeway_s: int = 5,
        cache_entries: int = 4096,
    ) -> None:
        if len(secret.encode()) < 32:
            raise ValueError("the token secret must be at least 32 bytes (HMAC-SHA256, RFC 7518 §3.2)")
        self._secret = secret
        self._clock = clock or LiveClock()
        self._leeway = leeway_s
        self._cache_entries = cache_entries
        self._verified: dict[str, tuple[Principal, int, int]] = {}
        """token → (principal, exp, nbf) of tokens that passed every check."""

    def issue(
        self,
        subject: str,
        *,
        tenant: str | None = None,
        roles: Iterable[str] = (),
        ttl_s: int = 300,
        mfa: bool = False,
        tier: str | None = None,
    ) -> str:
        """Return a token for `subject` valid for `ttl_s` seconds (at most a day)."""
        if not 0 < ttl_s <= _MAX_TTL_S:
            raise ValueError(f"ttl_s must be in (0, {_MAX_TTL_S}]")
        now = self._clock.now_ns() // 1_000_000_000
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "roles": sorted(set(roles)),
        }
        if tenant is not None:
            claims["tenant"] = tenant
        if mfa:
            claims["mfa"] = True
        if tier is not None:
            claims["tier"] = tier
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Principal:
        """Return the principal of a valid token; raise `jwt.InvalidTokenError` with the reason."""
        hit = self._verified.get(token)
        if hit is None:
            return self._verify_in_full(token)
        principal, exp, nbf = hit
        self._check_times(exp, nbf)
        return principal

    def _check_times(self, exp: int, nbf: int) -> None:
        now = self._clock.now_ns() // 1_000_000_000
        if exp + self._leeway < now:
            raise jwt.ExpiredSignatureError("Signature has expired")
        if nbf - self._leeway > now:
            raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")

    def _verify_in_full(self, token: str) -> Principal:
        claims = jwt.decode(
            token,
            self._secret,
            algorithms=[_ALGORITHM],  # never "none", never an algorithm the token chooses
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=self._leeway,
            # Times are checked below against the injected clock, not the system clock.
            options={
                "require": ["exp", "iat", "sub", "iss", "aud"],
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
        try:
            exp, nbf = int(claims["exp"]), int(claims.get("nbf", claims["iat"]))
        except (TypeError, ValueError):
            raise jwt.InvalidTokenError("exp, nbf and iat must be integers") from None
        self._check_times(exp, nbf)
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise jwt.InvalidTokenError("roles must be a list of strings")
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise jwt.InvalidTokenError("tenant must be a string")
        mfa = claims.get("mfa", False)
        tier = claims.get("tier")
        if not isinstance(mfa, bool) or (tier is not None and not isinstance(tier, str)):
            raise jwt.InvalidTokenError("mfa must be a boolean and tier a string")
        principal = Principal(
            subject=str(claims["sub"]), tenant=tenant, roles=frozenset(roles), mfa=mfa, tier=tier
        )
        if self._cache_entries > 0:
            if len(self._verified) >= self._cache_entries:
                self._verified.clear()  # simplest bound: each caller's next call verifies in full again
            self._verified[token] = (principal, exp, nbf)
        return principal


def principal_dependency(tokens: TokenService) -> Callable[[Request], Awaitable[Principal]]:
    """Return a FastAPI dependency that authenticates the bearer token or answers 401 with the reason."""

    async def authenticate(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return tokens.verify(token.strip())
        except jwt.InvalidTokenError as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"invalid token: {exc}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None

    return authenticate
