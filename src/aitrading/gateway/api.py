"""The gateway's own routes and the documented proxy routes.

`/api/v1/gateway/upstreams` shows each upstream's transport, breaker and bulkhead. `ProxyRoute` puts one
route per upstream (`/api/v1/<service>/{path}`) in the FastAPI app, so Starlette routes to it and the
OpenAPI document describes it (auth, the gateway's own error answers), while the request itself is handled
by the proxy's raw ASGI handler instead of FastAPI's request/response machinery (see `proxy`).

This module does not use `from __future__ import annotations`: FastAPI resolves the dependency aliases
built inside the router factory at runtime.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Security, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp

from aitrading.common.auth import Principal
from aitrading.gateway.policy import Policy

__all__ = ["BEARER", "ErrorPublic", "ProxyRoute", "UpstreamPublic", "gateway_router"]


BEARER = HTTPBearer(
    auto_error=False,  # the gateway answers 401 with the reason itself; this documents the scheme
    description="An access token (JWT) of a user or an API key of a program.",
)


class ErrorPublic(BaseModel):
    """An answer of the gateway itself (not of the service behind it)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"detail": "upstream engine is unreachable", "reason": "upstream_unreachable"}
        }
    )

    detail: str
    reason: str | None = None
    """A stable code: unauthenticated, rate_limited, denied, mfa_required, bad_path, too_large,
    bulkhead_full, breaker_open, upstream_timeout, upstream_unreachable, upstream_failed."""


class BreakerPublic(BaseModel):
    state: str
    consecutive_failures: int
    retry_after_s: int | None = None


class BulkheadPublic(BaseModel):
    in_flight: int
    max_in_flight: int


class UpstreamPublic(BaseModel):
    """One service behind the gateway."""

    mode: str
    """`in-process` (all-in-one) or `http` (split)."""
    url: str
    pool: str
    """The bulkhead it belongs to: `trading` or `analytics`."""
    timeout_s: float
    breaker: BreakerPublic
    bulkhead: BulkheadPublic


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorPublic, "description": description}


PROXY_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {"description": "The service's own answer, passed through."},
    400: _error("The path has '.' or '..' segments."),
    401: _error("No valid credential."),
    403: _error("The route table does not allow this principal here, or the route needs MFA step-up."),
    413: _error("The request body is larger than the gateway accepts."),
    429: _error("A rate limit of the principal or its tenant is exhausted; see Retry-After."),
    502: _error("The service is unreachable or failed without answering."),
    503: _error("The service's circuit breaker is open, its bulkhead is full, or auth is unavailable."),
    504: _error("The service did not answer in time."),
}


class ProxyRoute(APIRoute):
    """A documented route whose requests go straight to a raw ASGI handler."""

    def __init__(self, upstream: str, handler: ASGIApp, methods: list[str]) -> None:
        async def proxied(
            path: Annotated[str, Path(description=f"The path under the {upstream} service's `/api/v1/`.")],
            _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
        ) -> None:
            """Stand in for the proxy in the OpenAPI document (requests never reach it: see `self.app`)."""

        super().__init__(
            f"/api/v1/{upstream}/{{path:path}}",
            proxied,
            methods=methods,
            name=f"proxy-{upstream}",
            tags=["proxy"],
            summary=f"Call the {upstream} service",
            description=(
                f"`/api/v1/{upstream}/<path>` is the {upstream} service's `/api/v1/<path>`, after "
                "authentication, rate limits and the route table. The caller's credential is not passed on; "
                "the service gets the caller's identity in a short-lived gateway-signed token."
            ),
            responses=PROXY_RESPONSES,
        )
        self.app = handler


def gateway_router(
    authenticate: Callable[[Request], Awaitable[Principal]],
    policy: Policy,
    snapshot: Callable[[], dict[str, dict[str, Any]]],
) -> APIRouter:
    """Return the gateway's own `/api/v1/gateway` routes."""

    async def caller(
        request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
    ) -> Principal:
        principal = await authenticate(request)
        decision = policy.decide(
            principal, "gateway", request.method, request.url.path[len("/api/v1/gateway") :]
        )
        if not decision.allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, decision.reason)
        return principal

    router = APIRouter(prefix="/api/v1/gateway", tags=["gateway"])

    @router.get(
        "/upstreams",
        summary="The services behind the gateway: transport, circuit breaker and bulkhead",
        responses={401: _error("No valid credential."), 403: _error("Not allowed by the route table.")},
    )
    async def upstreams(_principal: Annotated[Principal, Depends(caller)]) -> dict[str, UpstreamPublic]:
        return {name: UpstreamPublic.model_validate(s) for name, s in snapshot().items()}

    return router
