"""The config service's HTTP API (behind the gateway at `/api/v1/config/...`).

Routes: `GET /api/v1/schema`, `GET /api/v1/effective?user=`, `GET /api/v1/history`, and
`GET|PUT|DELETE /api/v1/{scope}/{namespace}` with `scope` one of `global`, `tenant`, `user`. Reads answer an
`ETag` with the entry's version; `PUT` and `DELETE` need `If-Match` with that version (0 for an entry never
set): 428 without it, 409 when the entry changed since.

Who may do what (the tenant is the principal's; `?tenant=` is for platform_admin only, `?user=` names
another user of the principal's tenant):

| action          | global         | tenant                  | own user scope           | other user   |
|-----------------|----------------|-------------------------|--------------------------|--------------|
| read, history   | anyone         | members of the tenant   | the user                 | tenant_admin |
| write           | platform_admin | its tenant_admin        | the user, not an analyst | nobody       |

platform_admin reads any tenant (`?tenant=`) but writes only global; analysts only read.

This module does not use `from __future__ import annotations`: the `Annotated` dependency aliases close
over the router's token service, and FastAPI resolves string annotations in module globals only.
"""

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Response, status

from aitrading.common.auth import USER_CONFIG_WRITERS, Principal, TokenService, principal_dependency
from aitrading.common.errors import BadInputError, NotFoundError, PermissionDeniedError
from aitrading.config_service.namespaces import NAMESPACES, SCOPES, defaults, namespace
from aitrading.config_service.store import ConfigStore, EntryView, Owner, VersionConflictError, VersionView

__all__ = ["config_router"]

Scope = Literal["global", "tenant", "user"]
_SUBJECT = r"^[^\x00-\x1f\x7f]+$"
UserParam = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=_SUBJECT, description="Another user (tenant_admin)"),
]
TenantParam = Annotated[
    str | None, Query(min_length=1, max_length=64, description="A tenant's UUID (platform_admin only)")
]


def _tenant(principal: Principal, requested: str | None) -> uuid.UUID | None:
    text = requested or principal.tenant
    if text is None:
        return None
    if requested is not None and requested != principal.tenant and not principal.has_role("platform_admin"):
        raise PermissionDeniedError("only platform_admin reads another tenant's config")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise BadInputError(f"tenant {text!r} is not a tenant id (a UUID)") from None


def _read_owner(principal: Principal, scope: str, user: str | None, tenant: str | None) -> Owner:
    if scope == "global":
        return Owner("global")
    tid = _tenant(principal, tenant)
    if tid is None:
        raise BadInputError(f"the {scope} scope needs a tenant: this principal acts for none")
    if scope == "tenant":
        return Owner("tenant", tid)
    who = user or principal.subject
    if who != principal.subject and not principal.has_role("tenant_admin", "platform_admin"):
        raise PermissionDeniedError("only tenant_admin reads another user's config")
    return Owner("user", tid, who)


def _write_owner(principal: Principal, scope: str, user: str | None, tenant: str | None) -> Owner:
    if tenant is not None and tenant != principal.tenant:
        raise PermissionDeniedError("config is written only for the principal's own tenant")
    if scope == "global":
        if not principal.has_role("platform_admin"):
            raise PermissionDeniedError("only platform_admin writes global config")
        return Owner("global")
    tid = _tenant(principal, None)
    if tid is None:
        raise BadInputError(f"the {scope} scope needs a tenant: this principal acts for none")
    if scope == "tenant":
        if not principal.has_role("tenant_admin"):
            raise PermissionDeniedError("only tenant_admin writes tenant config")
        return Owner("tenant", tid)
    if user is not None and user != principal.subject:
        raise PermissionDeniedError("users write only their own user config")
    if not principal.roles & USER_CONFIG_WRITERS:
        raise PermissionDeniedError("analysts read config only")
    return Owner("user", tid, principal.subject)


def _expected(if_match: str | None) -> int:
    if if_match is None:
        raise HTTPException(
            status.HTTP_428_PRECONDITION_REQUIRED,
            "If-Match with the entry's version is required (0 for an entry never set); GET it first",
        )
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise BadInputError(f"If-Match must be the entry's version number, got {if_match!r}")
    return int(text)


