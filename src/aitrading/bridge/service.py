"""The data bridge service."""

from __future__ import annotations

from collections.abc import Callable

from aitrading.bridge.bars import BarBuilder
from aitrading.bridge.orders import OrderRouter
from aitrading.bridge.pipeline import IngestPipeline, LatestCache, TickSink
from aitrading.bridge.symbols import SymbolRegistry
from aitrading.bridge.ws import AgentEndpoint, DeviceAuth
from aitrading.common.bus import Bus, encode
from aitrading.common.clock import Clock
from aitrading.common.config import BridgeConfig
from aitrading.common.service import Check, Service
from aitrading.model.validation import TickValidator, ValidationPolicy

__all__ = ["BridgeService"]


class BridgeService(Service):
    """Agent WebSocket → validation → bus + tick store + bars M1…D1 + latest-tick cache; orders both ways."""

    name = "bridge"
    capabilities = (
        "agent websocket with device keys, sequence numbers and acks after durable store",
        "per-tick validation with rejections counted by reason, spike filter included",
        "publish md.tick.<feed>.<symbol>",
        "bars M1…D1 built like MT5's, published on md.bar.<feed>.<symbol>.<tf> and stored",
        "batched tick store writes, exactly once across bridge restarts",
        "latest tick per symbol in the cache",
        "trade commands ord.cmd.<tenant>.<account> forwarded to the account's agent, one agent per account",
        "order reports on ord.rpt, account snapshots on acct.snap, agent presence on agent.presence",
    )

    def __init__(
        self,
        config: BridgeConfig,
        bus: Bus,
        store: TickSink,
        clock: Clock,
        authenticate: DeviceAuth,
        *,
        cache: LatestCache | None = None,
        known_symbols: Callable[[str], frozenset[str] | None] | None = None,
        policy: ValidationPolicy | None = None,
        checks: dict[str, Check] | None = None,
    ) -> None:
        super().__init__(checks)
        policy = policy or ValidationPolicy()
        self.symbols = SymbolRegistry()
        # A tick the validator lets go back in time must still find its closed bar to correct it.
        bars = BarBuilder(digits_of=self.symbols.digits, late_ms=policy.backwards_tolerance_ms)
        self.pipeline = IngestPipeline(
            bus,
            store,
            clock,
            flush_ms=config.store_flush_ms,
            flush_ticks=config.store_flush_ticks,
            cache=cache,
            codec=encode,
            bars=bars,
        )
        self.validator = TickValidator(clock.now_ms, policy, known_symbols or self.symbols.known)
        self.orders = OrderRouter(bus, clock)
        self.endpoint = AgentEndpoint(
            self.pipeline,
            self.validator,
            authenticate,
            self.symbols,
            max_batch_ticks=config.max_batch_ticks,
            max_frame_bytes=config.max_frame_bytes,
            orders=self.orders,
        )
        self.add_router(self.endpoint.router)
        self.add_check("store_writes", self._store_ok)

    async def _store_ok(self) -> bool:
        return self.pipeline.healthy

    async def _on_start(self) -> None:
        await self.pipeline.start()

    async def _on_stop(self) -> None:
        await self.pipeline.stop()
