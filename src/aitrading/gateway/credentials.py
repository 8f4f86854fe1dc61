"""The gateway's authenticator: users' access tokens and API keys through identity, plus service tokens.

Users and programs authenticate with identity's credentials (an EdDSA access token with a `kid`, or an
API key: ADR 0010). The platform's own HS256 service tokens (ADR 0006, `aitrading token`, service to
service calls) keep working: a bearer JWT whose header names `HS256` is verified against the service-token
secret, and nothing else. The header only picks which verifier runs; each verifier pins its own algorithm,
so a token cannot choose a weaker check (an HS256 token "signed" with a public key fails the HMAC check, a
`none` token fails identity's). A rejected service token is audited like any invalid credential (platform
chain, rate-limited per IP and reason).
"""

from __future__ import annotations

import jwt
from fastapi import HTTPException, status
from starlette.requests import Request

from aitrading.common.auth import Principal, TokenService
from aitrading.gateway.identity import Authenticator, client_ip
from aitrading.gateway.identity.context import SecurityAudit

__all__ = ["GatewayAuthenticator"]

_SERVICE_ALGORITHM = "HS256"
_MAX_TOKEN = 4096


def _is_service_token(token: str) -> bool:
    """Tell whether a bearer token claims to be a service token (an HS256 JWT), without trusting it."""
    try:
        return jwt.get_unverified_header(token).get("alg") == _SERVICE_ALGORITHM
    except jwt.InvalidTokenError:
        return False


class GatewayAuthenticator:
    """`authenticate(request) -> Principal` for the proxy: identity's credentials or a service token."""

    def __init__(self, identity: Authenticator, tokens: TokenService, audit: SecurityAudit) -> None:
        self._identity = identity
        self._tokens = tokens
        self._audit = audit

    async def __call__(self, request: Request) -> Principal:
        """Return the caller's principal or raise `HTTPException(401)` with the reason."""
        headers = request.headers
        scheme, _, value = headers.get("authorization", "").partition(" ")
        token = value.strip()
        if (
            "x-api-key" not in headers
            and scheme.lower() == "bearer"
            and len(token) <= _MAX_TOKEN
            and _is_service_token(token)
        ):
            return await self._service(token, request)
        return await self._identity.authenticate(request)

    async def _service(self, token: str, request: Request) -> Principal:
        try:
            return self._tokens.verify(token)
        except jwt.InvalidTokenError as exc:
            reason = f"service token: {exc}"[:120]
            await self._audit.invalid_credential(
                None, client_ip(request), reason, {"credential": "service_token"}
            )
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"invalid token: {reason}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
