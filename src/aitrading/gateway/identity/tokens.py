"""Access tokens (EdDSA JWTs of 15 minutes) and opaque refresh tokens.

Access-token claims: `iss`, `aud`, `sub` (user id), `tenant` (tenant UUID), `roles`, `mfa` (this session
proved TOTP recently), `tier`, `sid` (the login session, revoked as a whole on logout), `jti`, `iat`,
`nbf`, `exp`. Verification pins the algorithm list to EdDSA (never `none`, never the token's choice), finds
the key by `kid` among the gateway's own keys, requires every claim, checks issuer and audience, and checks
times against the injected clock.

Refresh tokens are 256 random bits (`rt_<base64url>`); only their SHA-256 is stored, which is enough for
secrets that cannot be guessed (see docs/adr/0010-identity.md).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import jwt

from aitrading.common.auth import Principal
from aitrading.common.clock import Clock
from aitrading.gateway.identity.signing import ALGORITHM, SigningKeys

__all__ = [
    "REFRESH_PREFIX",
    "AccessClaims",
    "AccessTokens",
    "IssuedAccessToken",
    "TokenRejected",
    "hash_secret",
    "new_refresh_token",
]

REFRESH_PREFIX: Final = "rt_"
_REQUIRED: Final = ["iss", "aud", "sub", "exp", "iat", "nbf", "jti"]
_CUSTOM: Final = ("tenant", "roles", "mfa", "tier", "sid")


def hash_secret(secret: str) -> str:
    """Return the SHA-256 hex under which a high-entropy secret (refresh token, API key) is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    """Return a fresh opaque refresh token."""
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


class TokenRejected(Exception):
    """A token failed verification; `reason` says why and `tenant` is set when the signature was valid."""

    def __init__(self, reason: str, *, tenant: str | None = None, subject: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tenant = tenant
        self.subject = subject


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """A verified access token."""

    principal: Principal
    jti: str
    sid: str
    exp: int
    iat: int


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    """A freshly signed access token and what the caller may need to know about it."""

    token: str
    jti: str
    expires_at: int
    """Unix seconds."""


class AccessTokens:
    """Sign and verify access tokens with the gateway's rotating keys."""

    def __init__(
        self,
        keys: SigningKeys,
        clock: Clock,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        leeway_s: int = 5,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_s
        self._leeway = leeway_s

    @property
    def ttl_s(self) -> int:
        return self._ttl

    async def issue(
        self,
        *,
        subject: str,
        tenant: str,
        roles: Iterable[str],
        sid: str,
        mfa: bool,
        tier: str,
    ) -> IssuedAccessToken:
        """Sign an access token for a user session."""
        kid, private = await self._keys.signer()
        now = self._clock.now_ns() // 1_000_000_000
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "tenant": tenant,
            "roles": sorted(set(roles)),
            "mfa": mfa,
            "tier": tier,
            "sid": sid,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl,
        }
        token = jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid})
        return IssuedAccessToken(token, jti, now + self._ttl)

    async def verify(self, token: str) -> AccessClaims:
        """Return the claims of a valid token; raise `TokenRejected` with the reason otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise TokenRejected(f"algorithm {header.get('alg')!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token has no key id")
        key = self._keys.cached_key(kid) or await self._keys.verification_key(kid)
        if key is None:
            raise TokenRejected("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],  # fixed; the header's alg was checked against it above too
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": _REQUIRED,
                    # Times are checked below against the injected clock, not the system clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except (jwt.InvalidSignatureError, jwt.DecodeError, jwt.InvalidAlgorithmError) as exc:
            raise TokenRejected(f"bad signature: {exc}") from None
        except jwt.InvalidTokenError as exc:
            # The signature verified (PyJWT checks it before claims), so the token's tenant is trustworthy.
            unverified = jwt.decode(token, options={"verify_signature": False})
            raise TokenRejected(_claim_reason(exc), tenant=_str_or_none(unverified.get("tenant"))) from None
        return self._claims(claims)

    def _claims(self, claims: dict[str, Any]) -> AccessClaims:
        tenant = claims.get("tenant")
        sub = claims.get("sub")
        if not isinstance(tenant, str) or not _is_uuid(tenant) or not isinstance(sub, str):
            raise TokenRejected("tenant and sub must be a tenant UUID and a string")
        # From here on the signature is known good: failures name the tenant the token was signed for.
        now = self._clock.now_ns() // 1_000_000_000
        try:
            exp, nbf, iat = int(claims["exp"]), int(claims["nbf"]), int(claims["iat"])
        except (TypeError, ValueError):
            raise TokenRejected("exp, nbf and iat must be integers", tenant=tenant, subject=sub) from None
        if exp + self._leeway < now:
            raise TokenRejected("token expired", tenant=tenant, subject=sub)
        if nbf - self._leeway > now or iat - self._leeway > now:
            raise TokenRejected("token not yet valid", tenant=tenant, subject=sub)
        if exp - iat > self._ttl + self._leeway:
            raise TokenRejected(
                "token lifetime exceeds the access-token lifetime", tenant=tenant, subject=sub
            )
        roles, mfa, tier, sid, jti = (claims.get(k) for k in ("roles", "mfa", "tier", "sid", "jti"))
        if (
            not isinstance(roles, list)
            or not all(isinstance(r, str) for r in roles)
            or not isinstance(mfa, bool)
            or not isinstance(tier, str)
            or not isinstance(sid, str)
            or not isinstance(jti, str)
        ):
            raise TokenRejected("malformed claims (roles, mfa, tier, sid, jti)", tenant=tenant, subject=sub)
        principal = Principal(subject=sub, tenant=tenant, roles=frozenset(roles), mfa=mfa, tier=tier)
        return AccessClaims(principal=principal, jti=jti, sid=sid, exp=exp, iat=iat)


def _claim_reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim!r}"
    return f"invalid claims: {exc}"


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and _is_uuid(value) else None


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
