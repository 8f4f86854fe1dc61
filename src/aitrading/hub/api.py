"""The hub's HTTP API: `/api/v1/services`, `/health`, `/graph` and `/errors`.

Authorisation (every route needs a valid bearer token):

| route      | who                                   | why                                               |
|------------|---------------------------------------|---------------------------------------------------|
| `/health`  | any authenticated principal           | statuses only, no endpoints: dashboards show it   |
| `/services`| `platform_admin`                      | endpoints, instances, versions are internal        |
| `/graph`   | `platform_admin`                      | the platform's internal topology                  |
| `/errors`  | `platform_admin`                      | errors are platform-wide; no tenant sees them     |

This module does not use `from __future__ import annotations`: the `Annotated` dependency aliases close
over the router's token service, and FastAPI resolves string annotations in module globals only.
"""

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status

from aitrading.common.auth import Principal, TokenService, principal_dependency
from aitrading.common.clock import ns_to_datetime
from aitrading.hub.errordna import SEVERITIES, ErrorDNA, ErrorGroup
from aitrading.hub.graph import dependency_graph
from aitrading.hub.registry import Registry

__all__ = ["hub_router"]

ADMIN_ROLE = "platform_admin"


def _iso(ns: int) -> str:
    return ns_to_datetime(ns).isoformat().replace("+00:00", "Z")


def _public(group: ErrorGroup) -> dict[str, Any]:
    return {
        "fingerprint": group.fingerprint,
        "exc_type": group.exc_type,
        "message": group.message,
        "sample": group.sample,
        "event": group.event,
        "frames": list(group.frames),
        "count": group.count,
        "first_seen": _iso(group.first_seen_ns),
        "last_seen": _iso(group.last_seen_ns),
        "services": sorted(group.services),
        "instances": sorted(group.instances),
        "severity": group.severity,
        "recovery": group.recovery,
        "hints": list(group.hints),
    }


def hub_router(
    tokens: TokenService,
    registry: Registry,
    errors: ErrorDNA,
    services: Callable[[], Iterable[str]],
) -> APIRouter:
    """Return the hub's routes over its registry and ErrorDNA; `services()` names the declared services."""
    router = APIRouter(prefix="/api/v1", tags=["hub"])
    authenticated = principal_dependency(tokens)
    Caller = Annotated[Principal, Depends(authenticated)]

    async def platform_admin(principal: Caller) -> Principal:
        if not principal.has_role(ADMIN_ROLE):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "the platform's services and errors are for platform_admin only"
            )
        return principal

    Admin = Annotated[Principal, Depends(platform_admin)]

    @router.get("/health", summary="Aggregated health of the platform's services")
    async def health(_: Caller) -> dict[str, Any]:
        return registry.health()

    @router.get("/services", summary="Registry: every service instance, its endpoint, version and health")
    async def list_services(_: Admin) -> dict[str, Any]:
        return {"services": registry.instances(), "expected": list(registry.expected)}

    @router.get("/graph", summary="Declared dependency graph and the start order it gives")
    async def graph(_: Admin) -> dict[str, Any]:
        return dependency_graph(services())

    @router.get("/errors", summary="ErrorDNA: error groups by fingerprint, with recovery hints")
    async def list_errors(
        _: Admin,
        service: Annotated[
            str | None, Query(max_length=64, description="Only errors seen in this service")
        ] = None,
        severity: Annotated[
            Literal["critical", "high", "medium", "low"] | None, Query(description="Only this severity")
        ] = None,
        sort: Annotated[
            Literal["count", "last_seen"], Query(description="Most frequent or most recent first")
        ] = ("count"),
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        groups = errors.groups(service=service, severity=severity, sort=sort)
        return {
            "errors": [_public(g) for g in groups[:limit]],
            "total": len(groups),
            "severities": list(SEVERITIES),
            "reports": errors.reports,
            "dropped_by_senders": errors.dropped_by_senders,
        }

    return router
