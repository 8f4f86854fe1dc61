"""Trades from deals and the figures of a run, checked against hand-computed values."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from aitrading.backtest.report import render_html
from aitrading.backtest.results import compute_metrics, metrics_dict, trades_from_deals
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType

H = 3_600_000_000_000


def deal(
    ticket: int, pid: int, kind: DealType, entry: DealEntry, price: int, t: int, profit: str = "0"
) -> Deal:
    return Deal(
        ticket=ticket,
        order=ticket,
        position_id=pid,
        symbol="EURUSD",
        type=kind,
        entry=entry,
        volume=100_000_000,
        price=price,
        profit=Decimal(profit),
        commission=Decimal("-1"),
        time_ns=t * H,
    )


def test_round_trips_are_paired_by_position_with_all_their_money() -> None:
    deals = [
        deal(1, 1, DealType.BUY, DealEntry.IN, 1_100_000_000, 0),
        deal(2, 1, DealType.SELL, DealEntry.OUT, 1_101_000_000, 2, "100"),
        deal(3, 3, DealType.SELL, DealEntry.IN, 1_101_000_000, 2),
        deal(4, 3, DealType.BUY, DealEntry.OUT, 1_102_000_000, 5, "-100"),
        deal(5, 5, DealType.BUY, DealEntry.IN, 1_102_000_000, 5),  # still open: no trade
    ]
    trades = trades_from_deals(deals)
    assert [(t.side, t.entry_price, t.exit_price, t.pnl) for t in trades] == [
        (1, 1_100_000_000, 1_101_000_000, Decimal("98")),
        (-1, 1_101_000_000, 1_102_000_000, Decimal("-102")),
    ]


def test_metrics_match_hand_computed_values() -> None:
    deals = [
        deal(1, 1, DealType.BUY, DealEntry.IN, 1, 0),
        deal(2, 1, DealType.SELL, DealEntry.OUT, 1, 1, "201"),
        deal(3, 3, DealType.BUY, DealEntry.IN, 1, 1),
        deal(4, 3, DealType.SELL, DealEntry.OUT, 1, 2, "-99"),
    ]
    trades = trades_from_deals(deals)  # +199, -101
    equity = [(0, Decimal(1000), True), (H, Decimal(1199), True), (2 * H, Decimal(1098), False)]
    m = compute_metrics(trades, equity, Decimal(1000))
    assert m.trades == 2
    assert m.net_profit == Decimal(98)
    assert m.max_drawdown == Decimal(101)
    assert m.max_drawdown_pct == pytest.approx(101 / 1199 * 100)
    assert m.profit_factor == pytest.approx(199 / 101)
    assert m.win_rate == 0.5
    assert m.exposure == pytest.approx(2 / 3)
    r = [0.199, 1098 / 1199 - 1]
    mean = sum(r) / 2
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    per_year = 365.25 * 24
    assert m.sharpe == pytest.approx(mean / sd * math.sqrt(per_year))
    down = math.sqrt((r[1] ** 2) / 2)
    assert m.sortino == pytest.approx(mean / down * math.sqrt(per_year))
    assert metrics_dict(m)["net_profit"] == "98"


def test_metrics_without_trades_are_not_a_number_not_an_error() -> None:
    m = compute_metrics([], [(0, Decimal(5), False)], Decimal(5))
    assert m.trades == 0
    assert math.isnan(m.win_rate)
    assert metrics_dict(m)["sharpe"] is None


def test_report_is_self_contained_html_with_svg_plots() -> None:
    trades = trades_from_deals(
        [deal(1, 1, DealType.BUY, DealEntry.IN, 1, 0), deal(2, 1, DealType.SELL, DealEntry.OUT, 2, 1, "5")]
    )
    page = render_html(
        {"symbol": "EURUSD", "strategy": "sma_cross"},
        {"trades": 1},
        [(0, Decimal(100)), (H, Decimal(90)), (2 * H, Decimal(120))],
        trades,
    )
    assert page.count("<svg") == 2
    assert "<script" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Trades (1)" in page
