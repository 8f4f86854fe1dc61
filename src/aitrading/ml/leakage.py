"""Look-ahead guards: the training pipeline refuses features or labels that read the future.

- `check_causal_features`: every feature row must be the same whether or not later bars exist. The
  builder runs on prefixes of the series ending at several cut points, and each prefix's rows must equal
  the full run's rows (NaN where NaN). A centred window, a `shift(-1)`, a normalisation over the whole
  series: all change earlier rows when bars are appended, and are named in the error.
- `check_causal_labels`: the label of bar `i` may read bars up to `i + horizon` and no further; labels
  computed on a prefix ending at bar `c` must equal the full labels for every `i ≤ c - horizon`.
- Fold overlap (a training label reading into the test fold) is checked by `aitrading.ml.cv.verify_fold`.

All raise `LookaheadError`, a `BadInputError`: the definition, not the data, is wrong, and training stops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from aitrading.common.errors import BadInputError
from aitrading.features.vectors import FeatureFrame
from aitrading.model.market import Bar, Timeframe

__all__ = ["LookaheadError", "check_causal_features", "check_causal_labels", "cut_points"]

_RTOL = 1e-9
_ATOL = 1e-12


class LookaheadError(BadInputError):
    """A feature, a label or a split uses data from after the moment it claims to describe."""


def cut_points(n: int, count: int = 4) -> list[int]:
    """Return `count` bar positions spread over the last 70 % of a series of `n` bars."""
    if n < 10:
        return []
    return sorted({int(n * f) for f in np.linspace(0.3, 0.95, count)})


def _mismatch(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    same: npt.NDArray[np.bool_] = np.isclose(a, b, rtol=_RTOL, atol=_ATOL, equal_nan=True)
    return ~same


def check_causal_features(
    build: Callable[[Sequence[Bar], Timeframe], FeatureFrame],
    bars: Sequence[Bar],
    timeframe: Timeframe,
    cuts: Sequence[int] | None = None,
) -> None:
    """Raise `LookaheadError` naming the first feature whose past rows change when later bars arrive."""
    full = build(bars, timeframe)
    values, names = full.values, full.names
    for c in cuts if cuts is not None else cut_points(len(bars)):
        prefix = build(bars[: c + 1], timeframe).values
        bad = _mismatch(prefix, values[: c + 1])
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise LookaheadError(
                f"feature {names[col]!r} peeks ahead: its value at bar {row} is {values[row, col]!r} with "
                f"the whole series but {prefix[row, col]!r} when the series ends at bar {c}. A feature may "
                "use only the bar it describes and earlier bars."
            )


def check_causal_labels(
    label: Callable[[Sequence[Bar]], npt.NDArray[np.float64]],
    bars: Sequence[Bar],
    horizon: int,
    cuts: Sequence[int] | None = None,
) -> None:
    """Raise `LookaheadError` if a label reads beyond `horizon` bars after its own bar."""
    full = label(bars)
    for c in cuts if cuts is not None else cut_points(len(bars)):
        prefix = label(bars[: c + 1])
        known = c - horizon + 1  # labels of bars 0..c-horizon need only bars up to c
        if known <= 0:
            continue
        bad = _mismatch(prefix[:known], full[:known])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise LookaheadError(
                f"the label of bar {i} reads beyond its horizon of {horizon} bars: it is {full[i]!r} with "
                f"the whole series but {prefix[i]!r} when the series ends at bar {c} (≥ {i + horizon})."
            )
