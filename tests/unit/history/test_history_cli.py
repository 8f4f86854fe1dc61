"""`aitrading import ticks|bars` through Typer's CliRunner, on the config's embedded store (in tmp_path)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from history_helpers import mt5_bar_export, mt5_tick_export
from typer.testing import CliRunner

from aitrading.history.cli import app

runner = CliRunner()


def _small_csv(folder: Path) -> Path:
    path = folder / "ticks.csv"
    rows = "".join(f"2020-01-30 15:{m:02d}:00.{m:03d};1.1028{m % 10};1.1029{m % 10}\n" for m in range(30))
    path.write_text("timestamp;bid;ask\n" + rows + "garbage;;\n")
    return path


def test_ticks_command_shows_progress_and_a_summary(tmp_path: Path) -> None:
    path = _small_csv(tmp_path)
    args = ["ticks", str(path), "--format", "csv", "--symbol", "EURUSD", "--feed", "demo"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "reading ticks.csv" in out  # the progress bar
    assert "imported 30 ticks" in out
    assert "rows read" in out
    assert "31" in out
    assert "unparsable_time 1 (line 32)" in out
    assert "2020-01-30 15:00:00.000 → 2020-01-30 15:29:00.029 UTC" in out
    assert "M1 30" in out
    assert "rows/s" in out

    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert "already imported: 1 chunk(s) (30 ticks)" in again.output


def test_mt5_ticks_without_tz_fail_with_one_clear_line(tmp_path: Path) -> None:
    path = mt5_tick_export(tmp_path)
    result = runner.invoke(app, ["ticks", str(path), "-f", "mt5", "-s", "EURUSD", "--feed", "broker"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: MT5 exports are in broker time: pass --tz, e.g. --tz Etc/GMT-2"
    assert not (tmp_path / "var").exists()  # refused before the store was touched


def test_mt5_ticks_with_tz_import(tmp_path: Path) -> None:
    path = mt5_tick_export(tmp_path)
    args = ["ticks", str(path), "-f", "mt5", "-s", "EURUSD", "--feed", "broker", "--tz", "Etc/GMT-2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "imported 5 ticks" in result.output


def test_unknown_zone_and_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["ticks", str(_small_csv(tmp_path)), "-f", "csv", "-s", "X", "--feed", "f", "--tz", "Moon/Base"]
    )
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "unknown time zone 'Moon/Base'" in result.output
    result = runner.invoke(app, ["ticks", str(tmp_path / "nope.csv"), "-f", "csv", "-s", "X", "--feed", "f"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: no such file: {tmp_path / 'nope.csv'}"


def test_bars_command_takes_the_timeframe_from_the_file_name(tmp_path: Path) -> None:
    path = mt5_bar_export(
        tmp_path,
        "EURUSD_M5_202001300000.csv",
        [
            "2020.01.30\t10:00:00\t1.10274\t1.10300\t1.10200\t1.10250\t1234\t0\t5",
            "2020.01.30\t10:05:00\t1.10250\t1.10260\t1.10240\t1.10255\t99\t0\t7",
        ],
    )
    result = runner.invoke(app, ["bars", str(path), "-s", "EURUSD", "--feed", "broker", "--tz", "Etc/GMT-2"])
    assert result.exit_code == 0, result.output
    assert "imported 2 bars" in result.output
    assert "M5 2" in result.output
    missing = runner.invoke(app, ["bars", str(path), "-s", "EURUSD", "--feed", "broker"])
    assert missing.exit_code == 2
    assert "pass --tz" in missing.output


@pytest.mark.slow
def test_store_held_by_a_running_platform_is_one_clear_error(tmp_path: Path) -> None:
    chdb = tmp_path / "var" / "chdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from chdb.session import Session; s = Session(sys.argv[1]); "
            "print('ready', flush=True); time.sleep(60)",
            str(chdb),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        started = time.monotonic()
        result = runner.invoke(
            app, ["ticks", str(_small_csv(tmp_path)), "-f", "csv", "-s", "X", "--feed", "f"]
        )
        assert result.exit_code == 2
        assert result.output.count("\n") == 1
        assert "is in use by another process (is the platform running?): stop the platform" in result.output
        assert time.monotonic() - started < 5
    finally:
        holder.terminate()
        holder.wait(timeout=10)
