"""Backtester benchmark: bars/s and ticks/s of `aitrading backtest` beside backtesting.py and NautilusTrader.

Run: `aitrading bench backtest [--bars 100000] [--ticks 500000] [--no-peers]`
or `.venv/bin/python -m bench.bench_backtest`.

Data (real, from ../shared/data; nothing generated):
- bars: backtesting.py's EURUSD H1 (5,000 bars) repeated end to end, each copy shifted in time by the
  length of the file, until `--bars` bars (the price jumps at every seam; all contenders get the same bars);
- ticks: HistData EURUSD ticks of 2020-01-30/31 (99,308) repeated the same way until `--ticks` ticks.

Contenders, measured in this run, same data, zero costs:
- ours: SMA 10/20 cross on bars, EMA 50/200 cross on ticks (mid), through the whole live path (strategy,
  decision engine, trading engine with its risk check, order rows and hash-chained audit events kept by
  the engine's in-memory persistence ports (`engine.memory`), simulated broker with exact money);
- backtesting.py: its SmaCross (`crossover`) on the same bars (it has no tick mode);
- NautilusTrader: its example `EMACross` on the same bars (EMA 10/20: it ships no SMA-cross example) and on
  the same quotes with 1-tick mid bars (EMA 50/200 per tick).

Decision latency = strategy hooks + ensemble for one event (features + inference for the ML strategy),
p50/p99 over every event of our runs. Figures only; nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import structlog
from rich.console import Console
from rich.table import Table

from aitrading.backtest.data import read_csv_bars, read_tick_file
from aitrading.backtest.engine import Backtest, BacktestConfig
from aitrading.model.market import Bar, Tick
from aitrading.strategies import load_strategy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BARS_FILE = DATA / "backtestingpy_EURUSD_H1_2017-2018.csv"
TICKS_FILE = DATA / "histdata_EURUSD_T_20200130-31.csv.gz"

console = Console(width=160)  # the whole table, also when piped


def looped_bars(n: int) -> list[Bar]:
    """`n` bars: the EURUSD H1 file repeated, each copy shifted past the previous one."""
    base, _ = read_csv_bars(BARS_FILE, feed="BT", symbol="EURUSD")
    span = base[-1].time - base[0].time + 3600
    out: list[Bar] = []
    k = 0
    while len(out) < n:
        out += [msgspec.structs.replace(b, time=b.time + k * span) for b in base[: n - len(out)]]
        k += 1
    return out


def looped_ticks(n: int) -> list[Tick]:
    """`n` ticks: the HistData day pair repeated, each copy shifted past the previous one."""
    base = list(read_tick_file(TICKS_FILE, "histdata", feed="BT", symbol="EURUSD"))
    span = base[-1].time_msc - base[0].time_msc + 1000
    out: list[Tick] = []
    k = 0
    while len(out) < n:
        out += [msgspec.structs.replace(t, time_msc=t.time_msc + k * span) for t in base[: n - len(out)]]
        k += 1
    return out


def _pct(values: Any, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000 if ordered else float("nan")


async def ours(data: list[Any], strategy: str, params: dict[str, str], *, ticks: bool) -> dict[str, float]:
    async with Backtest(BacktestConfig(symbol="EURUSD"), [load_strategy(strategy, params)]) as bt:
        t0, c0 = time.perf_counter(), time.process_time()
        if ticks:
            await bt.run_ticks(data)
        else:
            await bt.run_bars(data)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "rate": len(data) / elapsed,
            "seconds": elapsed,
            "cpu": cpu,
            "orders": bt.decision.counters["orders"],
            "p50_us": _pct(bt.latency_ns, 0.50),
            "p99_us": _pct(bt.latency_ns, 0.99),
        }


async def _cpu_run(
    data: list[Any], params: dict[str, str], *, ticks: bool, market: bool
) -> tuple[float, int]:
    """CPU seconds and orders of one of our runs; `market=False` stubs out the engine's and the venue's
    quote handling (what is left: the driver, the strategy and the decision engine)."""
    strategy = "ema_cross" if ticks else "sma_cross"
    with contextlib.nullcontext() if market else _errors_only():
        return await _timed_run(data, strategy, params, ticks=ticks, market=market)


@contextlib.contextmanager
def _errors_only() -> Iterator[None]:
    """Log errors only: with the quotes stubbed out, the engine denies every signal for want of a quote
    (`signal_denied ... no_quote`, as it should), which would flood the output."""
    before = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        yield
    finally:
        structlog.configure(wrapper_class=before)


async def _timed_run(
    data: list[Any], strategy: str, params: dict[str, str], *, ticks: bool, market: bool
) -> tuple[float, int]:
    async with Backtest(BacktestConfig(symbol="EURUSD"), [load_strategy(strategy, params)]) as bt:
        if not market:

            async def ignore(tick: Tick) -> None:
                return None

            bt.engine.on_tick = ignore  # type: ignore[method-assign]
            bt.venue.on_tick = ignore  # type: ignore[method-assign]
        c0 = time.process_time()
        await (bt.run_ticks(data) if ticks else bt.run_bars(data))
        return time.process_time() - c0, bt.decision.counters["orders"]


def breakdown(data: list[Any], *, ticks: bool) -> dict[str, float]:
    """Our CPU µs per event split into the driver + strategy + decision, the quote path (engine and
    terminal, a position open), and the orders: the full run, a run whose averages (3000/6000) almost never
    cross, and that run with the engine's and venue's quote handling stubbed out."""
    params = {"fast": "50", "slow": "200"} if ticks else {"fast": "10", "slow": "20"}
    quiet = {"fast": "3000", "slow": "6000"}
    full, orders = asyncio.run(_cpu_run(data, params, ticks=ticks, market=True))
    calm, calm_orders = asyncio.run(_cpu_run(data, quiet, ticks=ticks, market=True))
    bare, _ = asyncio.run(_cpu_run(data, quiet, ticks=ticks, market=False))
    n = len(data)
    per_order = (full - calm) / max(1, orders - calm_orders)
    return {
        "driver+strategy+decision": bare / n * 1e6,
        "quotes (engine+terminal)": (calm - bare) / n * 1e6,
        "orders": (full - calm) / n * 1e6,
        "per order": per_order * 1e6,
        "total": full / n * 1e6,
    }


def backtesting_py(bars: list[Bar]) -> dict[str, float]:
    import pandas as pd  # type: ignore[import-untyped]
    from backtesting import Backtest as BpBacktest  # type: ignore[import-untyped]
    from backtesting import Strategy as BpStrategy
    from backtesting.lib import crossover  # type: ignore[import-untyped]
    from backtesting.test import SMA  # type: ignore[import-untyped]

    class SmaCross(BpStrategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.sell()

    df = pd.DataFrame(
        {
            "Open": [b.open / 1e9 for b in bars],
            "High": [b.high / 1e9 for b in bars],
            "Low": [b.low / 1e9 for b in bars],
            "Close": [b.close / 1e9 for b in bars],
            "Volume": [b.tick_volume for b in bars],
        },
        index=pd.to_datetime([b.time for b in bars], unit="s"),
    )
    bt = BpBacktest(df, SmaCross, cash=10_000_000_000, commission=0.0, exclusive_orders=True)
    t0, c0 = time.perf_counter(), time.process_time()
    stats = bt.run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": len(bars) / elapsed, "seconds": elapsed, "cpu": cpu, "orders": float(len(stats._trades))}


def nautilus(bars: list[Bar] | None, ticks: list[Tick] | None) -> dict[str, float]:
    """Run NautilusTrader's EMACross on the bars (EMA 10/20) or the ticks (EMA 50/200 on 1-tick bars)."""
    from decimal import Decimal

    import pandas as pd
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig  # type: ignore[import-not-found]
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.examples.strategies.ema_cross import EMACross, EMACrossConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.data import BarType  # type: ignore[import-not-found]
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import Venue  # type: ignore[import-not-found]
    from nautilus_trader.model.objects import Money  # type: ignore[import-not-found]
    from nautilus_trader.persistence.wranglers import BarDataWrangler, QuoteTickDataWrangler  # type: ignore[import-not-found]
    from nautilus_trader.test_kit.providers import TestInstrumentProvider

    engine = BacktestEngine(
        config=BacktestEngineConfig(trader_id="BENCH-001", logging=LoggingConfig(log_level="ERROR"))
    )
    venue = Venue("SIM")
    engine.add_venue(
        venue=venue,
        oms_type=OmsType.HEDGING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(1_000_000_000, USD)],
    )
    instrument = TestInstrumentProvider.default_fx_ccy("EUR/USD", venue)
    engine.add_instrument(instrument)
    if bars is not None:
        bar_type = BarType.from_str("EUR/USD.SIM-1-HOUR-LAST-EXTERNAL")
        df = pd.DataFrame(
            {
                "open": [b.open / 1e9 for b in bars],
                "high": [b.high / 1e9 for b in bars],
                "low": [b.low / 1e9 for b in bars],
                "close": [b.close / 1e9 for b in bars],
                "volume": [float(max(b.tick_volume, 1)) for b in bars],
            },
            index=pd.to_datetime([b.time for b in bars], unit="s", utc=True),
        )
        engine.add_data(BarDataWrangler(bar_type, instrument).process(df))
        fast, slow, n = 10, 20, len(bars)
    else:
        assert ticks is not None
        bar_type = BarType.from_str("EUR/USD.SIM-1-TICK-MID-INTERNAL")  # unused by the tick strategy
        df = pd.DataFrame(
            {"bid_price": [t.bid / 1e9 for t in ticks], "ask_price": [t.ask / 1e9 for t in ticks]},
            index=pd.to_datetime([t.time_msc for t in ticks], unit="ms", utc=True),
        )
        engine.add_data(QuoteTickDataWrangler(instrument).process(df))
        fast, slow, n = 50, 200, len(ticks)
    config = EMACrossConfig(
        instrument_id=instrument.id,
        bar_type=bar_type,
        trade_size=Decimal(100_000),
        fast_ema_period=fast,
        slow_ema_period=slow,
        request_bars=False,
        subscribe_trade_ticks=False,
    )
    # Its EMACross example skips single-price bars, so 1-tick bars never trade: on ticks we run the same
    # cross written on its quote-tick hook (`_nautilus_tick_strategy`), EMAs of the mid like ours.
    engine.add_strategy(EMACross(config=config) if bars is not None else _nautilus_tick_strategy(config))
    t0, c0 = time.perf_counter(), time.process_time()
    engine.run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    orders = float(len(engine.cache.orders()))
    engine.dispose()
    return {"rate": n / elapsed, "seconds": elapsed, "cpu": cpu, "orders": orders}


