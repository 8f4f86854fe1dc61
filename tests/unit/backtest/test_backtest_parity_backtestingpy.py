"""MUST SHOW: SMA 10/20 cross on backtesting.py's EURUSD H1 with zero costs and fills at the next bar's open
gives backtesting.py's trade list — same count, entry/exit bars and prices — run through our whole live
path (strategy → decision engine → trading engine risk check → simulated broker), ending as backtesting.py
does (`end_at="open"`); ending at the last close differs only in the last, still open, trade's exit."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest

from aitrading.backtest.data import read_csv_bars
from aitrading.backtest.engine import Backtest, BacktestConfig
from aitrading.backtest.results import trades_from_deals
from aitrading.model.market import Bar
from aitrading.model.values import price_decimal
from aitrading.strategies import load_strategy

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "backtestingpy_EURUSD_H1_2017-2018.csv"

pytestmark = pytest.mark.slow


def _reference() -> list[tuple[int, Decimal, int, Decimal, int]]:
    """backtesting.py's own SmaCross on the same file: (entry s, entry price, exit s, exit price, side)."""
    pd = pytest.importorskip("pandas")
    backtesting = pytest.importorskip("backtesting")
    from backtesting.lib import crossover  # type: ignore[import-untyped]
    from backtesting.test import SMA  # type: ignore[import-untyped]

    class SmaCross(backtesting.Strategy):  # type: ignore[misc,name-defined]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.sell()

    df = pd.read_csv(DATA, index_col=0, parse_dates=True)
    bt = backtesting.Backtest(
        df,
        SmaCross,
        cash=10_000_000_000,
        spread=0.0,
        commission=0.0,
        trade_on_close=False,
        exclusive_orders=True,
        finalize_trades=True,
    )
    trades = bt.run()._trades
    return [
        (
            int(row.EntryTime.tz_localize("UTC").timestamp()),
            Decimal(repr(row.EntryPrice)),
            int(row.ExitTime.tz_localize("UTC").timestamp()),
            Decimal(repr(row.ExitPrice)),
            1 if row.Size > 0 else -1,
        )
        for row in trades.itertuples()
    ]


Trade = tuple[int, Decimal, int, Decimal, int]


async def _ours(end_at: Literal["close", "open"]) -> tuple[list[Bar], list[Trade]]:
    bars, _ = read_csv_bars(DATA, feed="BT", symbol="EURUSD")
    strategy = load_strategy("sma_cross", {"fast": "10", "slow": "20"})
    async with Backtest(BacktestConfig(symbol="EURUSD", end_at=end_at), [strategy]) as bt:
        await bt.run_bars(bars)
        trades = trades_from_deals(bt.deals())
        assert bt.engine.counters["denied"] == 0
        assert bt.positions() == []
    hour = 3600
    return bars, [
        (
            t.entry_ns // 1_000_000_000 // hour * hour,  # the bar in which the fill happened
            price_decimal(t.entry_price).normalize(),
            t.exit_ns // 1_000_000_000 // hour * hour,
            price_decimal(t.exit_price).normalize(),
            t.side,
        )
        for t in sorted(trades, key=lambda t: t.entry_ns)
    ]


async def test_sma_10_20_cross_on_eurusd_h1_gives_backtestingpy_trade_list() -> None:
    if not DATA.is_file():
        pytest.skip(f"{DATA} is absent")
    expected = [(a, b.normalize(), c, d.normalize(), e) for a, b, c, d, e in _reference()]
    assert len(expected) == 263
    # Ending as the last bar opens, as backtesting.py's finalize_trades does: the whole list is equal.
    _, ours = await _ours("open")
    mismatches = [(i, o, e) for i, (o, e) in enumerate(zip(ours, expected, strict=True)) if o != e]
    assert mismatches == []
    # Ending at the last bar's close (the default): the trade still open at the end is closed at the last
    # quote, the last bar's close, instead of its open; every other trade is the same.
    bars, at_close = await _ours("close")
    assert at_close[:-1] == expected[:-1]
    assert at_close[-1][:3] == expected[-1][:3]
    assert at_close[-1][2] == bars[-1].time
    assert at_close[-1][3] == price_decimal(bars[-1].close).normalize()
    assert expected[-1][3] == price_decimal(bars[-1].open).normalize()
