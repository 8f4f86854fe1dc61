"""What a backtest produced: round-trip trades from the booked deals, and the performance figures.

A trade is one position from its opening deal to its closing deal(s): entry and exit time and price
(exact raw prices; a position closed in parts exits at the volume-weighted price), side, volume and its
net result (profit + swap + commission + fee of every deal of the position, in account money).

Figures: net profit and return, max drawdown (money and % of the peak), Sharpe and Sortino of per-period
returns of the equity curve annualised by the curve's median sampling period, profit factor (gross win /
gross loss), win rate, exposure (share of equity samples with a position open), average trade.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType

__all__ = ["Metrics", "Trade", "compute_metrics", "trades_from_deals"]

_YEAR_S = 365.25 * 86_400


class Trade(msgspec.Struct, frozen=True, kw_only=True):
    """One round trip (prices raw 1e-9, volume raw 1e-8, times UTC epoch ns, `pnl` in account money)."""

    position: int
    side: int
    volume: int
    entry_ns: int
    entry_price: int
    exit_ns: int
    exit_price: int
    pnl: Decimal


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """The figures of a run (see the module docstring); ratios are floats, money exact."""

    trades: int
    start_equity: Decimal
    end_equity: Decimal
    net_profit: Decimal
    return_pct: float
    max_drawdown: Decimal
    max_drawdown_pct: float
    sharpe: float
    sortino: float
    profit_factor: float
    win_rate: float
    exposure: float
    avg_trade: Decimal


def trades_from_deals(deals: Sequence[Deal]) -> list[Trade]:
    """Return the closed trades of `deals` (trade deals of one account), by exit time."""
    opened: dict[int, Deal] = {}
    exits: dict[int, list[Deal]] = {}
    money: dict[int, Decimal] = {}
    for d in deals:
        if not d.is_trade:
            continue
        pid = d.position_id
        money[pid] = money.get(pid, Decimal(0)) + d.profit + d.swap + d.commission + d.fee
        if d.entry is DealEntry.IN and pid not in opened:
            opened[pid] = d
        elif d.entry in (DealEntry.OUT, DealEntry.OUT_BY, DealEntry.INOUT):
            exits.setdefault(pid, []).append(d)
    trades = []
    for pid, outs in exits.items():
        entry = opened.get(pid)
        if entry is None:
            continue
        volume = sum(d.volume for d in outs)
        closed = sum(d.volume for d in outs)
        if closed < entry.volume:
            continue  # still partly open
        price = sum(d.price * d.volume for d in outs) // volume if volume else 0
        trades.append(
            Trade(
                position=pid,
                side=1 if entry.type is DealType.BUY else -1,
                volume=entry.volume,
                entry_ns=entry.time_ns,
                entry_price=entry.price,
                exit_ns=outs[-1].time_ns,
                exit_price=price,
                pnl=money[pid],
            )
        )
    trades.sort(key=lambda t: (t.exit_ns, t.position))
    return trades


def _ratio(returns: list[float], per_year: float, downside: bool) -> float:
    if len(returns) < 2:
        return math.nan
    mean = statistics.fmean(returns)
    if downside:
        neg = [min(0.0, r) for r in returns]
        dev = math.sqrt(sum(r * r for r in neg) / len(neg))
    else:
        dev = statistics.pstdev(returns)
    return math.nan if dev == 0 else mean / dev * math.sqrt(per_year)


def compute_metrics(
    trades: Sequence[Trade], equity: Sequence[tuple[int, Decimal, bool]], start_equity: Decimal
) -> Metrics:
    """Return the figures of a run from its trades and its equity curve `(ts_ns, equity, exposed)`."""
    values = [e for _, e, _ in equity] or [start_equity]
    end = values[-1]
    peak = start_equity
    max_dd = Decimal(0)
    max_dd_pct = 0.0
    for v in values:
        peak = max(peak, v)
        dd = peak - v
        max_dd = max(max_dd, dd)
        if peak > 0:
            max_dd_pct = max(max_dd_pct, float(dd / peak) * 100)
    floats = [float(v) for v in values]
    returns = [b / a - 1.0 for a, b in itertools.pairwise(floats) if a > 0]
    times = [t for t, _, _ in equity]
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    per_year = _YEAR_S / (statistics.median(gaps) / 1e9) if gaps else 0.0
    wins = [t.pnl for t in trades if t.pnl > 0]
    losses = [t.pnl for t in trades if t.pnl < 0]
    gross_loss = -sum(losses, Decimal(0))
    gross_win = sum(wins, Decimal(0))
    return Metrics(
        trades=len(trades),
        start_equity=start_equity,
        end_equity=end,
        net_profit=end - start_equity,
        return_pct=float((end - start_equity) / start_equity) * 100 if start_equity else math.nan,
        max_drawdown=max_dd,
        max_drawdown_pct=max_dd_pct,
        sharpe=_ratio(returns, per_year, downside=False),
        sortino=_ratio(returns, per_year, downside=True),
        profit_factor=float(gross_win / gross_loss) if gross_loss else (math.inf if gross_win else math.nan),
        win_rate=len(wins) / len(trades) if trades else math.nan,
        exposure=sum(1 for _, _, x in equity if x) / len(equity) if equity else 0.0,
        avg_trade=(sum((t.pnl for t in trades), Decimal(0)) / len(trades)).quantize(Decimal("0.01"))
        if trades
        else Decimal(0),
    )


def metrics_dict(m: Metrics) -> dict[str, Any]:
    """The metrics as JSON-ready builtins (Decimals as strings, NaN/inf as None)."""
    out: dict[str, Any] = {}
    for k in m.__struct_fields__:
        v = getattr(m, k)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = str(v) if isinstance(v, Decimal) else v
    return out
