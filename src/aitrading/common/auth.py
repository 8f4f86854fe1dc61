"""Authentication of HTTP calls between the platform's parts: short-lived signed service tokens.

Every route but health, metrics, version (and later login/JWKS) requires `Authorization: Bearer <token>`.
Today the tokens are HS256 JWTs signed with `security.service_token_secret`, carrying the subject, the
tenant (if the caller acts for one) and roles. The gateway issue adds user tokens (asymmetric keys with
`kid`/JWKS), which resolve to the same `Principal`, so routes do not change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from fastapi import HTTPException, Request, status

from aitrading.common.clock import Clock, LiveClock

__all__ = ["ISSUER", "Principal", "TokenService", "principal_dependency"]

ISSUER = "aitrading"
AUDIENCE = "aitrading"
_ALGORITHM = "HS256"
_MAX_TTL_S = 24 * 3600


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

    def __init__(self, secret: str, *, clock: Clock | None = None, leeway_s: int = 5) -> None:
        if len(secret.encode()) < 32:
            raise ValueError("the token secret must be at least 32 bytes (HMAC-SHA256, RFC 7518 §3.2)")
        self._secret = secret
        self._clock = clock or LiveClock()
        self._leeway = leeway_s

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
        now = self._clock.now_ns() // 1_000_000_000
        try:
            exp, nbf = int(claims["exp"]), int(claims.get("nbf", claims["iat"]))
        except (TypeError, ValueError):
            raise jwt.InvalidTokenError("exp, nbf and iat must be integers") from None
        if exp + self._leeway < now:
            raise jwt.ExpiredSignatureError("Signature has expired")
        if nbf - self._leeway > now:
            raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
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
        return Principal(
            subject=str(claims["sub"]), tenant=tenant, roles=frozenset(roles), mfa=mfa, tier=tier
        )


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
