"""API gateway service.

Today: `/health/ready` aggregates the readiness of every service the platform started (over HTTP, the same
in all-in-one and split), so one URL tells whether the platform works. Identity, routing, rate limits and
RBAC arrive with the gateway issue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from aitrading.common.service import Service

__all__ = ["GatewayService"]


class GatewayService(Service):
    """The gateway: aggregated readiness of the platform's services."""

    name = "gateway"
    capabilities = ("aggregated readiness of every started service at /health/ready",)

    def __init__(self, upstreams: dict[str, str], *, timeout_s: float = 2.0) -> None:
        super().__init__()
        self._upstreams = dict(upstreams)
        self._timeout = timeout_s
        self._client: httpx.AsyncClient | None = None
        self.last_report: dict[str, Any] = {}

    async def _on_start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._timeout)

    async def _on_stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def upstream_readiness(self) -> dict[str, Any]:
        """Ask every upstream's `/health/ready`; return {service: {ready, status, detail}}."""
        client = self._client or httpx.AsyncClient(timeout=self._timeout)

        async def one(name: str, url: str) -> tuple[str, dict[str, Any]]:
            try:
                resp = await client.get(f"{url}/health/ready")
                body = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                return name, {"ready": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
            return name, {"ready": resp.status_code == 200, **body}

        results = await asyncio.gather(*(one(n, u) for n, u in self._upstreams.items()))
        if client is not self._client:
            await client.aclose()
        return dict(results)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        ok, detail = await super().readiness()
        services = await self.upstream_readiness()
        detail["services"] = services
        self.last_report = services
        return ok and all(s["ready"] for s in services.values()), detail
