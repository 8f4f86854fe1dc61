"""MUST SHOW: the same strategy over the same replayed ticks sends the same orders in a backtest (the
driver calls the components) and in paper mode (the quotes go out on the bus and every component takes
them from its live subscription), through the same engine, venue and broker classes."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from aitrading.backtest.data import read_tick_file
from aitrading.backtest.engine import Backtest, BacktestConfig
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.market import Tick
from aitrading.strategies import load_strategy

pytestmark = pytest.mark.slow

TICKS = Path(__file__).resolve().parents[4] / "shared" / "data" / "dukascopy_EURUSD_ticks_20190101.csv"


def _ticks() -> list[Tick]:
    if not TICKS.is_file():
        pytest.skip(f"{TICKS} is absent")
    return list(read_tick_file(TICKS, "dukascopy", feed="BT", symbol="EURUSD"))


async def _run(ticks: list[Tick], *, paper: bool) -> tuple[list[OrderRequest], list[tuple[int, int, int]]]:
    strategy = load_strategy("ema_cross", {"fast": "100", "slow": "400"})
    async with Backtest(BacktestConfig(symbol="EURUSD"), [strategy]) as bt:
        if paper:
            await bt.run_paper(ticks)
        else:
            await bt.run_ticks(ticks)
        # Each run has its own private database and so its own tenant id; everything else must match.
        commands = [
            msgspec.structs.replace(m.request, tenant="t")
            for m in bt.orders_seen
            if isinstance(m, TradeCommand)
        ]
        deals = [(d.time_ns, d.price, d.volume) for d in bt.deals()]
        return commands, deals


async def test_same_ticks_give_the_same_orders_in_backtest_and_paper_mode() -> None:
    ticks = _ticks()
    assert len(ticks) >= 5000
    backtest_orders, backtest_deals = await _run(ticks, paper=False)
    paper_orders, paper_deals = await _run(ticks, paper=True)
    assert len(backtest_orders) >= 6  # the strategy really trades on this day
    assert paper_orders == backtest_orders
    assert paper_deals == backtest_deals