def _entry(view: EntryView, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{view.version}"'
    return {
        "scope": view.owner.scope,
        "namespace": view.namespace,
        "tenant": view.owner.tenant_text,
        "user": view.owner.user or None,
        "version": view.version,
        "value": view.value,
        "updated_at": view.updated_at.isoformat() if view.updated_at else None,
        "updated_by": view.updated_by,
    }


def _change(v: VersionView) -> dict[str, Any]:
    return {
        "scope": v.owner.scope,
        "namespace": v.namespace,
        "tenant": v.owner.tenant_text,
        "user": v.owner.user or None,
        "version": v.version,
        "action": v.action,
        "ts": v.ts.isoformat(),
        "actor": v.actor,
        "old": v.old,
        "new": v.new,
        "diff": v.diff,
    }


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, VersionConflictError):
        return HTTPException(status.HTTP_409_CONFLICT, str(exc), headers={"ETag": f'"{exc.current}"'})
    if isinstance(exc, PermissionDeniedError):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(exc))
    if isinstance(exc, NotFoundError):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    return HTTPException(status.HTTP_400_BAD_REQUEST, str(exc))


def config_router(tokens: TokenService, store: ConfigStore) -> APIRouter:
    """Return the config routes over `store`."""
    router = APIRouter(prefix="/api/v1", tags=["config"])
    Caller = Annotated[Principal, Depends(principal_dependency(tokens))]

    @router.get("/schema", summary="Namespaces: their fields, defaults and the scopes that may set them")
    async def schema(_: Caller) -> dict[str, Any]:
        return {
            "scopes": list(SCOPES),
            "namespaces": {
                name: {
                    "description": ns.description,
                    "scopes": list(ns.scopes),
                    "defaults": defaults(ns),
                    "schema": ns.schema(),
                }
                for name, ns in NAMESPACES.items()
            },
        }

    @router.get("/effective", summary="Effective config: user over tenant over global over defaults")
    async def effective(
        principal: Caller, user: UserParam = None, tenant: TenantParam = None
    ) -> dict[str, Any]:
        try:
            tid = _tenant(principal, tenant)
            who = user or principal.subject
            if tid is not None and who != principal.subject:
                _read_owner(principal, "user", who, tenant)  # the same rule as reading that user's entries
            namespaces = await store.effective(tid, who if tid is not None else None)
        except BadInputError as exc:
            raise _http(exc) from None
        return {"tenant": None if tid is None else str(tid), "user": who, "namespaces": namespaces}

    @router.get("/history", summary="Changes of a scope's config, newest first")
    async def history(
        principal: Caller,
        scope: Annotated[Scope, Query()] = "tenant",
        namespace_name: Annotated[str | None, Query(alias="namespace", max_length=64)] = None,
        user: UserParam = None,
        tenant: TenantParam = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_version: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> dict[str, Any]:
        try:
            owner = _read_owner(principal, scope, user, tenant)
            if namespace_name is not None:
                namespace(namespace_name)
            changes = await store.history(owner, namespace_name, limit=limit, before_version=before_version)
        except BadInputError as exc:
            raise _http(exc) from None
        return {"changes": [_change(c) for c in changes]}

    @router.get("/{scope}/{namespace_name}", summary="One scope's override of a namespace (null: inherits)")
    async def read(
        principal: Caller,
        response: Response,
        scope: Scope,
        namespace_name: str,
        user: UserParam = None,
        tenant: TenantParam = None,
    ) -> dict[str, Any]:
        try:
            view = await store.get(_read_owner(principal, scope, user, tenant), namespace(namespace_name))
        except BadInputError as exc:
            raise _http(exc) from None
        return _entry(view, response)

    @router.put("/{scope}/{namespace_name}", summary="Set a scope's override (If-Match: its version)")
    async def write(
        principal: Caller,
        response: Response,
        scope: Scope,
        namespace_name: str,
        value: Annotated[dict[str, Any], Body(description="The fields this scope sets")],
        if_match: Annotated[str | None, Header()] = None,
        user: UserParam = None,
        tenant: TenantParam = None,
    ) -> dict[str, Any]:
        try:
            owner = _write_owner(principal, scope, user, tenant)
            ns = namespace(namespace_name)
            view = await store.put(owner, ns, value, expected=_expected(if_match), actor=principal.subject)
        except BadInputError as exc:
            raise _http(exc) from None
        return _entry(view, response)

    @router.delete("/{scope}/{namespace_name}", summary="Remove a scope's override (If-Match: its version)")
    async def remove(
        principal: Caller,
        response: Response,
        scope: Scope,
        namespace_name: str,
        if_match: Annotated[str | None, Header()] = None,
        user: UserParam = None,
        tenant: TenantParam = None,
    ) -> dict[str, Any]:
        try:
            owner = _write_owner(principal, scope, user, tenant)
            ns = namespace(namespace_name)
            view = await store.delete(owner, ns, expected=_expected(if_match), actor=principal.subject)
        except BadInputError as exc:
            raise _http(exc) from None
        return _entry(view, response)

    return router
