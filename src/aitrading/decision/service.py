"""Decision engine service (port 8014): configured strategies on live bars, combined into signals.

`DecisionPipeline` is the service's bus side: it subscribes to the closed bars of the configured
feed/symbols/timeframe (`md.bar.<feed>.<symbol>.<tf>`), runs every configured strategy on them inside the
safe wrapper, hands their intents to the `DecisionEngine` (weighted ensemble, threshold, regime filter),
which publishes signals on `sig.<tenant>.<strategy>` and sends the orders to the trading engine's risk
check through the `submit` port. The backtester runs the same strategy and decision classes.

The defaults of the orders (volume when an intent names none, deviation, filling, magic) come from the
`defaults` provider: the kernel passes one that reads the tenant's `trading` config through the config
service (`ConfiguredOrderDefaults`); without one the engine's fixed defaults apply. The pipeline starts and
stops the provider with itself.

Where the orders go: in one process with the trading engine, the kernel passes the engine's own
`submit` and reads its books for `positions`. In split mode the kernel passes an `EngineClient`
(`aitrading.decision.engine_client`): the same ports over the engine's HTTP API with a service token for
the configured tenant, and the pipeline refreshes the client's snapshot of the account's positions before
each decision. The client's counters (accepted, denied, refused, unreachable, retries) are in `status`.

Without an engine port (no tenant, account or strategies configured, or built without a bus) the service
runs its shell only: health, readiness, metrics, version, and `status` says why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request

from aitrading.common.auth import Principal
from aitrading.common.bus import Bus
from aitrading.common.bus.base import Subscription
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.common.config import DecisionServiceConfig
from aitrading.common.service import Check, Service
from aitrading.decision.defaults import OrderDefaultsProvider
from aitrading.decision.engine import DecisionConfig, DecisionEngine, PositionsFn, SubmitFn
from aitrading.decision.engine_client import EngineClient
from aitrading.model.ids import ClientOrderIdGenerator, bar_subject
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies.base import OrderIntent
from aitrading.strategies.loader import SafeStrategy, load_strategy

__all__ = ["DecisionPipeline", "DecisionService", "DecisionSettings", "parse_strategies"]

_log = structlog.get_logger("decision")


DecisionSettings = DecisionServiceConfig
"""The `decision` section of the platform config (`AITRADING_DECISION__TENANT`, …)."""


def parse_strategies(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse `name[:k=v,k=v];…`; raise `ValueError` naming a bad item."""
    out = []
    for item in filter(None, (p.strip() for p in text.split(";"))):
        name, _, rest = item.partition(":")
        params: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"strategy parameter {pair!r} of {name!r} needs key=value")
            params[key.strip()] = value.strip()
        out.append((name.strip(), params))
    return out


class _Ctx:
    def __init__(self, clock: Clock, engine: DecisionEngine) -> None:
        self._clock, self._engine = clock, engine

    def now_ns(self) -> int:
        return self._clock.now_ns()

    def position(self, symbol: str) -> int:
        return self._engine.direction(symbol)


