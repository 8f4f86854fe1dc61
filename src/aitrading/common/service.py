"""The service shell: every service is a `Service` component served as an ASGI app.

Each app answers `/health/live` (the process runs), `/health/ready` (the service and its own dependencies
work), `/metrics` (Prometheus) and `/version`, plus the routes of the service. These four are the only
unauthenticated routes besides login and JWKS (gateway issue).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse

from aitrading import __version__
from aitrading.common import metrics
from aitrading.common.lifecycle import Component, ComponentState

__all__ = ["Check", "Service", "make_app"]

Check = Callable[[], Awaitable[bool]]
"""A readiness check of one dependency: True when it works."""

_START = time.monotonic()


class Service(Component):
    """A deployable service: a component with readiness checks and HTTP routes.

    Subclasses set `name`, add checks with `add_check` and routers with `add_router`, and implement the
    lifecycle hooks. `capabilities` lists what the service does today (shown by `/version`).
    """

    name = "service"
    capabilities: tuple[str, ...] = ()

    def __init__(self, checks: dict[str, Check] | None = None) -> None:
        super().__init__()
        self._checks: dict[str, Check] = dict(checks or {})
        self._routers: list[APIRouter] = []
        self._app: FastAPI | None = None

    def add_check(self, name: str, check: Check) -> None:
        """Make readiness depend on `check` (a dependency of this service)."""
        self._checks[name] = check

    def add_router(self, router: APIRouter) -> None:
        """Serve `router`'s routes from this service's app."""
        self._routers.append(router)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Return (ready, details): ready when RUNNING and every dependency check passes."""
        checks: dict[str, str] = {}
        ok = self.state is ComponentState.RUNNING
        for name, check in self._checks.items():
            try:
                passed = await check()
            except Exception as exc:  # a failing check is an answer, not a crash
                passed = False
                checks[name] = f"error: {type(exc).__name__}: {exc}"[:200]
            else:
                checks[name] = "ok" if passed else "failing"
            ok = ok and passed
        detail: dict[str, Any] = {"service": self.name, "state": self.state.value, "checks": checks}
        if self.reason:
            detail["reason"] = self.reason
        return ok, detail

    @property
    def app(self) -> FastAPI:
        """The service's ASGI app (built once)."""
        if self._app is None:
            self._app = make_app(self)
        return self._app

    @property
    def routers(self) -> list[APIRouter]:
        return list(self._routers)

    async def _on_start(self) -> None:
        """Services without work of their own only need their dependencies."""

    async def _on_stop(self) -> None:
        """Services without work of their own hold nothing to flush."""


def make_app(service: Service) -> FastAPI:
    """Build the FastAPI app of `service` with the standard health, metrics and version routes."""
    app = FastAPI(
        title=f"aitrading {service.name}",
        version=__version__,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )

    @app.get("/health/live", tags=["health"], summary="The process is alive")
    async def live() -> dict[str, str]:
        return {"status": "live", "service": service.name}

    @app.get("/health/ready", tags=["health"], summary="The service and its dependencies are ready")
    async def ready() -> JSONResponse:
        ok, detail = await service.readiness()
        detail["status"] = "ready" if ok else "not_ready"
        return JSONResponse(detail, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics of this process")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    @app.get("/version", tags=["health"], summary="Version and capabilities")
    async def version() -> dict[str, Any]:
        return {
            "service": service.name,
            "version": __version__,
            "uptime_s": round(time.monotonic() - _START, 3),
            "capabilities": list(service.capabilities),
        }

    for router in service.routers:
        app.include_router(router)
    return app
