"""The identity HTTP API: `/api/v1/auth/*` and `/.well-known/jwks.json`.

Login, refresh, logout and the JWKS are public; everything else needs a bearer access token (API keys may
call `/me` and list their own keys). User and API-key administration needs `tenant_admin` or
`platform_admin` and, by default, a session that proved TOTP (`POST /api/v1/auth/mfa/verify` steps up).
A platform admin may act on another tenant with `?tenant=<slug or id>`. Errors are 4xx with the reason.
"""

# No `from __future__ import annotations`: FastAPI must see the per-router `Auth` aliases as real objects.

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from aitrading.common.errors import BadInputError, NotFoundError, PermissionDeniedError
from aitrading.gateway.identity.authenticate import AuthContext, client_ip
from aitrading.gateway.identity.errors import AuthenticationError, ConflictError, ThrottledError
from aitrading.gateway.identity.schemas import (
    AccessTokenPublic,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    LoginRequest,
    LogoutRequest,
    MePublic,
    MfaCode,
    MfaConfirmed,
    MfaEnrolment,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserPublic,
)
from aitrading.gateway.identity.service import IdentityService
from aitrading.gateway.identity.sessions import ClientInfo
from aitrading.gateway.identity.tokens import AccessClaims

__all__ = ["build_router"]

PREFIX = "/api/v1/auth"
_ADMINS = ("tenant_admin", "platform_admin")


@contextmanager
def http_errors() -> Iterator[None]:
    """Turn the identity service's errors into HTTP answers with the reason."""
    try:
        yield
    except AuthenticationError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            {"code": exc.code, "reason": exc.reason},
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    except ThrottledError as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except PermissionDeniedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except BadInputError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


def _client(request: Request) -> ClientInfo:
    return ClientInfo(ip=client_ip(request), user_agent=request.headers.get("user-agent"))


class _Guards:
    """The routes' checks: who is calling, with a session or a key, with which admin rights."""

    def __init__(self, identity: IdentityService) -> None:
        self.identity = identity

    async def current(self, request: Request) -> AuthContext:
        return await self.identity.authenticator.context(request)

    @staticmethod
    def session_of(auth: AuthContext) -> AccessClaims:
        if auth.claims is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a user session, not an API key")
        return auth.claims

    async def admin_tenant(self, auth: AuthContext, tenant: str | None) -> uuid.UUID:
        """Return the tenant an admin acts on; 403 unless the caller may administer it."""
        p = self.session_of(auth).principal
        if not p.has_role(*_ADMINS):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "this needs the role tenant_admin or platform_admin"
            )
        if self.identity.config.admin_requires_mfa and not p.mfa:
            reason = f"administration needs a session that proved TOTP (POST {PREFIX}/mfa/verify)"
            raise HTTPException(status.HTTP_403_FORBIDDEN, {"code": "mfa_required", "reason": reason})
        own = uuid.UUID(p.tenant or "")
        if tenant is None:
            return own
        with http_errors():
            target = (await self.identity.directory.tenant(tenant)).id
        if target != own and not p.has_role("platform_admin"):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a tenant admin acts only on its own tenant")
        return target


TenantParam = Annotated[str | None, Query(description="platform admins: another tenant's slug or id")]
Client = Annotated[ClientInfo, Depends(_client)]


def build_router(identity: IdentityService) -> APIRouter:
    """Return the router of the identity API over `identity`."""
    router = APIRouter(tags=["auth"])
    guards = _Guards(identity)
    _public_routes(router, identity)
    _caller_routes(router, identity, guards)
    _key_routes(router, identity, guards)
    _user_routes(router, identity, guards)
    return router


def _public_routes(router: APIRouter, identity: IdentityService) -> None:
    authenticator = identity.authenticator

    @router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
    @router.get(f"{PREFIX}/jwks", summary="Public keys that verify access tokens")
    async def jwks() -> dict[str, object]:
        return identity.jwks()

    @router.post(f"{PREFIX}/login", summary="Password (+ TOTP) → access and refresh tokens")
    async def login(body: LoginRequest, client: Client) -> TokenPair:
        with http_errors():
            return await identity.sessions.login(body, client)

    @router.post(f"{PREFIX}/refresh", summary="Rotate a refresh token for a new token pair")
    async def refresh(body: RefreshRequest, client: Client) -> TokenPair:
        with http_errors():
            return await identity.sessions.refresh(body.refresh_token, client)

    @router.post(f"{PREFIX}/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke the session")
    async def logout(request: Request, body: LogoutRequest, client: Client) -> Response:
        claims: AccessClaims | None = None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            try:
                claims = await authenticator.verify_access_token(token.strip(), client.ip)
            except HTTPException:
                if not body.refresh_token:  # an expired access token must not block revoking by refresh token
                    raise
        with http_errors():
            await identity.sessions.logout(claims, body.refresh_token, client)
        return Response(status_code=status.HTTP_204_NO_CONTENT)


