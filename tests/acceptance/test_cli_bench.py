"""The benchmark commands run and print their tables (figures are never asserted: wall-clock varies)."""

from __future__ import annotations

from pathlib import Path

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
