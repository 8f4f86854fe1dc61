"""The decision service's pipeline: live bars on the bus → strategies → signals on `sig.*` → orders."""

from __future__ import annotations

import pytest
from decision_helpers import publish_flat_bars

from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.decision.service import DecisionPipeline, DecisionService, DecisionSettings, parse_strategies
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderType
from aitrading.model.positions import Position
from aitrading.strategies import Signal


class Answer:
    denied = False
    reason = ""


def test_strategy_list_parses_names_and_parameters() -> None:
    assert parse_strategies("sma_cross:fast=2,slow=3; rsi") == [
        ("sma_cross", {"fast": "2", "slow": "3"}),
        ("rsi", {}),
    ]
    with pytest.raises(ValueError, match="key=value"):
        parse_strategies("sma_cross:fast")


async def test_pipeline_turns_published_bars_into_signals_and_orders() -> None:
    bus = MemoryBus(streams=())
    await bus.connect()
    signals: list[Message] = []

    async def on_signal(subject: str, msg: Message) -> None:
        signals.append(msg)

    await bus.subscribe("sig.acme.*", on_signal)
    sent: list[OrderRequest] = []

    async def submit(req: OrderRequest, actor: str) -> Answer:
        sent.append(req)
        return Answer()

    def positions(symbol: str) -> list[Position]:
        return []

    settings = DecisionSettings(
        tenant="acme",
        account="7",
        feed="F",
        symbols="EURUSD",
        timeframe="H1",
        strategies="sma_cross:fast=2,slow=3",
        strategy="trend",
    )
    pipeline = DecisionPipeline(settings, bus, TestClock(), submit, positions)
    await pipeline.start()
    await publish_flat_bars(bus, [5, 4, 3, 2, 1, 2, 3, 4], 0)
    await pipeline.stop()
    assert pipeline.bars == 8
    assert [s.direction for s in signals if isinstance(s, Signal)] == [1]
    assert [(r.type, r.account, r.strategy) for r in sent] == [(OrderType.BUY, "7", "trend")]
    assert pipeline.status()["counters"]["orders"] == 1


def test_service_without_an_engine_port_runs_its_shell_and_says_why() -> None:
    service = DecisionService(None)
    assert service.pipeline is None
    assert "shell" in service.idle_reason
