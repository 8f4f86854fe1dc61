"""The pipeline fails loudly when a feature, a label or a split peeks ahead."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ml_helpers import fast_params, planted_bars

from aitrading.common.clock import TestClock
from aitrading.features.vectors import FEATURE_NAMES, FeatureFrame, compute_batch
from aitrading.ml.cv import PurgedWalkForward, verify_fold
from aitrading.ml.dataset import Costs, build_dataset, forward_labels
from aitrading.ml.leakage import LookaheadError, check_causal_features, check_causal_labels
from aitrading.ml.registry import ModelRegistry
from aitrading.ml.train import TrainRequest, train
from aitrading.model.market import Bar, Timeframe

COSTS = Costs(point=0.00001, cost_points=10)


def _with_column(frame: FeatureFrame, name: str, column: np.ndarray) -> FeatureFrame:
    values = frame.values.copy()
    values[:, FEATURE_NAMES.index(name)] = column
    return dataclasses.replace(frame, values=values)


def next_bar_return(bars: Sequence[Bar], tf: Timeframe) -> FeatureFrame:
    """A classic leak: `ret_1` replaced by the NEXT bar's return (what `shift(-1)` does)."""
    frame = compute_batch(bars, tf)
    close = np.array([b.close for b in bars], dtype=float)
    future = np.r_[np.log(close[1:] / close[:-1]), np.nan]
    return _with_column(frame, "ret_1", future)


def whole_series_zscore(bars: Sequence[Bar], tf: Timeframe) -> FeatureFrame:
    """A subtle leak: `ret_3` standardised with the mean and deviation of the whole series."""
    frame = compute_batch(bars, tf)
    col = frame.values[:, FEATURE_NAMES.index("ret_3")]
    return _with_column(frame, "ret_3", (col - np.nanmean(col)) / np.nanstd(col))


def test_the_platform_features_are_causal_on_real_data(eurusd_h1: list[Bar]) -> None:
    check_causal_features(compute_batch, eurusd_h1, Timeframe.H1)


def test_a_feature_reading_the_next_bar_is_refused_by_name(eurusd_h1: list[Bar]) -> None:
    with pytest.raises(LookaheadError, match=r"feature 'ret_1' peeks ahead"):
        check_causal_features(next_bar_return, eurusd_h1, Timeframe.H1)


def test_a_feature_normalised_over_the_whole_series_is_refused() -> None:
    with pytest.raises(LookaheadError, match=r"feature 'ret_3' peeks ahead"):
        check_causal_features(whole_series_zscore, planted_bars(600), Timeframe.H1)


def test_training_with_a_peeking_feature_stops_before_registering_anything(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    request = TrainRequest(
        symbol="EURUSD", timeframe=Timeframe.H1, kind="lightgbm", costs=COSTS, params=fast_params("lightgbm")
    )
    with pytest.raises(LookaheadError, match="peeks ahead"):
        train(planted_bars(1500), request, registry, TestClock(), features=next_bar_return)
    assert registry.list() == []
    assert not any((tmp_path / "models").glob("*/*/meta.json"))


def test_a_label_reading_beyond_its_declared_horizon_is_refused() -> None:
    bars = planted_bars(600)
    declared = 3
    honest = partial(forward_labels, horizon=declared, costs=COSTS)
    check_causal_labels(honest, bars, declared)
    leaky = partial(forward_labels, horizon=declared + 2, costs=COSTS)  # reads 2 bars more than declared
    with pytest.raises(LookaheadError, match=f"beyond its horizon of {declared} bars"):
        check_causal_labels(leaky, bars, declared)


def test_training_labels_overlapping_the_test_fold_are_caught_when_purging_is_off() -> None:
    data = build_dataset(planted_bars(1500), Timeframe.H1, horizon=5, costs=COSTS)
    unpurged = PurgedWalkForward(n_splits=3, embargo=0, min_train=500, purge=False)
    fold = next(iter(unpurged.split(data.start, data.label_end)))
    with pytest.raises(LookaheadError, match="training labels peek into the test fold"):
        verify_fold(fold, data.start, data.label_end, embargo=0)
    purged = PurgedWalkForward(n_splits=3, embargo=0, min_train=500)
    for fold in purged.split(data.start, data.label_end):
        verify_fold(fold, data.start, data.label_end, embargo=0)
        assert fold.purged == 5  # exactly the labels reaching into the fold


def test_the_embargo_is_enforced_by_the_check_too() -> None:
    data = build_dataset(planted_bars(1500), Timeframe.H1, horizon=2, costs=COSTS)
    short = PurgedWalkForward(n_splits=2, embargo=0, min_train=500)
    fold = next(iter(short.split(data.start, data.label_end)))
    with pytest.raises(LookaheadError, match="embargo 10 bars"):
        verify_fold(fold, data.start, data.label_end, embargo=10)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(120, 600),
    horizon=st.integers(1, 30),
    embargo=st.integers(0, 40),
    splits=st.integers(1, 6),
    gaps=st.lists(st.integers(0, 3), min_size=600, max_size=600),
)
def test_purged_walk_forward_folds_never_let_a_training_label_reach_the_test_fold(
    n: int, horizon: int, embargo: int, splits: int, gaps: list[int]
) -> None:
    start = np.cumsum(np.array(gaps[:n]) + 1).astype(np.int64)  # samples at increasing bars, with holes
    label_end = start + horizon
    splitter = PurgedWalkForward(n_splits=splits, embargo=embargo, min_train=100)
    seen_test: list[int] = []
    for fold in splitter.split(start, label_end):
        if fold.train.size == 0:
            continue
        verify_fold(fold, start, label_end, embargo)
        first = int(start[fold.test].min())
        assert int(label_end[fold.train].max()) < first - embargo
        assert int(fold.train.max()) < int(fold.test.min())
        kept = np.flatnonzero(label_end[: fold.test.min()] < first - embargo)
        assert np.array_equal(fold.train, kept)
        seen_test.extend(fold.test.tolist())
    assert seen_test == sorted(set(seen_test))
