"""The decision engine: weighted ensemble, threshold, regime veto, signals on `sig.<tenant>.<strategy>`
with model versions and features, orders to the trading engine's risk check."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.decision.engine import DecisionConfig, DecisionEngine, RegimeConfig
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderType, Side
from aitrading.model.ids import ClientOrderId
from aitrading.model.positions import Position
from aitrading.strategies import FLAT, LONG, SHORT, OrderIntent, Signal

LOT = 100_000_000


@dataclass
class Answer:
    denied: bool = False
    reason: str = ""


@dataclass
class Port:
    """The trading engine's side as the decision engine sees it: submit and the open positions."""

    deny: bool = False
    sent: list[OrderRequest] = field(default_factory=list)
    held: list[Position] = field(default_factory=list)

    async def submit(self, req: OrderRequest, actor: str) -> Answer:
        self.sent.append(req)
        return Answer(self.deny, "risk_limit" if self.deny else "")

    def positions(self, symbol: str) -> list[Position]:
        return [p for p in self.held if p.symbol == symbol]


async def make(port: Port, **kw: object) -> tuple[DecisionEngine, list[tuple[str, Message]]]:
    bus = MemoryBus(streams=())
    await bus.connect()
    seen: list[tuple[str, Message]] = []

    async def record(subject: str, msg: Message) -> None:
        seen.append((subject, msg))

    await bus.subscribe("sig.>", record)
    n = iter(range(1, 10_000))
    config = DecisionConfig(tenant="acme", account="7", strategy="ens", **kw)  # type: ignore[arg-type]
    engine = DecisionEngine(
        config, bus, TestClock(), port.submit, port.positions, lambda: ClientOrderId(f"D{next(n):05d}")
    )
    return engine, seen


def intent(
    strategy: str,
    target: int,
    confidence: float = 1.0,
    *,
    features: dict[str, float] | None = None,
) -> OrderIntent:
    return OrderIntent(
        strategy=strategy,
        symbol="EURUSD",
        target=target,
        volume=LOT,
        ts_ns=0,
        confidence=confidence,
        features=features or {},
    )


async def test_single_long_intent_publishes_a_signal_and_sends_a_buy() -> None:
    port = Port()
    engine, seen = await make(port)
    signals = await engine.on_intents([intent("a", LONG, features={"rsi": 25.0})])
    assert [s.direction for s in signals] == [LONG]
    subject, msg = seen[0]
    assert subject == "sig.acme.ens"
    assert isinstance(msg, Signal)
    assert msg.features == {"a.rsi": 25.0}
    assert [(r.type, r.volume, r.position) for r in port.sent] == [(OrderType.BUY, LOT, 0)]
    assert port.sent[0].strategy == "ens"
    assert port.sent[0].comment == port.sent[0].client_order_id


async def test_weighted_ensemble_follows_the_heavier_view() -> None:
    port = Port()
    engine, _ = await make(port, weights={"trend": 3.0, "revert": 1.0})
    signals = await engine.on_intents([intent("trend", LONG), intent("revert", SHORT)])
    assert signals[0].direction == LONG
    assert signals[0].score == pytest.approx(0.5)  # (3 - 1) / 4
    assert signals[0].contributions == {"trend": (1, 1.0, 3.0), "revert": (-1, 1.0, 1.0)}


async def test_score_below_threshold_gives_no_position() -> None:
    port = Port()
    engine, seen = await make(port, threshold=0.6)
    assert await engine.on_intents([intent("a", LONG, confidence=0.5)]) == []
    assert seen == []
    assert port.sent == []


async def test_model_probability_counts_as_an_intent_and_its_version_travels_with_the_signal() -> None:
    port = Port()
    engine, _seen = await make(port, threshold=0.2)
    signal = await engine.on_probability("EURUSD", "lgbm", "lgbm-2026-11-01", 0.2, LOT, {"ret_1": -0.001})
    assert signal is not None
    assert signal.direction == SHORT
    assert signal.score == pytest.approx(-0.6)
    assert signal.model_versions == {"lgbm": "lgbm-2026-11-01"}
    assert signal.features == {"lgbm.ret_1": -0.001, "lgbm.p_up": 0.2}
    assert port.sent[0].type is OrderType.SELL