class DecisionPipeline:
    """Bars in, strategy intents through the decision engine, signals and orders out."""

    def __init__(
        self,
        settings: DecisionSettings,
        bus: Bus,
        clock: Clock,
        submit: SubmitFn,
        positions: PositionsFn,
        defaults: OrderDefaultsProvider | None = None,
        engine_client: EngineClient | None = None,
    ) -> None:
        self.settings = settings
        self._bus = bus
        self.engine_client = engine_client
        self.strategies = [
            SafeStrategy(load_strategy(name, params), max_failures=settings.max_failures)
            for name, params in parse_strategies(settings.strategies)
        ]
        if not self.strategies:
            raise ValueError("AITRADING_DECISION_STRATEGIES names no strategy")
        self.engine = DecisionEngine(
            DecisionConfig(
                tenant=settings.tenant,
                account=settings.account,
                strategy=settings.strategy,
                threshold=settings.threshold,
            ),
            bus,
            clock,
            submit,
            positions,
            ClientOrderIdGenerator(clock, prefix="DE"),
            defaults,
        )
        self._ctx = _Ctx(clock, self.engine)
        self._subs: list[Subscription] = []
        self.bars = 0

    async def start(self) -> None:
        """Start the order defaults provider (and engine client), and subscribe to the configured bars."""
        await self.engine.defaults.start()
        if self.engine_client is not None:
            await self.engine_client.start()
        tf = Timeframe.parse(self.settings.timeframe)
        for symbol in filter(None, (s.strip() for s in self.settings.symbols.split(","))):
            self._subs.append(
                await self._bus.subscribe(bar_subject(self.settings.feed, symbol, tf), self._on_bar)
            )
        for s in self.strategies:
            s.on_start(self._ctx)

    async def stop(self) -> None:
        """Unsubscribe and stop the order defaults provider."""
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []
        await self.engine.defaults.stop()
        if self.engine_client is not None:
            await self.engine_client.stop()

    async def _on_bar(self, subject: str, msg: Message) -> None:
        if not isinstance(msg, Bar):
            return
        self.bars += 1
        intents: list[OrderIntent] = []
        for s in self.strategies:
            intents += s.on_bar(msg, self._ctx)
        self.engine.on_price(msg.symbol, msg.close / PRICE_SCALE)
        if intents:
            if self.engine_client is not None:  # the engine asks for positions while it decides
                await self.engine_client.refresh()
            await self.engine.on_intents(intents)

    def status(self) -> dict[str, Any]:
        """Strategies (enabled, failures, last error) and the engine's counters and directions."""
        out = {
            "bars": self.bars,
            "strategies": [s.status() for s in self.strategies],
            **self.engine.status(),
        }
        if self.engine_client is not None:
            out["engine_client"] = self.engine_client.status()
        return out


class DecisionService(Service):
    """Decision engine: strategies + model ensemble → signals with confidence → the engine's risk check."""

    name = "decision"
    capabilities = (
        "strategies on closed bars (versioned interface, safe wrapper) → weighted ensemble, confidence "
        "threshold, regime filter → signals on sig.<tenant>.<strategy> → orders to the trading engine",
        "GET /api/v1/status (authenticated): strategies, failures, counters",
    )

    def __init__(
        self,
        checks: dict[str, Check] | None = None,
        *,
        bus: Bus | None = None,
        clock: Clock | None = None,
        submit: SubmitFn | None = None,
        positions: PositionsFn | None = None,
        settings: DecisionSettings | None = None,
        defaults: OrderDefaultsProvider | None = None,
        authenticate: Callable[[Request], Awaitable[Principal]] | None = None,
        engine_client: EngineClient | None = None,
    ) -> None:
        """Trade through `submit`/`positions` (in process) or `engine_client` (over HTTP), given a bus."""
        super().__init__(checks)
        self.pipeline: DecisionPipeline | None = None
        self.idle_reason = ""
        self._idle_client = engine_client  # closed at stop when no pipeline owns it
        settings = settings or DecisionSettings()
        if engine_client is not None:
            submit, positions = engine_client.submit, engine_client.positions
        if not settings.strategies or not settings.tenant or not settings.account:
            self.idle_reason = (
                "set AITRADING_DECISION__TENANT, __ACCOUNT and __STRATEGIES to trade: "
                "the service runs its shell only"
            )
        elif bus is None or clock is None or submit is None or positions is None:
            self.idle_reason = "no trading engine port wired: the service runs its shell only"
        else:
            self.pipeline = DecisionPipeline(
                settings, bus, clock, submit, positions, defaults, engine_client=engine_client
            )
            self._idle_client = None
        if authenticate is None:  # the status names strategies and accounts: never without a caller
            return
        router = APIRouter(prefix="/api/v1", tags=["decision"], dependencies=[Depends(authenticate)])

        @router.get("/status")
        async def status() -> dict[str, Any]:
            if self.pipeline is None:
                return {"running": False, "reason": self.idle_reason}
            return {"running": True, **self.pipeline.status()}

        self.add_router(router)

    async def _on_start(self) -> None:
        await super()._on_start()
        if self.pipeline is not None:
            await self.pipeline.start()
        else:
            _log.info("decision_idle", reason=self.idle_reason)

    async def _on_stop(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.stop()
        if self._idle_client is not None:
            await self._idle_client.stop()
        await super()._on_stop()
