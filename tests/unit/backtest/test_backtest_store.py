"""Replaying the tick store: stored bars (or bars built from stored ticks) and stored ticks, page by page,
and `aitrading backtest --timeframe` / `--ticks` over the configured store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aitrading.backtest.data import read_tick_file, store_bars, store_ticks
from aitrading.cli import app
from aitrading.model.market import Timeframe
from aitrading.storage.ticks import ChDBTickStore

TICKS = Path(__file__).resolve().parents[4] / "shared" / "data" / "dukascopy_EURUSD_ticks_20190101.csv"


def ticks() -> list:  # type: ignore[type-arg]
    if not TICKS.is_file():
        pytest.skip(f"{TICKS} is absent")
    return list(read_tick_file(TICKS, "dukascopy", feed="SIM", symbol="EURUSD"))


async def test_stored_ticks_come_back_in_order_and_bars_are_built_from_them(
    chdb_store: ChDBTickStore,
) -> None:
    data = ticks()
    await chdb_store.write_ticks(data)
    start, end = data[0].time_msc, data[-1].time_msc + 1
    got = [t async for t in store_ticks(chdb_store, "SIM", "EURUSD", start, end)]
    assert [(t.time_msc, t.bid, t.ask) for t in got] == [(t.time_msc, t.bid, t.ask) for t in data]
    bars = await store_bars(
        chdb_store, "SIM", "EURUSD", Timeframe.M1, start // 1000 - 60, end // 1000 + 60, 10_000
    )
    assert sum(b.tick_volume for b in bars) == len(data)
    assert bars[0].open == data[0].bid


def test_cli_backtests_the_configured_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ticks()
    monkeypatch.setenv("AITRADING_STORAGE__DATA_DIR", str(tmp_path))
    import asyncio

    from aitrading.common.config import load_config

    path = load_config().storage.chdb_path

    async def fill() -> None:
        store = ChDBTickStore(path)
        await store.start()
        try:
            await store.write_ticks(data)
        finally:
            await store.stop()

    asyncio.run(fill())
    runner = CliRunner()
    common = [
        "backtest",
        "--symbol",
        "EURUSD",
        "--feed",
        "SIM",
        "--from",
        "2019-01-01 23:00",
        "--to",
        "2019-01-02 02:00",
        "--json",
    ]
    bars = runner.invoke(
        app,
        [*common, "--timeframe", "M1", "--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=15"],
    )
    assert bars.exit_code == 0, bars.output
    out = json.loads(bars.output[bars.output.index("{") :])
    assert out["run"]["mode"] == "bars"
    assert out["run"]["events"] > 90
    tick_run = runner.invoke(
        app, [*common, "--ticks", "--strategy", "ema_cross", "--param", "fast=100", "--param", "slow=400"]
    )
    assert tick_run.exit_code == 0, tick_run.output
    out = json.loads(tick_run.output[tick_run.output.index("{") :])
    assert out["run"]["mode"] == "ticks"
    assert out["run"]["events"] == len(data)
    assert out["metrics"]["trades"] >= 1