def _caller_routes(router: APIRouter, identity: IdentityService, guards: _Guards) -> None:
    Auth = Annotated[AuthContext, Depends(guards.current)]

    @router.get(f"{PREFIX}/me", summary="Who am I: user, tenant, roles, MFA, tier and quotas")
    async def me(auth: Auth) -> MePublic:
        with http_errors():
            return await identity.me(auth)

    @router.post(f"{PREFIX}/mfa/enrol", summary="Start TOTP enrolment: secret and otpauth URI")
    async def mfa_enrol(auth: Auth) -> MfaEnrolment:
        with http_errors():
            return await identity.mfa.enrol(guards.session_of(auth))

    @router.post(f"{PREFIX}/mfa/confirm", summary="Enable TOTP with a first code; returns backup codes")
    async def mfa_confirm(auth: Auth, body: MfaCode, client: Client) -> MfaConfirmed:
        with http_errors():
            return await identity.mfa.confirm(guards.session_of(auth), body.code, client)

    @router.post(f"{PREFIX}/mfa/verify", summary="Step up: prove TOTP, get an access token with mfa=true")
    async def mfa_verify(auth: Auth, body: MfaCode, client: Client) -> AccessTokenPublic:
        with http_errors():
            return await identity.mfa.verify(guards.session_of(auth), body.code, client)

    @router.post(f"{PREFIX}/mfa/disable", status_code=status.HTTP_204_NO_CONTENT, summary="Turn TOTP off")
    async def mfa_disable(auth: Auth, body: MfaCode, client: Client) -> Response:
        with http_errors():
            await identity.mfa.disable(guards.session_of(auth), body.code, client)
        return Response(status_code=status.HTTP_204_NO_CONTENT)


def _key_routes(router: APIRouter, identity: IdentityService, guards: _Guards) -> None:
    Auth = Annotated[AuthContext, Depends(guards.current)]

    @router.get(f"{PREFIX}/keys", summary="API keys of the tenant (admins) or of the calling api_user")
    async def list_keys(auth: Auth, tenant: TenantParam = None) -> list[ApiKeyPublic]:
        p = auth.principal
        if p.has_role(*_ADMINS):
            tid = await guards.admin_tenant(auth, tenant)
            with http_errors():
                return await identity.api_keys.list(tid)
        if not p.has_role("api_user"):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin role or the role api_user")
        with http_errors():
            return await identity.api_keys.list(uuid.UUID(p.tenant or ""), user_id=uuid.UUID(p.subject))

    @router.post(
        f"{PREFIX}/keys", status_code=status.HTTP_201_CREATED, summary="Create an API key (shown once)"
    )
    async def create_key(auth: Auth, body: ApiKeyCreate, tenant: TenantParam = None) -> ApiKeyCreated:
        tid = await guards.admin_tenant(auth, tenant)
        with http_errors():
            return await identity.api_keys.create(tid, body, actor=f"user:{auth.principal.subject}")

    @router.delete(f"{PREFIX}/keys/{{key_id}}", summary="Revoke an API key")
    async def revoke_key(auth: Auth, key_id: uuid.UUID, tenant: TenantParam = None) -> ApiKeyPublic:
        tid = await guards.admin_tenant(auth, tenant)
        with http_errors():
            return await identity.api_keys.revoke(tid, key_id, actor=f"user:{auth.principal.subject}")


def _user_routes(router: APIRouter, identity: IdentityService, guards: _Guards) -> None:
    Auth = Annotated[AuthContext, Depends(guards.current)]

    @router.get(f"{PREFIX}/users", summary="Users of the tenant")
    async def list_users(auth: Auth, tenant: TenantParam = None) -> list[UserPublic]:
        tid = await guards.admin_tenant(auth, tenant)
        with http_errors():
            return await identity.directory.list_users(tid)

    @router.post(f"{PREFIX}/users", status_code=status.HTTP_201_CREATED, summary="Create a user")
    async def create_user(auth: Auth, body: UserCreate, tenant: TenantParam = None) -> UserPublic:
        tid = await guards.admin_tenant(auth, tenant)
        with http_errors():
            return await identity.directory.create_user(
                tid,
                body,
                actor=f"user:{auth.principal.subject}",
                may_create_platform_admin=auth.principal.has_role("platform_admin"),
            )

    @router.post(f"{PREFIX}/users/{{user_id}}/disable", summary="Disable a user and end its sessions")
    async def disable_user(auth: Auth, user_id: uuid.UUID, tenant: TenantParam = None) -> UserPublic:
        tid = await guards.admin_tenant(auth, tenant)
        if str(user_id) == auth.principal.subject:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "you cannot disable yourself")
        with http_errors():
            return await identity.directory.disable_user(tid, user_id, actor=f"user:{auth.principal.subject}")

    @router.post(f"{PREFIX}/users/{{user_id}}/unlock", summary="Lift a lockout")
    async def unlock_user(auth: Auth, user_id: uuid.UUID, tenant: TenantParam = None) -> UserPublic:
        tid = await guards.admin_tenant(auth, tenant)
        with http_errors():
            return await identity.directory.unlock_user(tid, user_id, actor=f"user:{auth.principal.subject}")
