"""`aitrading backtest`: replay stored bars or ticks (or a CSV of bars) through the live components.

    aitrading backtest --symbol EURUSD --timeframe H1 --from 2024-01-01 --to 2024-06-01 \\
        --strategy sma_cross --param fast=10 --param slow=20 [--json] [--report out.html]
    aitrading backtest --symbol EURUSD --ticks --from … --to … --strategy ema_cross --param fast=50 …
    aitrading backtest --symbol EURUSD --csv EURUSD.csv --strategy sma_cross   (backtesting.py's format)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aitrading.common.errors import BadInputError
from aitrading.common.logging import configure_logging
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.mt5.specs import DEFAULT_SPECS

if TYPE_CHECKING:
    from aitrading.backtest.engine import BacktestConfig

__all__ = ["backtest", "parse_params", "run_backtest"]

console = Console(stderr=True)


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """Return `k=v` items as a dict; raise `BadInputError` for an item without `=`."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--param needs key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _decimal(text: str | None, what: str) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise BadInputError(f"{what} must be a number, got {text!r}") from None


async def run_backtest(
    config: BacktestConfig,
    strategy: str,
    params: dict[str, str],
    *,
    bars: list[Bar] | None = None,
    ticks: Iterable[Tick] | AsyncIterator[Tick] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run one backtest over `bars` or `ticks`; return the run, figures, trades and equity as builtins."""
    from aitrading.backtest.engine import Backtest
    from aitrading.backtest.results import compute_metrics, metrics_dict, trades_from_deals
    from aitrading.model.values import price_decimal, volume_decimal
    from aitrading.strategies.loader import load_strategy

    strat = load_strategy(strategy, params)
    async with Backtest(config, [strat]) as bt:
        if bars is not None:
            await bt.run_bars(bars, progress)
        elif ticks is not None:
            await bt.run_ticks(ticks, progress)
        else:
            raise BadInputError("nothing to replay")
        trades = trades_from_deals(bt.deals())
        equity = [(p.ts_ns, p.equity, p.exposed) for p in bt.equity]
        metrics = compute_metrics(trades, equity, config.balance)
        lat = sorted(bt.latency_ns)
        return {
            "run": {
                "symbol": config.symbol,
                "strategy": strat.id,
                "params": {k: str(v) for k, v in params.items()},
                "mode": "bars" if bars is not None else "ticks",
                "events": bt.events,
                "costs": {
                    "spread_points": config.costs.spread_points,
                    "slippage_points": config.costs.slippage_points,
                    "commission_per_lot": str(config.costs.commission_per_lot),
                    "swap_long": str(config.costs.swap_long),
                    "swap_short": str(config.costs.swap_short),
                },
                "orders": bt.decision.counters["orders"],
                "denied": bt.decision.counters["denied"],
                "strategy_failures": [s.status() for s in bt.strategies],
                "decision_latency_p99_us": lat[int(0.99 * (len(lat) - 1))] / 1000 if lat else None,
            },
            "metrics": metrics_dict(metrics),
            "trades": [
                {
                    "side": "long" if t.side > 0 else "short",
                    "volume": str(volume_decimal(t.volume).normalize()),
                    "entry_ns": t.entry_ns,
                    "entry_price": str(price_decimal(t.entry_price).normalize()),
                    "exit_ns": t.exit_ns,
                    "exit_price": str(price_decimal(t.exit_price).normalize()),
                    "pnl": str(t.pnl),
                }
                for t in trades
            ],
            "_equity": [(t, e) for t, e, _ in equity],
            "_trades": trades,
        }


def backtest(
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. EURUSD")],
    strategy: Annotated[
        str,
        typer.Option(help="Built-in name (sma_cross, ema_cross, rsi, bollinger, ml) or package.module:Class"),
    ],
    timeframe: Annotated[str | None, typer.Option(help="Bar timeframe (M1 … D1) for a bar backtest")] = None,
    ticks: Annotated[bool, typer.Option("--ticks", help="Replay stored ticks instead of bars")] = False,
    from_: Annotated[str | None, typer.Option("--from", help="Start (UTC), YYYY-MM-DD[ HH:MM]")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End (UTC, exclusive)")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Strategy parameter k=v (repeatable)")] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Bars from a backtesting.py-style CSV instead of the store")
    ] = None,
    feed: Annotated[str, typer.Option(help="Feed (broker server) of the stored data")] = "SIM",
    balance: Annotated[str, typer.Option(help="Starting balance (USD)")] = "1000000",
    spread: Annotated[int, typer.Option(help="Spread in points added to bid bars")] = 0,
    commission: Annotated[str, typer.Option(help="Commission per lot per side")] = "0",
    slippage: Annotated[int, typer.Option(help="Max random slippage in points (seeded)")] = 0,
    swap_long: Annotated[
        str | None, typer.Option(help="Swap long, points/lot/night (default 0; 'spec' = symbol's)")
    ] = "0",
    swap_short: Annotated[
        str | None, typer.Option(help="Swap short, points/lot/night (default 0; 'spec' = symbol's)")
    ] = "0",
    ohlc: Annotated[
        bool, typer.Option(help="Also replay each bar's high and low (SL/TP/stop-out inside bars)")
    ] = False,
    end_at: Annotated[
        str,
        typer.Option(help="Bars: end at the last bar's close, or as it opens (as backtesting.py does)"),
    ] = "close",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report here")] = None,
) -> None:
    """Backtest a strategy through the same decision engine, trading engine and simulated broker as live."""
    configure_logging("WARNING", json=False)
    # Imported here: the trading engine behind them would slow every other command's start.
    from aitrading.backtest.data import parse_time
    from aitrading.backtest.engine import BacktestConfig, Costs
    from aitrading.backtest.report import render_html

    if (timeframe is None) == (not ticks) and csv is None:
        raise BadInputError("give either --timeframe TF (bars) or --ticks")
    if symbol not in DEFAULT_SPECS:
        raise BadInputError(
            f"unknown symbol {symbol!r}; the simulated broker trades {', '.join(sorted(DEFAULT_SPECS))}"
        )
    start = parse_time(from_) if from_ else None
    end = parse_time(to) if to else None
    if csv is None and (start is None or end is None):
        raise BadInputError("--from and --to are required when replaying the store")
    if start is not None and end is not None and end <= start:
        raise BadInputError("--to must be after --from")
    costs = Costs(
        spread_points=spread,
        slippage_points=slippage,
        commission_per_lot=_decimal(commission, "--commission") or Decimal(0),
        swap_long=None if swap_long == "spec" else _decimal(swap_long, "--swap-long"),
        swap_short=None if swap_short == "spec" else _decimal(swap_short, "--swap-short"),
    )
    if end_at not in ("close", "open"):
        raise BadInputError(f"--end-at must be close or open, got {end_at!r}")
    config = BacktestConfig(
        symbol=symbol,
        feed=feed,
        balance=_decimal(balance, "--balance") or Decimal(0),
        costs=costs,
        ohlc=ohlc,
        end_at="open" if end_at == "open" else "close",
    )
    params = parse_params(param or [])
    tf = Timeframe.parse(timeframe) if timeframe else None
    result = asyncio.run(_main(config, strategy, params, csv, tf, ticks, start, end))
    if report is not None:
        report.write_text(
            render_html(
                {**result["run"], "params": result["run"]["params"]},
                result["metrics"],
                result["_equity"],
                result["_trades"],
            ),
            encoding="utf-8",
        )
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2))
        return
    _print(result, report)


async def _main(
    config: BacktestConfig,
    strategy: str,
    params: dict[str, str],
    csv: Path | None,
    tf: Timeframe | None,
    tick_mode: bool,
    start: int | None,
    end: int | None,
) -> dict[str, Any]:
    from aitrading.backtest.data import read_csv_bars, store_bars, store_ticks

    columns = (TextColumn("[bold]backtest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        if csv is not None:
            bars, _ = read_csv_bars(csv, feed=config.feed, symbol=config.symbol, timeframe=tf)
            bars = [b for b in bars if (start is None or b.time >= start) and (end is None or b.time < end)]
            task = bar.add_task("bars", total=len(bars))
            return await run_backtest(
                config, strategy, params, bars=bars, progress=lambda n: bar.update(task, completed=n)
            )
        assert start is not None
        assert end is not None
        from aitrading.common.config import load_config
        from aitrading.storage.ticks import make_tick_store

        storage = load_config().storage
        store = make_tick_store(
            storage.ticks, chdb_path=storage.chdb_path, clickhouse_url=storage.clickhouse_url
        )
        await store.start()
        try:
            if tf is not None and not tick_mode:
                point = DEFAULT_SPECS[config.symbol].point_raw
                bars = await store_bars(store, config.feed, config.symbol, tf, start, end, point)
                if not bars:
                    raise BadInputError(
                        f"no {tf.name} bars or ticks of {config.feed}/{config.symbol} in that range"
                    )
                task = bar.add_task("bars", total=len(bars))
                return await run_backtest(
                    config, strategy, params, bars=bars, progress=lambda n: bar.update(task, completed=n)
                )
            total = await store.count_ticks(config.feed, config.symbol)
            task = bar.add_task("ticks", total=total or None)
            return await run_backtest(
                config,
                strategy,
                params,
                ticks=store_ticks(store, config.feed, config.symbol, start * 1000, end * 1000),
                progress=lambda n: bar.update(task, completed=n),
            )
        finally:
            await store.stop()


def _print(result: dict[str, Any], report: Path | None) -> None:
    out = Console()
    run, m = result["run"], result["metrics"]
    table = Table(title=f"{run['strategy']} on {run['symbol']} ({run['events']} {run['mode']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in m.items():
        table.add_row(
            key, "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
        )
    table.add_row("orders / denied", f"{run['orders']} / {run['denied']}")
    table.add_row(
        "decision latency p99 (µs)",
        f"{run['decision_latency_p99_us']:.1f}" if run["decision_latency_p99_us"] is not None else "n/a",
    )
    out.print(table)
    for status in run["strategy_failures"]:
        if status["failures"]:
            sid, n, last = status["strategy"], status["failures"], status["last_error"]
            out.print(f"[yellow]strategy {sid}: {n} failures, last: {last}[/]")
    if report is not None:
        out.print(f"report: {report}")
