"""Order defaults of the decision engine: fixed in backtests, the tenant's `trading` config when live."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from pydantic import BaseModel

from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.common.errors import TemporaryError
from aitrading.config_service.namespaces import TradingConfig, UIConfig
from aitrading.decision.defaults import (
    BACKTEST_DEVIATION,
    ConfiguredOrderDefaults,
    OrderDefaults,
    StaticOrderDefaults,
)
from aitrading.decision.engine import DecisionConfig, DecisionEngine
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderFilling, OrderType, Side
from aitrading.model.ids import ClientOrderId
from aitrading.model.positions import Position
from aitrading.strategies.base import OrderIntent, Signal

LOT = 100_000_000


@dataclass
class Answer:
    denied: bool = False
    reason: str = ""


@dataclass
class Port:
    sent: list[OrderRequest] = field(default_factory=list)
    held: list[Position] = field(default_factory=list)

    async def submit(self, req: OrderRequest, actor: str) -> Answer:
        self.sent.append(req)
        return Answer()

    def positions(self, symbol: str) -> list[Position]:
        return [p for p in self.held if p.symbol == symbol]


class Source:
    """A config client double: answers `trading` or raises what it is told to."""

    def __init__(self, config: BaseModel | None = None) -> None:
        self.config: BaseModel | None = config
        self.error: Exception | None = None
        self.calls = 0
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def namespace(self, tenant: str | None, name: str, user: str | None = None) -> BaseModel:
        self.calls += 1
        assert (tenant, name) == ("acme", "trading")
        if self.error is not None:
            raise self.error
        assert self.config is not None
        return self.config


async def make(port: Port, defaults: object = None, **kw: object) -> tuple[DecisionEngine, list[Message]]:
    bus = MemoryBus(streams=())
    await bus.connect()
    seen: list[Message] = []

    async def record(subject: str, msg: Message) -> None:
        seen.append(msg)

    await bus.subscribe("sig.>", record)
    n = iter(range(1, 10_000))
    engine = DecisionEngine(
        DecisionConfig(tenant="acme", account="7", strategy="ens", **kw),  # type: ignore[arg-type]
        bus,
        TestClock(),
        port.submit,
        port.positions,
        lambda: ClientOrderId(f"D{next(n):05d}"),
        defaults,  # type: ignore[arg-type]
    )
    return engine, seen


def intent(target: int, volume: int = LOT) -> OrderIntent:
    return OrderIntent(strategy="s", symbol="EURUSD", target=target, volume=volume, ts_ns=0)


def held(ticket: int, *, magic: int) -> Position:
    return Position(
        ticket=ticket,
        identifier=ticket,
        symbol="EURUSD",
        type=Side.BUY,
        volume=LOT,
        cost=Decimal(1),
        magic=magic,
    )


async def test_without_a_provider_orders_keep_the_backtest_defaults_and_the_configured_magic() -> None:
    port = Port()
    engine, _ = await make(port, magic=99)
    await engine.on_intents([intent(1)])
    (req,) = port.sent
    assert (req.volume, req.deviation, req.filling, req.magic) == (
        LOT,
        BACKTEST_DEVIATION,
        OrderFilling.FOK,
        99,
    )
    assert engine.status()["order_defaults"]["source"] == "static"


async def test_an_intent_without_volume_trades_the_default_volume_and_the_signal_says_so() -> None:
    port = Port()
    static = StaticOrderDefaults(
        OrderDefaults(volume=LOT // 2, deviation=5, filling=OrderFilling.IOC, magic=8)
    )
    engine, seen = await make(port, static)
    await engine.on_probability("EURUSD", "m", "v1", 0.9, volume=0)
    (req,) = port.sent
    assert (req.volume, req.deviation, req.filling, req.magic) == (LOT // 2, 5, OrderFilling.IOC, 8)
    (signal,) = seen
    assert isinstance(signal, Signal)
    assert signal.volume == LOT // 2
    assert list(engine.signals) == [signal]


async def test_an_intent_volume_wins_over_the_default_volume() -> None:
    port = Port()
    engine, _ = await make(port, StaticOrderDefaults(OrderDefaults(volume=LOT // 2)))
    await engine.on_intents([intent(-1, volume=3 * LOT)])
    assert [(r.type, r.volume) for r in port.sent] == [(OrderType.SELL, 3 * LOT)]


async def test_positions_opened_under_an_earlier_magic_are_still_closed_after_the_magic_changes() -> None:
    port = Port()
    source = Source(TradingConfig(default_magic=11))
    provider = ConfiguredOrderDefaults(source, TestClock())
    engine, _ = await make(port, provider)
    await engine.on_intents([intent(1)])
    assert port.sent[-1].magic == 11
    port.held.append(held(5, magic=11))
    port.held.append(held(6, magic=0))  # the trader's own trade: not this engine's to close
    source.config = TradingConfig(default_magic=12)
    await engine.on_intents([intent(-1)])
    assert [(r.type, r.position, r.magic) for r in port.sent[1:]] == [
        (OrderType.SELL, 5, 11),
        (OrderType.SELL, 0, 12),
    ]


async def test_an_unreachable_config_service_gives_the_fallback_then_the_last_known_defaults() -> None:
    clock = TestClock()
    source = Source(TradingConfig(default_deviation_points=7, default_filling="RETURN"))
    source.error = TemporaryError("config service unreachable")
    fallback = OrderDefaults(volume=LOT, deviation=3)
    provider = ConfiguredOrderDefaults(source, clock, fallback=fallback, retry_after_s=5)
    assert await provider.get("acme") == fallback
    assert (provider.failures, provider.fallbacks) == (1, 1)
    assert "TemporaryError" in provider.last_error
    assert await provider.get("acme") == fallback  # within the quiet period: not asked again
    assert source.calls == 1
    clock.advance(6)
    source.error = None
    fresh = await provider.get("acme")
    assert (fresh.deviation, fresh.filling) == (7, OrderFilling.RETURN)
    clock.advance(6)
    source.error = TemporaryError("down again")
    assert await provider.get("acme") == fresh  # the last known, not the fallback
    assert (provider.reads, provider.failures, provider.fallbacks) == (3, 2, 3)
    assert provider.status()["last_known"]["acme"]["deviation"] == 7


async def test_a_config_answer_of_the_wrong_shape_is_a_counted_failure_not_a_crash() -> None:
    source = Source(UIConfig())
    provider = ConfiguredOrderDefaults(source, TestClock())
    port = Port()
    engine, _ = await make(port, provider)
    await engine.on_intents([intent(1)])
    assert port.sent[0].deviation == TradingConfig().default_deviation_points  # the platform default
    assert provider.failures == 1
    assert engine.status()["order_defaults"]["failures"] == 1


async def test_the_provider_follows_and_releases_its_client() -> None:
    source = Source(TradingConfig())
    provider = ConfiguredOrderDefaults(source, TestClock())
    await provider.start()
    await provider.stop()
    assert (source.started, source.stopped) == (True, True)


def test_the_platform_trading_defaults_convert_to_exact_raw_values() -> None:
    d = OrderDefaults.from_trading(TradingConfig(default_volume_lots=Decimal("0.07"), default_filling="IOC"))
    assert (d.volume, d.filling) == (7_000_000, OrderFilling.IOC)
    with pytest.raises(ValueError, match="negative"):
        OrderDefaults(deviation=-1)
