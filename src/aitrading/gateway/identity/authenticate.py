"""The gateway's authenticator: a bearer access token or an API key in, a `Principal` out, or 401.

Accepted credentials: `Authorization: Bearer <access JWT>`, `X-API-Key: <key>` or
`Authorization: ApiKey <key>`. Verifying an access token touches no database: the public keys are cached
in memory and revocation is two cache look-ups (the token's `jti`, its session `sid`). Every rejected
credential is answered with 401 and the reason, and audited (`security.invalid_token`) in the tenant's chain
when the signature proved the tenant, else in the platform chain (rate-limited per IP and reason).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from fastapi import HTTPException, status
from starlette.requests import Request

from aitrading.common.auth import Principal
from aitrading.gateway.identity.apikeys import ApiKeyStore
from aitrading.gateway.identity.context import SecurityAudit
from aitrading.gateway.identity.tokens import AccessClaims, AccessTokens, TokenRejected
from aitrading.storage.cache import Cache

__all__ = ["AuthContext", "Authenticator", "client_ip"]

_MAX_CREDENTIAL = 4096


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Who is calling and with what: an access token's claims, or an API key's id."""

    principal: Principal
    claims: AccessClaims | None = None
    api_key_id: uuid.UUID | None = None


def client_ip(request: Request) -> str | None:
    """Return the peer address (proxies in front of the gateway must be trusted explicitly, not by header)."""
    return request.client.host if request.client is not None else None


def _unauthorized(reason: str, scheme: str = "Bearer") -> HTTPException:
    challenge = f'{scheme} error="invalid_token"' if scheme == "Bearer" else scheme
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": challenge})


class Authenticator:
    """Authenticate requests for the gateway and the identity routes."""

    def __init__(
        self, tokens: AccessTokens, api_keys: ApiKeyStore, cache: Cache, audit: SecurityAudit
    ) -> None:
        self._tokens = tokens
        self._api_keys = api_keys
        self._cache = cache
        self._audit = audit

    async def authenticate(self, request: Request) -> Principal:
        """Return the caller's principal or raise `HTTPException(401, reason)`."""
        return (await self.context(request)).principal

    async def context(self, request: Request) -> AuthContext:
        """Return the caller's principal with the token claims or key id behind it; 401 otherwise."""
        header = request.headers.get("authorization", "")
        api_key = request.headers.get("x-api-key")
        scheme, _, value = header.partition(" ")
        if api_key is None and scheme.lower() == "apikey":
            api_key = value.strip()
        ip = client_ip(request)
        if api_key is not None:
            return await self._api_key(api_key, ip)
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("missing credentials: send a bearer access token or an API key")
        claims = await self.verify_access_token(value.strip(), ip)
        return AuthContext(claims.principal, claims=claims)

    async def verify_access_token(self, token: str, ip: str | None) -> AccessClaims:
        """Verify an access token and its revocation state; raise `HTTPException(401)` with the reason."""
        try:
            if len(token) > _MAX_CREDENTIAL:
                raise TokenRejected("token too large")
            claims = await self._tokens.verify(token)
            # Both look-ups at once: on Redis that is one round trip's wait instead of two.
            by_jti, by_sid = await asyncio.gather(
                self._cache.get(f"idn:deny:jti:{claims.jti}"), self._cache.get(f"idn:deny:sid:{claims.sid}")
            )
            if by_jti is not None:
                raise TokenRejected("token revoked", tenant=claims.principal.tenant)
            if by_sid is not None:
                raise TokenRejected("session revoked", tenant=claims.principal.tenant)
        except TokenRejected as exc:
            await self._audit.invalid_credential(exc.tenant, ip, exc.reason, {"credential": "access_token"})
            raise _unauthorized(f"invalid token: {exc.reason}") from None
        return claims

    async def _api_key(self, key: str, ip: str | None) -> AuthContext:
        try:
            if len(key) > _MAX_CREDENTIAL:
                raise TokenRejected("API key too large")
            principal, key_id = await self._api_keys.authenticate(key)
        except TokenRejected as exc:
            await self._audit.invalid_credential(exc.tenant, ip, exc.reason, {"credential": "api_key"})
            raise _unauthorized(f"invalid API key: {exc.reason}", scheme="ApiKey") from None
        return AuthContext(principal, api_key_id=key_id)