def _nautilus_tick_strategy(config: Any) -> Any:
    from nautilus_trader.indicators import ExponentialMovingAverage
    from nautilus_trader.model.enums import OrderSide, TimeInForce
    from nautilus_trader.trading.strategy import Strategy as NTStrategy  # type: ignore[import-not-found]

    class TickEMACross(NTStrategy):  # type: ignore[misc]
        def __init__(self, cfg: Any) -> None:
            super().__init__(cfg)
            self.fast = ExponentialMovingAverage(cfg.fast_ema_period)
            self.slow = ExponentialMovingAverage(cfg.slow_ema_period)
            self.prev: tuple[float, float] | None = None

        def on_start(self) -> None:
            self.instrument = self.cache.instrument(self.config.instrument_id)
            self.subscribe_quote_ticks(self.config.instrument_id)

        def on_quote_tick(self, tick: Any) -> None:
            mid = (tick.bid_price.as_double() + tick.ask_price.as_double()) / 2
            self.fast.update_raw(mid)
            self.slow.update_raw(mid)
            if not (self.fast.initialized and self.slow.initialized):
                return
            f, s = self.fast.value, self.slow.value
            prev, self.prev = self.prev, (f, s)
            if prev is None:
                return
            side = None
            if prev[0] < prev[1] and f > s:
                side = OrderSide.BUY
            elif prev[0] > prev[1] and f < s:
                side = OrderSide.SELL
            if side is None:
                return
            self.close_all_positions(self.config.instrument_id)
            order = self.order_factory.market(
                instrument_id=self.config.instrument_id,
                order_side=side,
                quantity=self.instrument.make_qty(self.config.trade_size),
                time_in_force=TimeInForce.GTC,
            )
            self.submit_order(order)

    return TickEMACross(config)


