"""Training: labels net of costs, walk-forward scores beside the baseline, a complete registry entry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from ml_helpers import fast_params, planted_bars
from typer.testing import CliRunner

from aitrading.cli import app
from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError, NotFoundError
from aitrading.features.vectors import FEATURE_NAMES, FEATURE_SET_VERSION
from aitrading.ml.cv import PurgedWalkForward
from aitrading.ml.data import load_bars_csv, load_bars_store
from aitrading.ml.dataset import Costs, build_dataset, forward_labels
from aitrading.ml.inference import RegisteredModel
from aitrading.ml.registry import ModelRegistry
from aitrading.ml.train import TrainRequest, train
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.storage.ticks import ChDBTickStore

COSTS = Costs(point=0.00001, cost_points=10)


def _bar(t: int, close: float, spread: int = 0) -> Bar:
    raw = round(close * PRICE_SCALE)
    return Bar(
        feed="F",
        symbol="S",
        timeframe=16385,
        time=t,
        open=raw,
        high=raw,
        low=raw,
        close=raw,
        tick_volume=1,
        spread=spread,
    )


def test_labels_say_whether_a_long_pays_its_costs_over_the_horizon() -> None:
    bars = [_bar(0, 1.10000, 5), _bar(3600, 1.10004), _bar(7200, 1.10012), _bar(10800, 1.10011)]
    costs = Costs(point=0.00001, cost_points=10, commission_points=2)
    # bar 0: +4 points vs 5 spread + 2 commission -> 0; bar 1: +8 vs 10 + 2 -> 0; bar 2: -1 -> 0
    assert forward_labels(bars, 1, costs)[:3].tolist() == [0.0, 0.0, 0.0]
    # over two bars: bar 0: +12 vs 7 -> 1; bar 1: +7 vs 12 -> 0
    two = forward_labels(bars, 2, costs)
    assert two[:2].tolist() == [1.0, 0.0]
    assert np.isnan(two[2:]).all()
    with pytest.raises(BadInputError, match="horizon"):
        forward_labels(bars, 0, costs)


def test_the_pipeline_finds_a_planted_signal_and_beats_the_baseline(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    request = TrainRequest(
        symbol="EURUSD", timeframe=Timeframe.H1, kind="lightgbm", costs=COSTS, params=fast_params("lightgbm")
    )
    meta = train(planted_bars(3000), request, registry, TestClock())
    model, base = meta["metrics"]["model"], meta["metrics"]["baseline"]
    assert model["accuracy"] > 0.95
    assert base["accuracy"] < 0.6
    assert model["log_loss"] < base["log_loss"]
    assert model["auc"] > 0.95
    loaded = RegisteredModel.load(registry, meta["ref"])
    hours = {"hour_sin": np.sin(2 * np.pi * 5 / 24), "hour_cos": np.cos(2 * np.pi * 5 / 24)}
    row = dict.fromkeys(FEATURE_NAMES, 0.0) | hours
    assert loaded.predict_proba(row) > 0.5  # after a 05:00 close the planted move is up


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_real_eurusd_h1_scores_are_reported_beside_a_baseline_recomputed_independently(
    eurusd_h1: list[Bar], tmp_path: Path, kind: str
) -> None:
    registry = ModelRegistry(tmp_path)
    request = TrainRequest(
        symbol="EURUSD",
        timeframe=Timeframe.H1,
        kind=kind,
        horizon=1,
        costs=COSTS,
        params=fast_params(kind, 60),
    )
    meta = train(eurusd_h1, request, registry, TestClock(), progress=lambda *_: None)
    m = meta["metrics"]
    print(f"\nEURUSD H1 {kind}: model {m['model']}\n  baseline {m['baseline']}")
    print(f"  calibration {m['calibration']}")

    data = build_dataset(eurusd_h1, Timeframe.H1, horizon=1, costs=COSTS)
    splitter = PurgedWalkForward(n_splits=5, embargo=25, min_train=1000)
    hits, total = 0, 0
    for fold, reported in zip(splitter.split(data.start, data.label_end), m["folds"], strict=True):
        prior = data.y[fold.train].mean()
        correct = int((data.y[fold.test] == int(prior > 0.5)).sum())
        assert reported["baseline"]["accuracy"] == pytest.approx(correct / fold.test.size)
        assert reported["train"] == fold.train.size
        assert reported["purged"] == fold.purged == 25 + 1
        hits, total = hits + correct, total + fold.test.size
    assert m["baseline"]["accuracy"] == pytest.approx(hits / total)
    assert m["model"]["n"] == total
    assert 0.0 < m["model"]["log_loss"] < 1.5
    assert 0.0 < m["model"]["brier"] < 0.5
    assert sum(m["calibration"]["counts"]) == total

    assert meta["features"] == list(FEATURE_NAMES)
    assert meta["feature_set"] == FEATURE_SET_VERSION
    assert meta["params"]["n_estimators"] == 60
    assert meta["kind"] == kind
    assert meta["data"] == {
        "source": "",
        "bars": 5000,
        "samples": len(data),
        "from": eurusd_h1[0].time,
        "to": eurusd_h1[-1].time,
    }
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", meta["code"]["git_sha"])
    assert meta["created"] == TestClock().utcnow().isoformat()
    assert (tmp_path / f"EURUSD-H1-{kind}-h1" / "1" / meta["artifact"]).is_file()


def test_registry_versions_count_up_and_resolve_the_latest(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    request = TrainRequest(
        symbol="EURUSD", timeframe=Timeframe.H1, kind="xgboost", costs=COSTS, params=fast_params("xgboost", 5)
    )
    bars = planted_bars(1500)
    first = train(bars, request, registry, TestClock())
    second = train(bars, request, registry, TestClock())
    assert (first["ref"], second["ref"]) == ("EURUSD-H1-xgboost-h1@1", "EURUSD-H1-xgboost-h1@2")
    assert registry.resolve("EURUSD-H1-xgboost-h1") == ("EURUSD-H1-xgboost-h1", 2)
    assert [e["ref"] for e in registry.list()] == [first["ref"], second["ref"]]
    with pytest.raises(NotFoundError, match="no version '3'"):
        registry.resolve("EURUSD-H1-xgboost-h1@3")
    with pytest.raises(NotFoundError, match="no model named"):
        registry.meta("GBPUSD-H1-xgboost-h1")


async def test_the_data_set_is_built_from_stored_bars(chdb_store: ChDBTickStore, tmp_path: Path) -> None:
    bars = planted_bars(1500)
    await chdb_store.write_bars(bars)
    stored = await load_bars_store(chdb_store, feed="F", symbol="EURUSD", timeframe=Timeframe.H1)
    assert stored == bars
    request = TrainRequest(
        symbol="EURUSD",
        timeframe=Timeframe.H1,
        kind="lightgbm",
        costs=COSTS,
        params=fast_params("lightgbm", 10),
    )
    meta = train(stored, request, ModelRegistry(tmp_path), TestClock())
    assert meta["data"]["bars"] == 1500


def test_csv_bars_are_exact_and_bad_rows_are_named(tmp_path: Path) -> None:
    good = tmp_path / "bars.csv"
    good.write_text(
        "time,open,high,low,close,volume\n2024-01-02 10:00:00,1.10001,1.10010,1.09990,1.10005,17\n"
    )
    (bar,) = load_bars_csv(good, symbol="EURUSD", timeframe=Timeframe.H1)
    assert (bar.time, bar.open, bar.close, bar.tick_volume) == (1704189600, 1_100_010_000, 1_100_050_000, 17)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "time,open,high,low,close\n2024-01-02 10:00:00,1.1,1.2,1.0,1.1\n2024-01-02 11:00:00,1.1,x,1,1\n"
    )
    with pytest.raises(BadInputError, match="line 3: high 'x' is not a number"):
        load_bars_csv(bad, symbol="EURUSD", timeframe=Timeframe.H1)


@pytest.mark.slow
def test_cli_trains_lists_and_shows_models_and_rejects_a_bad_model_kind(
    shared_data: Path, tmp_path: Path
) -> None:
    csv = shared_data / "backtestingpy_EURUSD_H1_2017-2018.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} is absent")
    runner = CliRunner()
    reg = str(tmp_path / "reg")
    base = ["ml", "train", "--symbol", "EURUSD", "--timeframe", "H1", "--csv", str(csv), "--registry", reg]
    result = runner.invoke(app, [*base, "--model", "lightgbm", "--splits", "2", "--to", "2017-09-01"])
    assert result.exit_code == 0, result.output
    assert "baseline (prior)" in result.output
    assert "registered EURUSD-H1-lightgbm-h1@1" in result.output
    listed = runner.invoke(app, ["ml", "list", "--registry", reg])
    assert listed.exit_code == 0
    assert "EURUSD-H1-lightgbm-h1@1" in listed.output
    shown = runner.invoke(app, ["ml", "show", "EURUSD-H1-lightgbm-h1", "--registry", reg])
    assert json.loads(shown.output)["data"]["to"] < 1_504_224_000
    wrong = runner.invoke(app, [*base, "--model", "randomforest"])
    assert wrong.exit_code == 2
    assert "unknown model 'randomforest'" in wrong.output
