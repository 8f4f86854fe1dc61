"""Single-row predictors: the C fast paths answer exactly what the libraries' own `predict` answers.

Also: the cached `RegisteredModel.predict_row` path, the fallback when a fast path cannot be built, and an
LSTM from the registry driving `MLProbability` bar by bar and in a backtest with the training windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ml_helpers import fast_params, planted_bars

from aitrading.backtest.engine import Backtest, BacktestConfig
from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError, OperationalError
from aitrading.features.vectors import compute_batch
from aitrading.ml import predictors
from aitrading.ml.dataset import Costs, build_dataset
from aitrading.ml.inference import RegisteredModel
from aitrading.ml.lstm import default_lstm_params, windowed
from aitrading.ml.models import load_predictor, make_classifier, save_model
from aitrading.ml.registry import ModelRegistry
from aitrading.ml.train import TrainRequest, train
from aitrading.model.market import Bar, Timeframe
from aitrading.strategies.ml import MLConfig, MLProbability, RowProbabilityModel

COSTS = Costs(point=0.00001)


@pytest.fixture(scope="module")
def data() -> Any:
    return build_dataset(planted_bars(1200), Timeframe.H1, horizon=1, costs=COSTS)


@pytest.fixture(scope="module")
def artifacts(data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for kind in ("lightgbm", "xgboost"):
        estimator = make_classifier(kind, fast_params(kind, 40)).fit(data.x, data.y)
        (root / kind).mkdir()
        out[kind] = save_model(kind, estimator, root / kind)
    return out


def test_the_lightgbm_fast_path_answers_what_booster_predict_answers(
    artifacts: dict[str, Path], data: Any
) -> None:
    import lightgbm

    predictor = load_predictor("lightgbm", artifacts["lightgbm"])
    assert isinstance(predictor, predictors._LightGBMRow)  # the fast path, not the fallback
    booster = lightgbm.Booster(model_file=str(artifacts["lightgbm"]))
    want = booster.predict(data.x, num_threads=1)
    got = np.array([predictor(row) for row in data.x])
    assert np.array_equal(got, want)
    assert 0.0 < got.min() < 0.5 < got.max() < 1.0


def test_the_xgboost_fast_path_answers_what_inplace_predict_answers(
    artifacts: dict[str, Path], data: Any
) -> None:
    import xgboost

    predictor = load_predictor("xgboost", artifacts["xgboost"])
    assert isinstance(predictor, predictors._XGBoostRow)
    booster = xgboost.Booster(model_file=str(artifacts["xgboost"]))
    want = booster.inplace_predict(data.x)
    got = np.array([predictor(row) for row in data.x], dtype=np.float32)
    assert np.array_equal(got, want)
    assert 0.0 < got.min() < 0.5 < got.max() < 1.0


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_a_row_of_the_wrong_shape_is_refused_not_broadcast(kind: str, artifacts: dict[str, Path]) -> None:
    predictor = load_predictor(kind, artifacts[kind])
    with pytest.raises(BadInputError, match="row of 25 values"):
        predictor(np.zeros(1))
    with pytest.raises(BadInputError, match="row of 25 values"):
        predictor(np.zeros((1, 25)))


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_without_a_fast_path_the_predictor_is_the_librarys_predict(
    kind: str, artifacts: dict[str, Path], data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = load_predictor(kind, artifacts[kind])

    class Unavailable:
        def __init__(self, *args: Any) -> None:
            raise OperationalError("no fast path in this build")

    monkeypatch.setattr(predictors, "_LightGBMRow", Unavailable)
    monkeypatch.setattr(predictors, "_XGBoostRow", Unavailable)
    portable = load_predictor(kind, artifacts[kind])
    assert not isinstance(portable, type(fast))
    assert [portable(r) for r in data.x[:200]] == [fast(r) for r in data.x[:200]]


def test_registered_model_rows_and_sequences_share_one_cache(artifacts: dict[str, Path], data: Any) -> None:
    meta = {"ref": "m@1", "features": list(data.names)}
    model = RegisteredModel(meta, load_predictor("lightgbm", artifacts["lightgbm"]))
    assert isinstance(model, RowProbabilityModel)
    row = data.x[7].copy()
    p = model.predict_row(row)
    assert (model.hits, model.misses) == (0, 1)
    assert model.predict_up(row.tolist()) == p
    assert model.hits >= 1
    with pytest.raises(BadInputError, match="wants 25 features, got 24"):
        model.predict_row(row[:-1])
    bad = row.copy()
    bad[3] = np.inf
    with pytest.raises(BadInputError, match=r"\['vol_20'\] are not finite"):
        model.predict_row(bad)


# --- the LSTM through MLProbability ----------------------------------------------------------------------

WINDOW = 5


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRegistry, dict[str, Any]]:
    pytest.importorskip("torch")
    registry = ModelRegistry(tmp_path_factory.mktemp("lstm"))
    params = default_lstm_params() | {"window": WINDOW, "hidden": 16, "epochs": 4}
    request = TrainRequest(
        symbol="EURUSD",
        timeframe=Timeframe.H1,
        kind="lstm",
        costs=COSTS,
        params=params,
        n_splits=2,
        min_train=400,
    )
    return registry, train(planted_bars(900), request, registry, TestClock())


def unseen() -> list[Bar]:
    return planted_bars(400, seed=23, start=1_700_000_000 - 1_700_000_000 % 3600)


class Ctx:
    def now_ns(self) -> int:
        return 0

    def position(self, symbol: str) -> int:
        return 0


def test_an_lstm_drives_ml_probability_with_the_windows_it_was_trained_on(
    lstm: tuple[ModelRegistry, dict[str, Any]],
) -> None:
    registry, meta = lstm
    model = RegisteredModel.load(registry, meta["ref"])
    strategy = MLProbability(MLConfig(long_above=0.6, short_below=0.4), model=model)
    assert strategy.window == WINDOW
    bars = unseen()
    frame = windowed(compute_batch, WINDOW)(bars, Timeframe.H1)
    reference = RegisteredModel.load(registry, meta["ref"])  # its own cache: computed from training rows
    decided = 0
    for i, bar in enumerate(bars):
        misses = model.misses
        strategy.on_bar(bar, Ctx())
        if model.misses == misses:
            assert not np.isfinite(frame.values[i]).all()  # no training row, no prediction
            continue
        decided += 1
        assert strategy._p == reference.predict_proba(frame.row(i))  # the training window, bit for bit
    assert decided == int(np.isfinite(frame.values).all(axis=1).sum()) > 300


async def test_an_lstm_trades_in_a_backtest_and_signs_its_signals(
    lstm: tuple[ModelRegistry, dict[str, Any]],
) -> None:
    registry, meta = lstm
    strategy = MLProbability(
        MLConfig(long_above=0.6, short_below=0.4), model=RegisteredModel.load(registry, meta["ref"])
    )
    async with Backtest(BacktestConfig(symbol="EURUSD", feed="F"), [strategy]) as bt:
        await bt.run_bars(unseen())
        assert bt.decision.counters["orders"] > 10  # the planted hour-of-day swing, long and short
        *traded, closing = bt.decision.signals
        assert {s.direction for s in traded} >= {1, -1}
        assert all(s.model_versions == {"ml_probability": meta["ref"]} for s in traded)
        assert all(set(s.features) >= {"ml_probability.p_up", "ml_probability.rsi_14"} for s in traded)
        assert closing.direction == 0  # the backtest's own close at the end


def test_a_multiclass_lightgbm_model_never_reaches_the_one_value_fast_path(tmp_path: Path) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 4)), rng.integers(0, 3, size=300)
    booster = lightgbm.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lightgbm.Dataset(x, y),
        num_boost_round=5,
    )
    path = tmp_path / "multi.txt"
    booster.save_model(str(path))
    with pytest.raises(OperationalError, match="single-output"):
        predictors._LightGBMRow(booster, lightgbm.basic._LIB, -1)
    predictor = predictors.lightgbm_predictor(path)  # falls back to the library's own predict
    assert not isinstance(predictor, predictors._LightGBMRow)
