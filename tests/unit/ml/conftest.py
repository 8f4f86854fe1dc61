"""Fixtures of the ML tests: real EURUSD H1 bars (skipped where the shared data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitrading.ml.data import load_bars_csv
from aitrading.model.market import Bar, Timeframe


@pytest.fixture
def eurusd_h1(shared_data: Path) -> list[Bar]:
    path = shared_data / "backtestingpy_EURUSD_H1_2017-2018.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return load_bars_csv(path, symbol="EURUSD", timeframe=Timeframe.H1)