async def test_probability_outside_zero_one_is_refused() -> None:
    engine, _ = await make(Port())
    with pytest.raises(ValueError, match="probability"):
        await engine.on_probability("EURUSD", "m", "v", 1.5, LOT)


async def test_reversal_closes_the_opposite_position_then_opens() -> None:
    port = Port()
    engine, _ = await make(port)
    await engine.on_intents([intent("a", LONG)])
    port.held = [
        Position(ticket=11, identifier=11, symbol="EURUSD", type=Side.BUY, volume=LOT, cost=Decimal(0))
    ]
    port.sent.clear()
    await engine.on_intents([intent("a", SHORT)])
    assert [(r.type, r.position) for r in port.sent] == [(OrderType.SELL, 11), (OrderType.SELL, 0)]


async def test_flat_closes_and_opens_nothing() -> None:
    port = Port(
        held=[Position(ticket=5, identifier=5, symbol="EURUSD", type=Side.SELL, volume=LOT, cost=Decimal(0))]
    )
    engine, _ = await make(port)
    engine._direction["EURUSD"] = SHORT
    await engine.on_intents([intent("a", FLAT)])
    assert [(r.type, r.position) for r in port.sent] == [(OrderType.BUY, 5)]


async def test_same_direction_again_sends_nothing() -> None:
    port = Port()
    engine, _ = await make(port)
    await engine.on_intents([intent("a", LONG)])
    await engine.on_intents([intent("a", LONG, confidence=0.9)])
    assert len(port.sent) == 1


async def test_denied_order_is_counted_not_raised() -> None:
    port = Port(deny=True)
    engine, _ = await make(port)
    await engine.on_intents([intent("a", LONG)])
    assert engine.counters["denied"] == 1


async def test_a_denied_entry_is_not_sent_again_until_the_direction_changes() -> None:
    port = Port(deny=True)
    engine, seen = await make(port)
    await engine.on_intents([intent("a", LONG)])
    port.deny = False
    await engine.on_intents([intent("a", LONG)])  # a close of the last attempt could still be working
    assert [(r.type, r.position) for r in port.sent] == [(OrderType.BUY, 0)]
    assert (engine.counters["denied"], len(seen)) == (1, 1)
    await engine.on_intents([intent("a", FLAT)])
    await engine.on_intents([intent("a", LONG)])
    assert [r.type for r in port.sent] == [OrderType.BUY, OrderType.BUY]


async def test_only_the_latest_signals_and_orders_are_kept() -> None:
    port = Port()
    engine, _ = await make(port, recent=3)
    for i in range(10):
        await engine.on_intents([intent("a", LONG if i % 2 == 0 else SHORT)])
    assert engine.counters["signals"] == 10
    assert len(engine.signals) == 3
    assert len(engine.orders) == 3
    assert engine.orders[-1] is port.sent[-1]
    with pytest.raises(ValueError, match="recent"):
        DecisionConfig(tenant="acme", account="7", recent=0)


async def test_regime_filter_vetoes_entries_in_a_wild_market_but_not_exits() -> None:
    port = Port()
    engine, _ = await make(port, regime=RegimeConfig(period=5, max_vol=0.001))
    for i in range(8):
        engine.on_price("EURUSD", 1.0 + (0.02 if i % 2 else 0.0))  # 2 % swings: wild
    assert engine.regime is not None
    assert engine.regime.regime("EURUSD") == "wild"
    assert await engine.on_intents([intent("a", LONG)]) == []
    assert engine.counters["vetoed"] == 1
    assert port.sent == []


async def test_regime_filter_lets_entries_through_in_a_normal_market() -> None:
    port = Port()
    engine, _ = await make(port, regime=RegimeConfig(period=5, max_vol=0.001))
    for i in range(8):
        engine.on_price("EURUSD", 1.0 + 0.0001 * (i % 2))
    signals = await engine.on_intents([intent("a", LONG)])
    assert signals[0].regime == "normal"
    assert signals[0].direction == LONG


def test_config_refuses_a_strategy_id_unsafe_for_subjects() -> None:
    with pytest.raises(ValueError, match="strategy id"):
        DecisionConfig(tenant="t", account="1", strategy="a.b")
