"""Purged walk-forward cross-validation with an embargo (López de Prado, AFML ch. 7, for time order).

scikit-learn's `TimeSeriesSplit` has a `gap` but knows nothing of label intervals: a sample whose label
reads bars inside the test fold leaks the test outcome into training. Here each sample carries the last
bar its label reads (`label_end`) and:

- walk-forward: fold k tests a contiguous block of samples and trains only on samples before it
  (expanding window, or the last `max_train` samples);
- purging: a training sample is dropped when its label interval `[start, label_end]` reaches the test
  block's first bar minus the embargo;
- embargo: `embargo` bars before the test block are kept out as well, so features with memory
  (volatility, long moving averages) computed right before the test do not bridge into it. Train never
  follows test in walk-forward, so de Prado's after-test embargo becomes this pre-test gap.

`verify_fold` re-checks every fold against the data set's own label intervals, whatever produced the
split, and raises `LookaheadError` on the first overlap (see `aitrading.ml.leakage`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aitrading.common.errors import BadInputError
from aitrading.ml.leakage import LookaheadError

__all__ = ["Fold", "PurgedWalkForward", "verify_fold"]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Fold:
    """Sample positions of one fold (into the data set's arrays)."""

    train: IntArray
    test: IntArray
    purged: int
    """Training samples removed by purging and the embargo."""


@dataclass(frozen=True, slots=True)
class PurgedWalkForward:
    """Walk-forward splits over samples in time order, purged by label interval, with an embargo in bars."""

    n_splits: int = 5
    embargo: int = 0
    min_train: int = 500
    max_train: int | None = None
    purge: bool = True
    """Only a test switches purging off, to prove `verify_fold` catches the leak."""

    def __post_init__(self) -> None:
        if self.n_splits < 1 or self.embargo < 0 or self.min_train < 1:
            raise BadInputError("n_splits ≥ 1, embargo ≥ 0 and min_train ≥ 1 are required")

    def split(self, start: IntArray, label_end: IntArray) -> Iterator[Fold]:
        """Yield the folds of samples starting at bars `start` with labels reading up to `label_end`."""
        n = int(start.shape[0])
        if n < self.min_train + self.n_splits:
            raise BadInputError(
                f"{n} samples cannot make {self.n_splits} walk-forward folds after {self.min_train} "
                "training samples"
            )
        bounds = np.linspace(self.min_train, n, self.n_splits + 1).astype(np.int64)
        for k in range(self.n_splits):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            test = np.arange(lo, hi, dtype=np.int64)
            candidates = np.arange(0, lo, dtype=np.int64)
            if self.purge:
                boundary = int(start[lo]) - self.embargo
                keep = label_end[candidates] < boundary
            else:
                keep = np.ones(lo, dtype=bool)
            train = candidates[keep]
            if self.max_train is not None:
                train = train[-self.max_train :]
            yield Fold(train=train, test=test, purged=int(lo - keep.sum()))


def verify_fold(fold: Fold, start: IntArray, label_end: IntArray, embargo: int) -> None:
    """Raise `LookaheadError` if a training label reads a bar at or after the test block (minus embargo)."""
    if fold.train.size == 0 or fold.test.size == 0:
        raise BadInputError("a fold has no training or no test samples")
    first_test_bar = int(start[fold.test].min())
    last_test_bar = int(label_end[fold.test].max())
    ends = label_end[fold.train]
    starts = start[fold.train]
    bad = np.flatnonzero((ends >= first_test_bar - embargo) & (starts <= last_test_bar))
    if bad.size:
        j = int(fold.train[bad[0]])
        raise LookaheadError(
            f"{bad.size} training labels peek into the test fold: the sample at bar {int(start[j])} has a "
            f"label reading up to bar {int(label_end[j])}, but the test fold starts at bar {first_test_bar} "
            f"(embargo {embargo} bars). Purge training samples whose label interval overlaps the test fold."
        )
