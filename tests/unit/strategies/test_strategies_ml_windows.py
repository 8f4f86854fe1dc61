"""`MLProbability` with sequence models: the rolling window fed live is the window the model trained on.

A model asking for `<feature>[t-k]` inputs (the LSTM) is trained on `windowed(compute_batch, window)`;
the strategy must hand it, bar by bar, exactly those rows (no train/serve skew), and only on the bars
that have one. Checked on real EURUSD H1 bars (skipped where the shared data is absent) and on a
deterministic series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from aitrading.features.vectors import FEATURE_NAMES, compute_batch
from aitrading.ml.data import load_bars_csv
from aitrading.ml.lstm import windowed
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies.base import OrderIntent
from aitrading.strategies.ml import MLConfig, MLProbability, ProbabilityModel, RowProbabilityModel


class Ctx:
    def now_ns(self) -> int:
        return 0

    def position(self, symbol: str) -> int:
        return 0


class ListRecorder:
    """A plain `ProbabilityModel` (lists in) that remembers every input and leans on the newest return."""

    version = "recorder-1"

    def __init__(self, names: Sequence[str]) -> None:
        self.feature_names = tuple(names)
        self.rows: list[list[float]] = []
        self._ret = self.feature_names.index("ret_1")

    def predict_up(self, features: Sequence[float]) -> float:
        self.rows.append(list(features))
        return min(1.0, max(0.0, 0.5 + 300.0 * features[self._ret]))


class RowRecorder(ListRecorder):
    """The same, taking numpy rows as `RegisteredModel.predict_row` does."""

    def predict_row(self, row: npt.NDArray[np.float64]) -> float:
        return self.predict_up(row.tolist())


def walk(n: int) -> list[Bar]:
    """A deterministic H1 series with some swing (no shared data needed)."""
    out = []
    for i in range(n):
        mid = 1.1 + 0.004 * math.sin(i / 7.0) + 0.0004 * ((i * 37) % 11 - 5)
        o, c = mid - 0.0002 * math.cos(i), mid
        out.append(
            Bar(
                feed="T",
                symbol="EURUSD",
                timeframe=int(Timeframe.H1),
                time=1_700_000_000 - 1_700_000_000 % 3600 + 3600 * i,
                open=round(o * PRICE_SCALE),
                high=round((max(o, c) + 0.0003) * PRICE_SCALE),
                low=round((min(o, c) - 0.0003) * PRICE_SCALE),
                close=round(c * PRICE_SCALE),
                tick_volume=100 + (i * 13) % 50,
                spread=10,
            )
        )
    return out


@pytest.fixture
def eurusd(shared_data: Path) -> list[Bar]:
    path = shared_data / "backtestingpy_EURUSD_H1_2017-2018.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return load_bars_csv(path, symbol="EURUSD", timeframe=Timeframe.H1)[:700]


def replay(model: ProbabilityModel, bars: Sequence[Bar]) -> tuple[list[int], list[OrderIntent]]:
    """Feed `bars` to the strategy; return the bar indexes it asked the model at, and its intents."""
    strategy = MLProbability(MLConfig(long_above=0.55, short_below=0.45), model=model)
    asked: list[int] = []
    intents: list[OrderIntent] = []
    recorded = model.rows  # type: ignore[attr-defined]
    for i, bar in enumerate(bars):
        before = len(recorded)
        intents += strategy.on_bar(bar, Ctx()) or ()
        asked += [i] * (len(recorded) - before)
    return asked, intents


def assert_fed_the_training_rows(model: ListRecorder, bars: Sequence[Bar], window: int) -> None:
    frame = windowed(compute_batch, window)(bars, Timeframe.H1)
    column = {name: j for j, name in enumerate(frame.names)}
    order = [column[n] for n in model.feature_names]
    asked, _ = replay(model, bars)
    trained_on = [i for i in range(len(bars)) if np.isfinite(frame.values[i]).all()]
    assert asked == trained_on  # a prediction exactly where training has a row, none in the warm-up
    assert len(asked) > 100
    for i, row in zip(asked, model.rows, strict=True):
        assert row == frame.values[i, order].tolist()  # bit for bit: no train/serve skew


@pytest.mark.parametrize("window", [1, 4, 16])
def test_a_window_model_gets_the_rows_it_was_trained_on_bar_by_bar(window: int) -> None:
    bars = walk(400)
    names = windowed(compute_batch, window)(bars[:100], Timeframe.H1).names
    model = RowRecorder(names)
    assert isinstance(model, RowProbabilityModel)
    assert_fed_the_training_rows(model, bars, window)


def test_on_real_bars_the_live_window_equals_the_training_window(eurusd: list[Bar]) -> None:
    names = windowed(compute_batch, 16)(eurusd[:100], Timeframe.H1).names
    assert_fed_the_training_rows(RowRecorder(names), eurusd, 16)


def test_a_model_ordering_its_inputs_its_own_way_and_taking_lists_gets_them_in_its_order() -> None:
    bars = walk(300)
    names = list(reversed(windowed(compute_batch, 3)(bars[:100], Timeframe.H1).names))[:60]
    model = ListRecorder([*names, "ret_1"])
    assert not isinstance(model, RowProbabilityModel)
    assert_fed_the_training_rows(model, bars, 3)


def test_a_redelivered_bar_neither_moves_the_window_nor_asks_the_model_again() -> None:
    bars = walk(200)
    names = windowed(compute_batch, 5)(bars[:100], Timeframe.H1).names
    once, twice = RowRecorder(names), RowRecorder(names)
    replay(once, bars)
    replay(twice, [b for bar in bars for b in (bar, bar)])
    assert twice.rows == once.rows


def test_intents_of_a_window_model_record_the_current_bars_features() -> None:
    bars = walk(300)
    model = RowRecorder(windowed(compute_batch, 4)(bars[:100], Timeframe.H1).names)
    strategy = MLProbability(MLConfig(long_above=0.55, short_below=0.45), model=model)
    frame = compute_batch(bars, Timeframe.H1)
    seen = 0
    for i, bar in enumerate(bars):
        for intent in strategy.on_bar(bar, Ctx()) or ():
            seen += 1
            assert intent.model_versions == {"ml_probability": "recorder-1"}
            assert intent.features["p_up"] == strategy._p
            assert {k: v for k, v in intent.features.items() if k != "p_up"} == frame.row(i)
    assert seen >= 2


def test_a_window_longer_than_the_platform_allows_or_an_unknown_lag_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ret_1\[t-40\]"):
        MLProbability(MLConfig(), model=RowRecorder(["ret_1", "ret_1[t-40]"]))
    with pytest.raises(ValueError, match=r"moon\[t-1\]"):
        MLProbability(MLConfig(), model=RowRecorder(["ret_1", "moon[t-1]"]))


def test_the_strategy_knows_the_window_it_keeps() -> None:
    names = windowed(compute_batch, 6)(walk(100), Timeframe.H1).names
    assert MLProbability(MLConfig(), model=RowRecorder(names)).window == 6
    assert MLProbability(MLConfig(), model=RowRecorder(FEATURE_NAMES)).window == 1
