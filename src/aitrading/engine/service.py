"""Trading engine service (port 8007): the engine, its API and WebSocket, on the service shell.

It starts a `TradingEngine` over the bus, the OLTP database (books, audit chain) and the symbol specs the
kernel gives it, and serves `aitrading.engine.api` next to health, readiness, metrics and version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import Request

from aitrading.common.auth import Principal, TokenService
from aitrading.common.bus import Bus
from aitrading.common.clock import Clock
from aitrading.common.service import Check, Service
from aitrading.engine.api import engine_router
from aitrading.engine.engine import MarketOpenFn, TradingEngine
from aitrading.engine.signals import SignalAudit
from aitrading.engine.store import EngineStore
from aitrading.model.symbols import SymbolSpec
from aitrading.storage.audit import AuditLog
from aitrading.storage.oltp import Database

__all__ = ["EngineService"]


class EngineService(Service):
    """Trading engine: orders, risk, execution through agents, books, reconciliation, audit."""

    name = "engine"
    capabilities = (
        "POST /api/v1/orders: market and pending orders, MT5 pre-trade retcodes, risk limits, audited",
        "PATCH/DELETE /api/v1/orders/{id}: modify and cancel pending orders",
        "GET /api/v1/accounts[/{id}[/positions|/orders|/deals]]: books kept from the terminal's deals",
        "PUT /api/v1/risk/limits/{scope}/{id}, POST /api/v1/accounts/{id}/risk-state: limits, halts",
        "WS /api/v1/stream: order, position, account, risk and reconciliation events of the tenant",
        "execution through agents (ord.cmd/ord.rpt), reconciliation against terminal snapshots",
        "decision signals (sig.<tenant>.<strategy>) in the tenant's audit chain, before their orders",
    )

    def __init__(
        self,
        checks: dict[str, Check] | None,
        *,
        bus: Bus,
        db: Database,
        clock: Clock,
        tokens: TokenService,
        authenticate: Callable[[Request], Awaitable[Principal]],
        specs: Mapping[str, SymbolSpec],
        market_open: MarketOpenFn | None = None,
    ) -> None:
        super().__init__(checks)
        audit = AuditLog(db, clock)
        self.engine = TradingEngine(bus, EngineStore(db, clock), audit, clock, specs, market_open=market_open)
        self.signals = SignalAudit(bus, audit, lambda tenant: bool(self.engine.accounts_of(tenant)))
        self.add_router(engine_router(self.engine, authenticate, tokens, bus, clock))

    async def _on_start(self) -> None:
        await super()._on_start()
        await self.engine.start()
        await self.signals.start()

    async def _on_stop(self) -> None:
        await self.signals.stop()
        await self.engine.stop()
        await super()._on_stop()
