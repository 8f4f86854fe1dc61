"""`aitrading ml train|list|show`: train a model on stored bars (or a CSV), inspect the registry.

The registry is `<storage.data_dir>/models` of the platform's config unless `--registry` names another
directory. Bars come from the configured tick store (`--feed`, or the only feed holding the symbol) or,
with `--csv`, from a file of OHLC bars (see `aitrading.ml.data`).

The module imports nothing heavy at import time (the `aitrading` CLI loads it on every start).
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aitrading.common.clock import LiveClock
from aitrading.common.config import load_config
from aitrading.common.errors import AITradingError, BadInputError, OperationalError
from aitrading.common.logging import configure_logging
from aitrading.ml.models import MODEL_KINDS
from aitrading.ml.registry import ModelRegistry
from aitrading.model.market import Bar, Timeframe

__all__ = ["app"]

app = typer.Typer(
    name="ml",
    help="Train models with honest walk-forward evaluation; list and show the model registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _registry(path: Path | None) -> ModelRegistry:
    if path is not None:
        return ModelRegistry(path)
    return ModelRegistry(load_config().storage.data_dir / "models")


def _epoch(text: str | None, default: int) -> int:
    if not text:
        return default
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInputError(f"{text!r} is not an ISO-8601 date/time") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


async def _store_bars(
    symbol: str, tf: Timeframe, feed: str | None, from_s: int, to_s: int
) -> tuple[str, list[Bar]]:
    from aitrading.ml.data import load_bars_store
    from aitrading.storage.ticks import make_tick_store

    storage = load_config().storage
    store = make_tick_store(storage.ticks, chdb_path=storage.chdb_path, clickhouse_url=storage.clickhouse_url)
    try:
        await store.start()
    except OperationalError as exc:
        raise OperationalError(
            f"cannot open the tick store ({exc}); embedded chDB admits one process: stop the platform or "
            "train from a CSV with --csv"
        ) from None
    try:
        if feed is None:
            feeds = sorted({f for f, s, _ in await store.symbols() if s == symbol})
            if len(feeds) != 1:
                raise BadInputError(
                    f"{len(feeds)} feeds hold {symbol} ({', '.join(feeds) or 'none'}): name one with --feed"
                )
            feed = feeds[0]
        return feed, await load_bars_store(
            store, feed=feed, symbol=symbol, timeframe=tf, from_s=from_s, to_s=to_s
        )
    finally:
        await store.stop()


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.4f}"


def _summary(meta: dict[str, Any]) -> None:
    m, b = meta["metrics"]["model"], meta["metrics"]["baseline"]
    table = Table(
        title=f"{meta['ref']}: out-of-sample, {m['n']:,} samples, {meta['cv']['n_splits']} purged folds"
    )
    table.add_column("metric")
    table.add_column(meta["kind"], justify="right")
    table.add_column("baseline (prior)", justify="right")
    table.add_column("better", justify="center")
    for key, higher in (("accuracy", True), ("log_loss", False), ("brier", False), ("auc", True)):
        if m[key] is None or b[key] is None:
            table.add_row(key, _fmt(m[key]), _fmt(b[key]), "n/a")
            continue
        better = m[key] > b[key] if higher else m[key] < b[key]
        table.add_row(key, _fmt(m[key]), _fmt(b[key]), "yes" if better else "no")
    console.print(table)
    cal = meta["metrics"]["calibration"]
    pairs = ", ".join(f"{p:.2f}→{o:.2f}" for p, o in zip(cal["mean_predicted"], cal["observed"], strict=True))
    console.print(f"calibration (predicted→observed per decile): {pairs}")
    beats = m["log_loss"] < b["log_loss"] and m["accuracy"] > b["accuracy"]
    verdict = (
        "the model beats the naive baseline out of sample"
        if beats
        else "the model does NOT beat the naive baseline out of sample: no usable edge in these features"
    )
    console.print(f"[bold]{verdict}[/] (positive rate {meta['metrics']['positive_rate']:.3f})")


@app.command("train")
def train_cmd(
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. EURUSD")],
    timeframe: Annotated[str, typer.Option(help="M1, M5, M15, M30, H1, H4 or D1")],
    model: Annotated[
        str, typer.Option(help="lightgbm, xgboost or lstm (needs the lstm extra: pip install -e '.[lstm]')")
    ] = "lightgbm",
    window: Annotated[
        int | None, typer.Option(min=1, max=40, help="LSTM only: feature vectors per sample (default 16)")
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, help="Label horizon in bars")] = 1,
    feed: Annotated[str | None, typer.Option(help="Feed (broker server) of the stored bars")] = None,
    csv: Annotated[Path | None, typer.Option(help="Read bars from this CSV instead of the store")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Start (ISO-8601, UTC)")] = None,
    to: Annotated[str | None, typer.Option(help="End, exclusive (ISO-8601, UTC)")] = None,
    point: Annotated[float, typer.Option(help="Price step of one point (JPY pairs: 0.001)")] = 0.00001,
    cost_points: Annotated[float, typer.Option(help="Spread in points for bars without one")] = 10.0,
    commission_points: Annotated[float, typer.Option(help="Commission per round trip, points")] = 0.0,
    splits: Annotated[int, typer.Option(min=1, help="Walk-forward folds")] = 5,
    embargo: Annotated[int | None, typer.Option(min=0, help="Embargo in bars (default horizon + 24)")] = None,
    min_train: Annotated[int, typer.Option(min=50, help="Samples before the first test fold")] = 1000,
    registry: Annotated[
        Path | None, typer.Option(help="Registry directory (default: data dir/models)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's metadata as JSON")] = False,
) -> None:
    """Train a model, evaluate it with purged walk-forward CV against a baseline, and register it."""
    # Imported here: numpy/scikit-learn/arrow would slow every other `aitrading` command's start.
    from aitrading.ml.data import load_bars_csv
    from aitrading.ml.dataset import Costs
    from aitrading.ml.train import TrainRequest, train

    configure_logging("WARNING")
    try:
        tf = Timeframe.parse(timeframe)
        if model not in MODEL_KINDS:
            raise BadInputError(f"unknown model {model!r}; use one of {', '.join(MODEL_KINDS)}")
        params = None
        if window is not None:
            if model != "lstm":
                raise BadInputError("--window applies to --model lstm only")
            from aitrading.ml.models import default_params

            params = default_params("lstm") | {"window": window}
        from_s, to_s = _epoch(from_, 0), _epoch(to, 253_402_300_800)
        if csv is not None:
            bars = [b for b in load_bars_csv(csv, symbol=symbol, timeframe=tf) if from_s <= b.time < to_s]
            feed_name, source = "csv", str(csv)
        else:
            feed_name, bars = asyncio.run(_store_bars(symbol, tf, feed, from_s, to_s))
            source = f"tick store {feed_name}/{symbol}/{tf.name}"
        if not bars:
            raise BadInputError(f"no {tf.name} bars of {symbol} in {source}")
        request = TrainRequest(
            symbol=symbol,
            timeframe=tf,
            kind=model,
            horizon=horizon,
            costs=Costs(point=point, cost_points=cost_points, commission_points=commission_points),
            n_splits=splits,
            embargo=embargo,
            min_train=min_train,
            params=params,
            feed=feed_name,
            source=source,
        )
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=as_json) as progress:
            tasks: dict[str, Any] = {}

            def advance(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            meta = train(bars, request, _registry(registry), LiveClock(), progress=advance)
    except AITradingError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if as_json:
        console.print_json(json.dumps(meta))
        return
    _summary(meta)
    console.print(
        f"registered [bold]{meta['ref']}[/] ({meta['data']['samples']:,} samples, {meta['train_seconds']} s)"
    )


@app.command("list")
def list_cmd(
    registry: Annotated[
        Path | None, typer.Option(help="Registry directory (default: data dir/models)")
    ] = None,
) -> None:
    """List the registered models with their out-of-sample accuracy beside the baseline."""
    entries = _registry(registry).list()
    table = Table(title="model registry (out-of-sample scores)")
    table.add_column("ref", no_wrap=True, min_width=max((len(e["ref"]) for e in entries), default=3))
    for col in ("acc", "base acc", "logloss", "base ll", "created"):
        table.add_column(col, justify="right", no_wrap=True)
    for e in entries:
        m, b = e["metrics"]["model"], e["metrics"]["baseline"]
        table.add_row(
            e["ref"],
            _fmt(m["accuracy"]),
            _fmt(b["accuracy"]),
            _fmt(m["log_loss"]),
            _fmt(b["log_loss"]),
            e["created"][:10],
        )
    console.print(table if entries else "no models registered")


@app.command("show")
def show_cmd(
    ref: Annotated[str, typer.Argument(help="name@version, or name for the latest version")],
    registry: Annotated[
        Path | None, typer.Option(help="Registry directory (default: data dir/models)")
    ] = None,
) -> None:
    """Print a model's metadata (features, params, data range, metrics, code version) as JSON."""
    try:
        meta = _registry(registry).meta(ref)
    except AITradingError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print_json(json.dumps(meta))
