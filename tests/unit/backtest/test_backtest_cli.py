"""`aitrading backtest` from the command line: CSV bars, JSON output, HTML report, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aitrading.cli import app

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "backtestingpy_EURUSD_H1_2017-2018.csv"
runner = CliRunner()


def small_csv(tmp_path: Path) -> Path:
    if not DATA.is_file():
        pytest.skip(f"{DATA} is absent")
    lines = DATA.read_text().splitlines()[:400]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_backtest_of_csv_bars_prints_json_and_writes_the_report(tmp_path: Path) -> None:
    csv = small_csv(tmp_path)
    report = tmp_path / "r.html"
    result = runner.invoke(
        app,
        [
            "backtest",
            "--symbol",
            "EURUSD",
            "--csv",
            str(csv),
            "--strategy",
            "sma_cross",
            "--param",
            "fast=10",
            "--param",
            "slow=20",
            "--spread",
            "2",
            "--commission",
            "3.5",
            "--json",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert out["metrics"]["trades"] == len(out["trades"]) > 5
    assert out["run"]["costs"]["spread_points"] == 2
    first = out["trades"][0]
    assert float(first["entry_price"]) > 0
    # Costs are paid: every trade pays 2 × 3.50 commission, and a long buys 2 points above the bid bar.
    assert out["run"]["denied"] == 0
    assert report.read_text().count("<svg") == 2


def test_backtest_needs_a_timeframe_or_ticks_when_reading_the_store() -> None:
    result = runner.invoke(app, ["backtest", "--symbol", "EURUSD", "--strategy", "sma_cross"])
    assert result.exit_code != 0
    assert "--timeframe" in str(result.exception)


def test_backtest_refuses_an_unknown_symbol(tmp_path: Path) -> None:
    csv = small_csv(tmp_path)
    result = runner.invoke(
        app, ["backtest", "--symbol", "NOPE", "--csv", str(csv), "--strategy", "sma_cross"]
    )
    assert result.exit_code != 0
    assert "unknown symbol" in str(result.exception)


def test_backtest_refuses_a_parameter_without_equals(tmp_path: Path) -> None:
    csv = small_csv(tmp_path)
    result = runner.invoke(
        app,
        ["backtest", "--symbol", "EURUSD", "--csv", str(csv), "--strategy", "sma_cross", "--param", "fast"],
    )
    assert result.exit_code != 0
    assert "key=value" in str(result.exception)


def test_end_at_open_closes_the_last_trade_at_the_last_bars_open(tmp_path: Path) -> None:
    csv = small_csv(tmp_path)
    last_open = csv.read_text().splitlines()[-1].split(",")[1]
    base = ["backtest", "--symbol", "EURUSD", "--csv", str(csv), "--strategy", "sma_cross", "--json"]
    exits = {}
    for end_at in ("close", "open"):
        result = runner.invoke(app, [*base, "--end-at", end_at])
        assert result.exit_code == 0, result.output
        out = json.loads(result.output[result.output.index("{") :])
        exits[end_at] = out["trades"][-1]["exit_price"]
    assert float(exits["open"]) == float(last_open)
    assert exits["open"] != exits["close"]
    bad = runner.invoke(app, [*base, "--end-at", "noon"])
    assert bad.exit_code != 0
    assert "--end-at" in str(bad.exception)
