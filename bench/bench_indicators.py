"""Indicator benchmark: batch time per indicator against TA-Lib, and streaming updates per second.

Run: `.venv/bin/python -m bench.bench_indicators [--n 1000000] [--stream-n N] [--repeat 3]`

Input is a seeded geometric random walk of `--n` bars (high, low, close; price indicators take the close),
the same arrays for every contender. Batch figures are the best of `--repeat` runs of our `batch` function
and of `talib` (C) with TA-Lib's default parameters, measured in this run. Streaming feeds `--stream-n`
bars (default: all of them) one at a time through `update`. Figures only; nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from aitrading.features.indicators import INDICATORS

# Without TA-Lib the benchmark still reports our own figures.
talib: Any = importlib.import_module("talib") if importlib.util.find_spec("talib") else None


def random_walk(n: int, seed: int = 20240101) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (high, low, close) of a geometric random walk around 1.1 with 1e-4 volatility per bar."""
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0.0, 1e-4, n)))
    high = close * (1.0 + np.abs(rng.normal(0.0, 1e-4, n)))
    low = close * (1.0 - np.abs(rng.normal(0.0, 1e-4, n)))
    return high, low, close


def _best_of(repeat: int, call: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def bench_indicator(
    name: str,
    bars: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    repeat: int = 3,
    stream_n: int | None = None,
) -> dict[str, Any]:
    """Time one indicator: our batch, TA-Lib's batch, and our stream over `stream_n` bars."""
    spec = INDICATORS[name]
    inputs = (bars[2],) if spec.inputs == ("real",) else bars
    ours = _best_of(repeat, lambda: spec.batch(*inputs))
    theirs = _best_of(repeat, lambda: getattr(talib, name)(*inputs)) if talib is not None else None
    count = len(bars[2]) if stream_n is None else min(stream_n, len(bars[2]))
    columns = [arr[:count].tolist() for arr in inputs]
    stream = spec.stream()
    update = stream.update
    started = time.perf_counter()
    if len(columns) == 1:
        for value in columns[0]:
            update(value)
    else:
        for high, low, close in zip(*columns, strict=True):
            update(high, low, close)
    streamed = time.perf_counter() - started
    return {
        "name": name,
        "n": len(bars[2]),
        "batch_s": ours,
        "talib_s": theirs,
        "stream_n": count,
        "stream_s": streamed,
    }


def _table(results: list[dict[str, Any]]) -> Table:
    n = results[0]["n"] if results else 0
    table = Table(title=f"Indicators on {n:,} bars (TA-Lib default parameters)")
    columns = ("indicator", "batch ms", "TA-Lib ms", "vs TA-Lib", "updates/s", "µs/update", "vs batch")
    for col in columns:
        table.add_column(col, justify="left" if col == "indicator" else "right")
    for r in results:
        per_value_batch = r["batch_s"] / r["n"]
        per_update = r["stream_s"] / r["stream_n"]
        talib_s = r["talib_s"]
        table.add_row(
            r["name"],
            f"{r['batch_s'] * 1e3:,.1f}",
            f"{talib_s * 1e3:,.2f}" if talib_s is not None else "n/a",
            f"{r['batch_s'] / talib_s:,.1f}×" if talib_s else "n/a",
            f"{1.0 / per_update:,.0f}",
            f"{per_update * 1e6:.2f}",
            f"{per_update / per_value_batch:,.1f}×",
        )
    table.caption = (
        "vs TA-Lib: our batch time / TA-Lib's (C). updates/s, µs/update: our stream, one bar per update. "
        "vs batch: time per streamed update / our batch time per value."
    )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1_000_000, help="bars per series")
    parser.add_argument(
        "--stream-n", type=int, default=None, help="bars streamed per indicator (default: --n)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="batch runs per contender; the best one counts")
    parser.add_argument("--only", default="", help="comma-separated indicator names (default: all)")
    args = parser.parse_args(argv)
    bars = random_walk(args.n)
    names = [name for name in args.only.split(",") if name] or list(INDICATORS)
    console = Console() if sys.stdout.isatty() else Console(width=100)  # keep the table whole when piped
    if talib is None:
        console.print("[yellow]TA-Lib (talib) is not installed: no TA-Lib column[/yellow]")
    results = [bench_indicator(name, bars, repeat=args.repeat, stream_n=args.stream_n) for name in names]
    console.print(_table(results))


if __name__ == "__main__":
    main()
