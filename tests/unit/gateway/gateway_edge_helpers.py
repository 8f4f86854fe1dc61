"""Test upstreams and a gateway over them, for the gateway edge tests.

`FakeUpstream` is a real `Service` with real routes that authenticate the gateway's service token, so a
test sees what the service behind the gateway sees. Its knobs (fail the next n calls, sleep) are plain
attributes a test sets. No `from __future__ import annotations`: FastAPI resolves the route annotations
built inside `_router` at runtime.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aitrading.common.auth import Principal, TokenService, principal_dependency
from aitrading.common.clock import Clock
from aitrading.common.service import Service
from aitrading.gateway.config import GatewayConfig
from aitrading.gateway.service import GatewayService
from aitrading.gateway.upstream import ASGIApp

SECRET = "a-test-secret-of-enough-length-for-the-gateway"
TENANT = "6f1c1c1e-1111-4c2b-9d7a-0123456789ab"


class FakeUpstream(Service):
    """A service with routes that show what reaches it and can be told to misbehave."""

    def __init__(self, name: str, tokens: TokenService) -> None:
        super().__init__()
        self.name = name
        self.calls: dict[str, int] = {}
        self.fail_next = 0
        self.fail_status = 503
        self.delay_s = 0.0
        self.seen_headers: list[dict[str, str]] = []
        self.add_router(self._router(tokens))

    def _count(self, what: str) -> None:
        self.calls[what] = self.calls.get(what, 0) + 1

    def _router(self, tokens: TokenService) -> APIRouter:
        router = APIRouter(prefix="/api/v1")
        authenticate = principal_dependency(tokens)
        caller = Annotated[Principal, Depends(authenticate)]

        @router.get("/whoami")
        async def whoami(principal: caller, request: Request) -> dict[str, Any]:
            self._count("whoami")
            self.seen_headers.append(dict(request.headers))
            return {
                "service": self.name,
                "path": request.url.path,
                "query": request.url.query,
                "subject": principal.subject,
                "tenant": principal.tenant,
                "roles": sorted(principal.roles),
                "mfa": principal.mfa,
                "tier": principal.tier,
            }

        @router.get("/flaky")
        async def flaky(principal: caller) -> JSONResponse:
            self._count("flaky")
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"detail": "temporarily failing"}, status_code=self.fail_status)
            return JSONResponse({"ok": True})

        @router.get("/slow")
        async def slow(principal: caller) -> dict[str, bool]:
            self._count("slow")
            await asyncio.sleep(self.delay_s)
            return {"ok": True}

        @router.get("/boom")
        async def boom(principal: caller) -> None:
            self._count("boom")
            raise RuntimeError("a bug in the upstream")

        @router.get("/stream")
        async def stream(principal: caller) -> StreamingResponse:
            async def chunks() -> AsyncIterator[bytes]:
                for i in range(5):
                    yield f"chunk-{i};".encode()

            return StreamingResponse(chunks(), media_type="text/plain")

        @router.post("/orders", status_code=201)
        async def order(principal: caller, request: Request) -> JSONResponse:
            self._count("orders")
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"detail": "temporarily failing"}, status_code=self.fail_status)
            body = await request.json()
            return JSONResponse({"accepted": body, "by": principal.subject}, status_code=201)

        @router.get("/admin/settings")
        async def admin(principal: caller) -> dict[str, bool]:
            self._count("admin")
            return {"admin": True}

        return router


def make_gateway(
    upstreams: Mapping[str, Service],
    tokens: TokenService,
    *,
    clock: Clock | None = None,
    config: GatewayConfig | None = None,
    over_http: bool = False,
    **kwargs: Any,
) -> GatewayService:
    """Return a gateway over `upstreams`, in process, or "over HTTP" through httpx (ASGI underneath)."""
    urls = {name: f"http://{name}.test" for name in upstreams}
    in_process: dict[str, ASGIApp] = {}
    gateway = GatewayService(
        urls,
        in_process=in_process if over_http else {n: s.app for n, s in upstreams.items()},
        tokens=tokens,
        authenticate=principal_dependency(tokens),
        clock=clock,
        config=config or GatewayConfig(),
        **kwargs,
    )
    if over_http:
        from aitrading.gateway.upstream import HttpTransport

        for name, upstream in gateway.upstreams.items():
            transport = httpx.ASGITransport(app=upstreams[name].app, raise_app_exceptions=False)
            client = httpx.AsyncClient(transport=transport)
            upstream.transport = HttpTransport(urls[name], client=client)
    return gateway


def client_of(gateway: GatewayService) -> httpx.AsyncClient:
    """An HTTP client of the gateway's app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app), base_url="http://gateway")


def bearer(tokens: TokenService, subject: str = "user:alice", **claims: Any) -> dict[str, str]:
    """An `Authorization` header for a principal with `claims` (tenant, roles, mfa, tier)."""
    claims.setdefault("tenant", TENANT)
    claims.setdefault("roles", ("analyst",))
    return {"Authorization": f"Bearer {tokens.issue(subject, **claims)}"}
