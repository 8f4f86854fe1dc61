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
