"""The backtest report: one self-contained HTML file (inline SVG plots, no scripts, no network).

Sections: the run (symbol, strategy, parameters, data range, costs), the figures, the equity curve, the
drawdown curve, and the trade list.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from aitrading.backtest.results import Trade
from aitrading.common.clock import ns_to_datetime
from aitrading.model.values import price_decimal, volume_decimal

__all__ = ["render_html", "svg_line"]

_W, _H, _PAD = 900, 240, 40


def svg_line(points: Sequence[tuple[int, float]], *, title: str, color: str, fill: bool = False) -> str:
    """Return an inline SVG of `points` (x = epoch ns, y = value) with min/max labels."""
    if len(points) < 2:
        return f"<p>{html.escape(title)}: not enough points</p>"
    step = max(1, len(points) // 2000)  # keep the file small: at most ~2000 vertices
    pts = list(points[::step]) + ([points[-1]] if (len(points) - 1) % step else [])
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y1 = y0 + 1.0

    def sx(x: int) -> float:
        return _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)

    def sy(y: float) -> float:
        return _H - _PAD - (y - y0) / (y1 - y0) * (_H - 2 * _PAD)

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True))
    area = ""
    if fill:
        area = (
            f'<polygon points="{sx(xs[0]):.1f},{sy(y1 if y1 <= 0 else 0):.1f} {path} '
            f'{sx(xs[-1]):.1f},{sy(y1 if y1 <= 0 else 0):.1f}" fill="{color}" fill-opacity="0.25"/>'
        )
    start = ns_to_datetime(x0).strftime("%Y-%m-%d")
    end = ns_to_datetime(x1).strftime("%Y-%m-%d")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{html.escape(title)}">'
        f'<rect width="100%" height="100%" fill="#fff" stroke="#ddd"/>'
        f'<text x="{_PAD}" y="20" font-size="13" font-weight="bold">{html.escape(title)}</text>'
        f'<text x="4" y="{sy(y1) + 4:.0f}" font-size="10">{y1:,.2f}</text>'
        f'<text x="4" y="{sy(y0) + 4:.0f}" font-size="10">{y0:,.2f}</text>'
        f'<text x="{_PAD}" y="{_H - 10}" font-size="10">{start}</text>'
        f'<text x="{_W - _PAD - 60}" y="{_H - 10}" font-size="10">{end}</text>'
        f"{area}"
        f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.2"/></svg>'
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:,.4f}"
    return html.escape(str(v))


def _trade_row(i: int, t: Trade) -> str:
    cells = (
        i,
        "long" if t.side > 0 else "short",
        volume_decimal(t.volume).normalize(),
        f"{ns_to_datetime(t.entry_ns):%Y-%m-%d %H:%M:%S}",
        price_decimal(t.entry_price).normalize(),
        f"{ns_to_datetime(t.exit_ns):%Y-%m-%d %H:%M:%S}",
        price_decimal(t.exit_price).normalize(),
    )
    tds = "".join(f"<td>{c}</td>" for c in cells)
    return f'<tr>{tds}<td class="{"pos" if t.pnl >= 0 else "neg"}">{t.pnl}</td></tr>'


def render_html(
    run: Mapping[str, Any],
    metrics: Mapping[str, Any],
    equity: Sequence[tuple[int, Decimal]],
    trades: Sequence[Trade],
) -> str:
    """Return the report page."""
    eq = [(t, float(v)) for t, v in equity]
    peak = -math.inf
    dd = []
    for t, v in eq:
        peak = max(peak, v)
        dd.append((t, v - peak))
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in run.items())
    figs = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items())
    trade_rows = "".join(_trade_row(i, t) for i, t in enumerate(trades, start=1))
    title = f"Backtest {run.get('strategy', '')} on {run.get('symbol', '')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse;margin:8px 0}}
th,td{{border:1px solid #ddd;padding:3px 8px;text-align:right;font-size:13px}}
th{{background:#f5f5f5;text-align:left}}
.pos{{color:#070}} .neg{{color:#b00}} h2{{margin-top:28px}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Run</h2><table>{rows}</table>
<h2>Figures</h2><table>{figs}</table>
<h2>Equity</h2>{svg_line(eq, title="Equity", color="#1565c0")}
<h2>Drawdown</h2>{svg_line(dd, title="Drawdown", color="#c62828", fill=True)}
<h2>Trades ({len(trades)})</h2>
<table><tr><th>#</th><th>side</th><th>lots</th><th>entry time (UTC)</th><th>entry</th><th>exit time (UTC)</th>
<th>exit</th><th>P&amp;L</th></tr>{trade_rows}</table>
</body></html>
"""