def _try(fn: Callable[[], dict[str, float]]) -> dict[str, float] | str:
    try:
        return fn()
    except Exception as exc:  # a peer that will not run is reported, not fatal
        return f"not measured: {type(exc).__name__}: {str(exc)[:120]}"


def versus_best_peer(name: str, results: dict[str, Any]) -> dict[str, Any] | None:
    """Our row `name` against the fastest peer measured on the same data (bars or ticks): our events/s over
    theirs by wall time, and their process CPU seconds over ours (same events: the CPU ratio is the rate
    ratio a quiet machine would show). None when no peer was measured."""
    unit = name.rsplit(maxsplit=1)[-1]
    peers = {
        k: r
        for k, r in results.items()
        if k.endswith(unit) and not k.startswith("ours ") and isinstance(r, dict)
    }
    if not peers:
        return None
    best = max(peers, key=lambda k: peers[k]["rate"])
    ours, peer = results[name], peers[best]
    by_cpu = (peer["cpu"] / ours["cpu"]) if ours["cpu"] > 0 and peer["cpu"] > 0 else None
    return {"peer": best.rsplit(" ", 1)[0], "by_rate": ours["rate"] / peer["rate"], "by_cpu": by_cpu}


def _table(results: dict[str, Any]) -> Table:
    table = Table(title="backtest throughput (same data, same run)")
    columns = ("contender", "events/s", "seconds", "CPU s", "orders/trades", "vs best peer", "by CPU")
    for col in (*columns, "decision p50 µs", "decision p99 µs"):
        table.add_column(col, justify="right" if col != "contender" else "left")
    for name, r in results.items():
        if isinstance(r, str):  # the reason is printed under the table: a long one would squeeze the columns
            table.add_row(name, "not measured", "", "", "", "", "", "", "")
            continue
        vs = versus_best_peer(name, results) if name.startswith("ours ") else None
        ratio = ("", "")
        if vs:
            by_cpu = "" if vs["by_cpu"] is None else f"{vs['by_cpu']:.2f}x"
            ratio = (f"{vs['by_rate']:.2f}x {vs['peer']}", by_cpu)
        if name.startswith("ours ") and vs is None:
            ratio = ("no peer measured", "")
        table.add_row(
            name,
            f"{r['rate']:,.0f} {'ticks' if 'ticks' in name else 'bars'}/s",
            f"{r['seconds']:.1f}",
            f"{r['cpu']:.1f}",
            f"{r['orders']:,.0f}",
            *ratio,
            f"{r['p50_us']:.1f}" if "p50_us" in r else "",
            f"{r['p99_us']:.1f}" if "p99_us" in r else "",
        )
    return table


