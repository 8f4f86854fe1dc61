"""The backtester's wiring: the trading engine's risk check really decides; costs reach the fills; a
failing user strategy is contained and reported."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aitrading.backtest.engine import Backtest, BacktestConfig, Costs
from aitrading.backtest.results import trades_from_deals
from aitrading.engine.signals import SIGNAL_EVENT
from aitrading.model.market import Bar
from aitrading.model.values import price_raw
from aitrading.strategies import Strategy, StrategyConfig, load_strategy


def bars(closes: list[float]) -> list[Bar]:
    out = []
    for i, c in enumerate(closes):
        p = price_raw(f"{c:.5f}")
        out.append(
            Bar(
                feed="BT",
                symbol="EURUSD",
                timeframe=16385,
                time=1_700_000_000 + i * 3600,
                open=p,
                high=p,
                low=p,
                close=p,
                tick_volume=1,
            )
        )
    return out


ZIGZAG = [1.1 + 0.001 * (((i // 6) % 2 and 6 - i % 6) or i % 6) for i in range(120)]


async def test_orders_the_account_cannot_margin_are_denied_by_the_engine_risk_check() -> None:
    cfg = BacktestConfig(symbol="EURUSD", balance=Decimal(10))
    async with Backtest(cfg, [load_strategy("sma_cross", {"fast": "2", "slow": "3"})]) as bt:
        await bt.run_bars(bars(ZIGZAG))
        assert bt.decision.counters["orders"] > 0
        assert bt.decision.counters["denied"] == bt.decision.counters["orders"]
        assert bt.engine.counters["denied"] > 0
        assert bt.deals() == []


async def test_spread_and_commission_are_paid_on_every_fill() -> None:
    cfg = BacktestConfig(symbol="EURUSD", costs=Costs(spread_points=20, commission_per_lot=Decimal("3.5")))
    async with Backtest(cfg, [load_strategy("sma_cross", {"fast": "2", "slow": "3"})]) as bt:
        data = bars(ZIGZAG)
        await bt.run_bars(data)
        deals = bt.deals()
        assert deals
        assert all(d.commission == Decimal("-3.50") for d in deals)
        opens = {b.open for b in data}
        for d in deals:  # a buy pays the ask (bid bar + 20 points), a sell gets the bid
            assert (d.price - 200_000 if d.type.name == "BUY" else d.price) in opens
        assert trades_from_deals(deals)


class Exploding(Strategy[StrategyConfig]):
    name = "exploding"

    def on_bar(self, bar: Bar, ctx: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("oops")


async def test_a_failing_user_strategy_is_disabled_and_the_run_completes() -> None:
    cfg = BacktestConfig(symbol="EURUSD", max_failures=2)
    async with Backtest(cfg, [Exploding(StrategyConfig())]) as bt:
        await bt.run_bars(bars(ZIGZAG[:10]))
        status = bt.strategies[0].status()
        assert status == {
            "strategy": "exploding",
            "enabled": False,
            "failures": 2,
            "last_error": "on_bar: ZeroDivisionError: oops",
        }
        assert bt.events == 10


async def test_slippage_moves_fills_against_the_trader_by_at_most_the_configured_points() -> None:
    cfg = BacktestConfig(symbol="EURUSD", costs=Costs(slippage_points=5), seed=7)
    async with Backtest(cfg, [load_strategy("sma_cross", {"fast": "2", "slow": "3"})]) as bt:
        data = bars(ZIGZAG)
        await bt.run_bars(data)
        quotes = {b.open for b in data} | {b.close for b in data}
        slips = []
        for d in bt.deals():
            base = min(quotes, key=lambda q: abs(q - d.price))
            slip = (d.price - base) // 10_000 * (1 if d.type.name == "BUY" else -1)
            slips.append(slip)
        assert all(0 <= s <= 5 for s in slips)
        assert any(s > 0 for s in slips)


async def test_the_audit_chain_of_a_backtest_verifies_and_books_every_deal_once() -> None:
    async with Backtest(
        BacktestConfig(symbol="EURUSD"), [load_strategy("sma_cross", {"fast": "2", "slow": "3"})]
    ) as bt:
        await bt.run_bars(bars(ZIGZAG))
        deals = bt.deals()
        assert deals
        records = bt.audit.records(bt.tenant)
        assert bt.audit.verify(bt.tenant).ok
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        booked = [r.payload_dict()["ticket"] for r in records if r.kind == "deal.booked"]
        assert sorted(booked) == sorted(d.ticket for d in deals)
        submitted = [r for r in records if r.kind == "order.submitted"]
        assert len(submitted) == bt.engine.counters["submitted"]


async def test_the_engine_takes_margin_from_the_terminal_after_every_execution_as_live() -> None:
    cfg = BacktestConfig(symbol="EURUSD", close_at_end=False)
    async with Backtest(cfg, [load_strategy("sma_cross", {"fast": "2", "slow": "3"})]) as bt:
        await bt.run_bars(bars(ZIGZAG))
        assert bt.positions()
        book = bt.engine.book(bt.tenant, cfg.account)
        assert book is not None
        terminal = bt.broker.state.margin
        assert terminal > 0
        # As of the last execution's snapshot; the terminal's own figure has moved with the rate since.
        assert abs(book.state.margin - terminal) <= terminal * Decimal("0.01")
        assert bt.engine.counters["alerts"] == 0


async def test_each_order_follows_in_the_audit_the_signal_that_caused_it() -> None:
    strategy = load_strategy("sma_cross", {"fast": "2", "slow": "3"})
    async with Backtest(BacktestConfig(symbol="EURUSD"), [strategy]) as bt:
        await bt.run_bars(bars(ZIGZAG))
        kinds = [r.kind for r in bt.audit.records(bt.tenant)]
        assert bt.decision.counters["signals"] > 0
        assert kinds.count(SIGNAL_EVENT) == bt.decision.counters["signals"]
        assert SIGNAL_EVENT in kinds[: kinds.index("order.submitted")]  # the cause comes first
        assert bt.audit.verify(bt.tenant).ok
