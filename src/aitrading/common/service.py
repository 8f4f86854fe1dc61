"""The service shell: every service is a `Service` component served as an ASGI app.

Each app answers `/health/live` (the process runs), `/health/ready` (the service and its own dependencies
work), `/metrics` (Prometheus) and `/version`, plus the routes of the service. These four are the only
unauthenticated routes besides login and JWKS (gateway issue).

A service given a bus with `report_to_hub` tells the central hub it exists: while it runs it publishes a
`ServiceHeartbeat` on `hub.heartbeat` every few seconds (name, instance, version, endpoint, capabilities,
readiness), and a last one with `stopping=True` when it stops. It also attaches the process's error
reporter (`aitrading.common.logging.ERROR_REPORTER`), so error events of the process reach the hub's
ErrorDNA on `hub.error`. An unhandled exception in a route is logged with its traceback (and so reported)
and answered with a plain 500.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from aitrading import __version__
from aitrading.common import metrics
from aitrading.common.bus.base import Bus
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.common.lifecycle import Component, ComponentState
from aitrading.common.logging import ERROR_REPORTER

__all__ = ["HEARTBEAT_SUBJECT", "PROCESS_INSTANCE", "Check", "Service", "ServiceHeartbeat", "make_app"]

HEARTBEAT_SUBJECT = "hub.heartbeat"
"""The bus subject of heartbeats; the central hub subscribes to it."""

PROCESS_INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
"""This process's instance id: the services of one all-in-one process share it."""

_log = structlog.get_logger("service")


class ServiceHeartbeat(Message, frozen=True, kw_only=True):
    """A service instance says it is alive, what it is, where it listens and whether it is ready."""

    name: str
    instance: str
    version: str
    endpoint: str
    ts_ns: int
    interval_s: float
    ready: bool
    state: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    reason: str = ""
    stopping: bool = False


Check = Callable[[], Awaitable[bool]]
"""A readiness check of one dependency: True when it works."""

_START = time.monotonic()

# FastAPI >= 0.130 instruments every request with OpenTelemetry unless told not to; asking whether a
# provider is configured costs ~6 µs per request (environment lookups), a tenth of the gateway's own work.
# The platform exports Prometheus metrics and structured logs instead, so the instrumentation is off.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


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
        self._hub: _HubLink | None = None

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

    def report_to_hub(
        self,
        bus: Bus,
        clock: Clock,
        *,
        endpoint: str,
        instance: str = PROCESS_INSTANCE,
        interval_s: float = 5.0,
    ) -> None:
        """Publish heartbeats and the process's error reports on `bus` while this service runs."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._hub = _HubLink(bus, clock, endpoint, instance, interval_s)

    async def heartbeat(self, *, stopping: bool = False) -> ServiceHeartbeat:
        """Build this service's heartbeat now and publish it (if reporting to the hub); return it."""
        link = self._hub
        if link is None:
            raise RuntimeError(f"service {self.name} does not report to the hub (call report_to_hub)")
        # A goodbye is not ready by definition; skipping the checks keeps shutdown fast (the gateway's
        # readiness asks every upstream, which may be gone by now).
        ready, detail = (False, {}) if stopping else await self.readiness()
        beat = ServiceHeartbeat(
            name=self.name,
            instance=link.instance,
            version=__version__,
            endpoint=link.endpoint,
            ts_ns=link.clock.now_ns(),
            interval_s=link.interval_s,
            ready=ready,
            state=self.state.value,
            checks={str(k): str(v) for k, v in detail.get("checks", {}).items()},
            capabilities=tuple(self.capabilities),
            reason=self.reason,
            stopping=stopping,
        )
        await link.publish(beat)
        return beat

    async def start(self) -> None:
        """Start the service; then, if it reports to the hub, begin heartbeats and error reports."""
        await super().start()
        link = self._hub
        if link is not None and link.task is None:
            ERROR_REPORTER.attach(link.bus, link.clock, instance=link.instance, service=self.name)
            link.task = asyncio.create_task(self._beat_forever(), name=f"heartbeat:{self.name}")

    async def stop(self) -> None:
        """Stop heartbeats (with a last `stopping` beat) and error reports, then the service."""
        link = self._hub
        if link is not None and link.task is not None:
            task, link.task = link.task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.heartbeat(stopping=True)
            await ERROR_REPORTER.detach(self.name)
        await super().stop()

    async def _beat_forever(self) -> None:
        assert self._hub is not None
        while True:
            try:
                await self.heartbeat()
            except Exception as exc:  # a readiness check that blows up must not end the heartbeats
                _log.warning("heartbeat_failed", service=self.name, error=repr(exc))
            # Wall-clock pacing on purpose: a TestClock's sleep returns at once and would spin this loop.
            await asyncio.sleep(self._hub.interval_s)

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
        **_NO_TELEMETRY,
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

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Logged here with the service's name so ErrorDNA knows whose it is (all-in-one serves ten apps
        # from one process); the server's own log line of the same exception is then not reported again.
        _log.error(
            "unhandled_exception",
            service=service.name,
            method=request.method,
            path=request.url.path,
            exc_info=exc,
        )
        return JSONResponse({"detail": "internal error"}, status_code=500)

    for router in service.routers:
        app.include_router(router)
    return app


class _HubLink:
    """Where and how often a service reports to the hub."""

    def __init__(self, bus: Bus, clock: Clock, endpoint: str, instance: str, interval_s: float) -> None:
        self.bus = bus
        self.clock = clock
        self.endpoint = endpoint
        self.instance = instance
        self.interval_s = interval_s
        self.task: asyncio.Task[None] | None = None
        self.failing = False

    async def publish(self, beat: ServiceHeartbeat) -> None:
        try:
            await self.bus.publish(HEARTBEAT_SUBJECT, beat)
        except Exception as exc:  # the bus may be down; the hub will see the service go stale
            if not self.failing:
                _log.warning("heartbeat_unpublished", service=beat.name, error=repr(exc))
            self.failing = True
        else:
            self.failing = False
