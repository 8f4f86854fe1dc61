"""The benchmark commands run and print their tables (figures are never asserted: wall-clock varies)."""

from __future__ import annotations

from pathlib import Path

import pytest
from platform_helpers import platform_env, run_cli


def test_bench_bus_prints_messages_per_second_for_the_in_process_bus(tmp_path: Path) -> None:
    result = run_cli(["bench", "bus", "--n", "2000", "--no-nats"], platform_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "msgs/s" in result.stdout
    assert "memory" in result.stdout


def test_bench_ingest_runs_end_to_end_on_a_small_feed(tmp_path: Path) -> None:
    result = run_cli(["bench", "ingest", "--ticks", "20000"], platform_env(tmp_path), tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ticks/s" in result.stdout
    assert "accepted 20,000 of 20,000" in result.stdout


def test_bench_gateway_measures_direct_and_proxied_calls_without_errors(tmp_path: Path) -> None:
    import json

    result = run_cli(
        [
            "bench",
            "gateway",
            "--requests",
            "300",
            "--warmup",
            "50",
            "--connections",
            "2",
            "--rounds",
            "1",
            "--json",
        ],
        platform_env(tmp_path),
        tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout[result.stdout.index("{") :])
    assert set(figures) == {"direct@2", "gateway@2"}
    for target in figures.values():
        assert target["n"] == 300
        assert target["errors"] == 0
        assert target["rps"] > 0
        assert target["cpu_us"] is None or target["cpu_us"] > 0


def test_bench_decision_trains_the_models_and_prints_their_latency_table(tmp_path: Path) -> None:
    args = ["bench", "decision", "--bars", "150", "--train-bars", "600", "--load", "1", "--gap-ms", "0.2"]
    args += ["--lstm-epochs", "1", "--no-realtime", "--synthetic"]
    result = run_cli(args, platform_env(tmp_path), tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "data synthetic: seeded random walk" in out
    assert "p99 ≤ 1 ms" in out
    rows = [
        line.split() for line in out.splitlines() if line.split()[:1] in (["lightgbm"], ["xgboost"], ["lstm"])
    ]
    kinds = {"lightgbm", "xgboost"} | ({"lstm"} if "trained lstm" in out else set())
    # every model in both modes, on the quiet machine (load 0) and beside one busy loop (load 1)
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(
        (k, mode, load) for k in kinds for mode in ("replay", "live") for load in ("0", "1")
    )


def _market_data() -> Path:
    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    if not (data / "backtestingpy_EURUSD_H1_2017-2018.csv").is_file():
        pytest.skip(f"market data not in {data} (see ../shared/data/SOURCES.md)")
    return data


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_bench_backtest_measures_our_rates_against_each_installed_peer(tmp_path: Path) -> None:
    """The peers are measured when installed (backtesting.py comes with the test extra, NautilusTrader only
    with the bench extra); a peer that is not installed is reported as not measured, with the reason."""
    import json

    _market_data()
    result = run_cli(
        ["bench", "backtest", "--bars", "1500", "--ticks", "4000", "--split", "--json"],
        platform_env(tmp_path),
        tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout[result.stdout.index("{") :])
    results, ratios = figures["results"], figures["vs_best_peer"]
    for ours in ("ours bars", "ours ticks"):
        assert results[ours]["rate"] > 0
        assert results[ours]["orders"] > 0
    nautilus, backtesting = _installed("nautilus_trader"), _installed("backtesting")
    for name, installed in (
        ("backtesting.py bars", backtesting),
        ("nautilus bars", nautilus),
        ("nautilus ticks", nautilus),
    ):
        if installed:
            assert results[name]["rate"] > 0, results[name]
        else:
            assert results[name].startswith("not measured: ModuleNotFoundError"), results[name]
    bars_peers = {p for p, ok in (("backtesting.py", backtesting), ("nautilus", nautilus)) if ok}
    if bars_peers:
        assert ratios["ours bars"]["peer"] in bars_peers
        assert ratios["ours bars"]["by_rate"] > 0
        assert ratios["ours bars"]["by_cpu"] > 0
    else:
        assert ratios["ours bars"] is None
    assert (ratios["ours ticks"] or {}).get("peer") == ("nautilus" if nautilus else None)
    assert set(figures["by_part"]) == {"bars", "ticks"}
    for part in figures["by_part"].values():
        assert part["total"] > 0
        parts = part["driver+strategy+decision"] + part["quotes (engine+terminal)"] + part["orders"]
        assert parts == pytest.approx(part["total"], rel=1e-9)


def test_bench_backtest_table_keeps_its_columns_whole_when_a_peer_cannot_run(tmp_path: Path) -> None:
    """The printed table: every row on one line, the ratio column beside ours, a peer's failure under it."""
    _market_data()
    result = run_cli(
        ["bench", "backtest", "--bars", "600", "--ticks", "1500"],
        platform_env(tmp_path),
        tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") == 10}
    assert {"ours bars", "ours ticks", "backtesting.py bars", "nautilus bars", "nautilus ticks"} <= set(rows)
    assert "x backtesting.py" in rows["ours bars"] or "x nautilus" in rows["ours bars"]
    if _installed("nautilus_trader"):
        assert "x nautilus" in rows["ours ticks"]
    else:
        assert "no peer measured" in rows["ours ticks"]
        assert "not measured" in rows["nautilus ticks"]
        assert "nautilus ticks: not measured: ModuleNotFoundError" in result.stdout
