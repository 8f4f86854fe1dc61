"""Training data: feature rows at bar close, labelled with the forward return net of costs.

Label of the bar `i` (a long trade opened at its close, closed `horizon` bars later):
`y = 1` when `close[i + horizon] - close[i] - cost > 0`, else 0, where the cost is the bar's spread in
points (or `cost_points` where the bar has no spread) times `point`, plus `commission_points`. So the
model predicts the probability that a long position pays its costs, and `1 - p` speaks for a short.

Each sample records the bar it starts at (`start`) and the last bar its label reads (`label_end`), which
is what purging needs (`aitrading.ml.cv`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aitrading.common.errors import BadInputError
from aitrading.features.vectors import FeatureFrame, compute_batch
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE

__all__ = ["Costs", "Dataset", "FeatureBuilder", "build_dataset", "forward_labels"]

FeatureBuilder = Callable[[Sequence[Bar], Timeframe], FeatureFrame]
"""Builds the feature rows of a bar series (default: `compute_batch`; tests inject leaky ones)."""


@dataclass(frozen=True, slots=True)
class Costs:
    """Round-trip trading costs in points of `point` (a price step, e.g. 0.00001 for EURUSD)."""

    point: float
    cost_points: float = 10.0
    """Spread used for bars that carry none (0 in the file)."""
    commission_points: float = 0.0

    def __post_init__(self) -> None:
        if not self.point > 0 or self.cost_points < 0 or self.commission_points < 0:
            raise BadInputError("point must be positive and costs not negative")


@dataclass(frozen=True, slots=True)
class Dataset:
    """Samples in time order: `x[j]` the features at the close of bar `start[j]`, `y[j]` its label."""

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]
    label_end: npt.NDArray[np.int64]
    times: npt.NDArray[np.int64]
    names: tuple[str, ...]
    horizon: int

    def __len__(self) -> int:
        return int(self.y.shape[0])


def forward_labels(bars: Sequence[Bar], horizon: int, costs: Costs) -> npt.NDArray[np.float64]:
    """Return the label of every bar (1.0/0.0), NaN for the last `horizon` bars (no future yet)."""
    if horizon < 1:
        raise BadInputError(f"horizon must be at least 1 bar, got {horizon}")
    close = np.array([b.close for b in bars], dtype=np.float64) / PRICE_SCALE
    spread = np.array([b.spread for b in bars], dtype=np.float64)
    cost = (np.where(spread > 0, spread, costs.cost_points) + costs.commission_points) * costs.point
    out = np.full(len(bars), np.nan)
    if len(bars) > horizon:
        move = close[horizon:] - close[:-horizon]
        out[:-horizon] = (move - cost[:-horizon] > 0).astype(np.float64)
    return out


def build_dataset(
    bars: Sequence[Bar],
    timeframe: Timeframe,
    *,
    horizon: int,
    costs: Costs,
    features: FeatureBuilder = compute_batch,
) -> Dataset:
    """Return the labelled samples of `bars`: rows with every feature defined and a complete label."""
    frame = features(bars, timeframe)
    labels = forward_labels(bars, horizon, costs)
    ok = np.isfinite(frame.values).all(axis=1) & np.isfinite(labels)
    idx = np.flatnonzero(ok).astype(np.int64)
    if idx.size < 200:
        raise BadInputError(
            f"only {idx.size} usable samples from {len(bars)} bars (warm-up and horizon removed); need ≥ 200"
        )
    return Dataset(
        x=frame.values[idx],
        y=labels[idx].astype(np.int64),
        start=idx,
        label_end=idx + horizon,
        times=frame.times[idx],
        names=frame.names,
        horizon=horizon,
    )