def main(
    bars: int = 100_000,
    ticks: int = 500_000,
    peers: bool = True,
    split: bool = False,
    json_out: bool = False,
) -> dict[str, Any]:
    """Measure, print a table (or, with `json_out`, the figures as JSON) and return the figures."""
    if not BARS_FILE.is_file() or not TICKS_FILE.is_file():
        console.print(f"[yellow]market data not found in {DATA}; nothing to measure[/]")
        return {}
    bar_data = looped_bars(bars)
    tick_data = looped_ticks(ticks)
    data_line = (
        f"data: {len(bar_data):,} EURUSD H1 bars ({BARS_FILE.name} x{len(bar_data) / 5000:.1f}), "
        f"{len(tick_data):,} EURUSD ticks ({TICKS_FILE.name} x{len(tick_data) / 99_308:.1f})"
    )
    if not json_out:
        console.print(data_line)
    results: dict[str, Any] = {
        "ours bars": asyncio.run(ours(bar_data, "sma_cross", {"fast": "10", "slow": "20"}, ticks=False)),
        "ours ticks": asyncio.run(ours(tick_data, "ema_cross", {"fast": "50", "slow": "200"}, ticks=True)),
    }
    if peers:
        results["backtesting.py bars"] = _try(lambda: backtesting_py(bar_data))
        results["nautilus bars"] = _try(lambda: nautilus(bar_data, None))
        results["nautilus ticks"] = _try(lambda: nautilus(None, tick_data))
    ratios = {name: versus_best_peer(name, results) for name in ("ours bars", "ours ticks")}
    keys = ("driver+strategy+decision", "quotes (engine+terminal)", "orders", "total")
    parts = {}
    if split:
        parts = {
            name: breakdown(data, ticks=is_ticks)
            for name, data, is_ticks in (("bars", bar_data, False), ("ticks", tick_data, True))
        }
    if json_out:
        print(json.dumps({"data": data_line, "results": results, "vs_best_peer": ratios, "by_part": parts}))
        return results
    console.print(_table(results))
    for name, r in results.items():
        if isinstance(r, str):
            console.print(f"[yellow]{name}: {r}[/]")
    if parts:
        table = Table(title="ours: CPU µs per event, by part (see `breakdown`)")
        for col in ("run", *keys, "per order"):
            table.add_column(col, justify="right" if col != "run" else "left")
        for name, b in parts.items():
            table.add_row(name, *(f"{b[k]:.1f}" for k in keys), f"{b['per order']:.0f}")
        console.print(table)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=500_000)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--split", action="store_true", help="also split our CPU time per event by part")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    main(bars=args.bars, ticks=args.ticks, peers=not args.no_peers, split=args.split, json_out=args.json)
