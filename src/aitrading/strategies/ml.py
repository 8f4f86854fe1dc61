"""The `ProbabilityModel` protocol and the strategy that trades any such model's probabilities.

A model answers one question: the probability that the price moves up over its horizon, given a feature
vector in the order of its `feature_names`. The ML package (`aitrading.ml`) implements it for trained
models; tests use a tiny deterministic one. `MLProbability` computes the features on every event, asks the
model, goes long above `long_above`, short below `short_below` and flat in between,
with confidence `|2p - 1|`; its intents carry the model version and the feature values.

Features: on bars, a model trained on the feature service's vectors (`features.vectors.FEATURE_NAMES`)
gets them from the same `FeatureEngine` that built its training set — no train/serve skew; a model may
instead ask for the small per-price set `FEATURES` (`OnlineFeatures`), which also works on ticks.

A sequence model (the LSTM) asks for a window of vectors under the names `<feature>[t-k]`
(`aitrading.ml.lstm.lagged_name`: `k` bars back, the current bar plain). `WindowInputs` keeps the last
`window` vectors of each symbol and hands the model the flat row `windowed(compute_batch, window)` trains
on for the same bar: oldest first, a window only once `window` consecutive vectors exist, and it starts
again after a bar without a vector, as the training rows do (a window holding a NaN row is dropped there).

The hot path stays in numpy: the engine's vector goes into a preallocated ring of float64 rows, the
model's input is a view of it (or one gather when the model orders its inputs differently), and a model
that offers `predict_row` (`aitrading.ml.inference.RegisteredModel`) takes that float64 row as it is;
any other `ProbabilityModel` gets a list. An intent records the current bar's features the model reads
(for a window, its lag-0 features: the earlier ones are the earlier bars' vectors) and `p_up`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from aitrading.features.indicators import streaming
from aitrading.features.vectors import FEATURE_NAMES, FeatureEngine
from aitrading.ml.lstm import MAX_WINDOW, lagged_name
from aitrading.model.market import Bar, Tick
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies.base import FLAT, LONG, SHORT, Intents, StrategyConfig, StrategyContext
from aitrading.strategies.builtin import _PriceStrategy

__all__ = [
    "FEATURES",
    "MLConfig",
    "MLProbability",
    "OnlineFeatures",
    "ProbabilityModel",
    "RowProbabilityModel",
    "WindowInputs",
]


@runtime_checkable
class ProbabilityModel(Protocol):
    """A model that predicts the probability of an up-move from a feature vector."""

    @property
    def version(self) -> str:
        """Registry version of the model (goes into every signal it contributes to)."""
        ...

    @property
    def feature_names(self) -> Sequence[str]:
        """The features `predict_up` expects, in order."""
        ...

    def predict_up(self, features: Sequence[float]) -> float:
        """Return P(up) in [0, 1] for one feature vector."""
        ...


@runtime_checkable
class RowProbabilityModel(ProbabilityModel, Protocol):
    """A `ProbabilityModel` that also takes its input as a float64 numpy row (no conversion)."""

    def predict_row(self, row: npt.NDArray[np.float64]) -> float:
        """Return P(up) in [0, 1] for one row in `feature_names` order."""
        ...


_LAGGED: dict[str, tuple[int, int]] = {
    lagged_name(name, lag): (lag, i) for lag in range(MAX_WINDOW) for i, name in enumerate(FEATURE_NAMES)
}
"""Every input name a bar model may ask for → (bars back, column of the feature vector)."""


class WindowInputs:
    """A model's input rows from consecutive feature vectors: the last `window` of them, flattened.

    `names` are the model's inputs: feature names (a window of one bar) or lagged names `<feature>[t-k]`.
    The vectors live twice in a ring of 2 × `window` rows, so the window, oldest first, is always one
    contiguous slice: a push writes two rows and the row is a view (a gather when `names` are not in
    the ring's order). The view is valid until the next push.
    """

    def __init__(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in _LAGGED]
        if unknown:
            raise ValueError(f"unknown bar features {unknown}")
        where = [_LAGGED[n] for n in names]
        width = len(FEATURE_NAMES)
        self.window = 1 + max(lag for lag, _ in where)
        take = np.array([(self.window - 1 - lag) * width + i for lag, i in where], dtype=np.intp)
        self._take: npt.NDArray[np.intp] | None = (
            None if np.array_equal(take, np.arange(self.window * width)) else take
        )
        self.current = [(n, i) for n, (lag, i) in zip(names, where, strict=True) if lag == 0]
        """The model's inputs that are the current bar's features: (name, column)."""
        self._ring = np.zeros((2 * self.window, width))
        self._head = 0
        self.filled = 0

    def reset(self) -> None:
        """Forget the vectors seen: the next window starts with the next vector."""
        self.filled = 0

    def push(self, vector: Sequence[float]) -> npt.NDArray[np.float64] | None:
        """Take the next bar's vector; return the model's input row, or None until the window is full."""
        head, window = self._head, self.window
        self._ring[head] = vector
        self._ring[head + window] = vector
        self._head = (head + 1) % window
        self.filled += 1
        if self.filled < window:
            return None
        row = self._ring[head + 1 : head + 1 + window].reshape(-1)
        return row if self._take is None else row[self._take]


class OnlineFeatures:
    """Per-price features computed in O(1): returns, RSI, moving-average ratio, z-score to the mean."""

    def __init__(self) -> None:
        self._prices: deque[float] = deque(maxlen=6)
        self._rsi = streaming.RSI(14)
        self._sma10, self._sma30 = streaming.SMA(10), streaming.SMA(30)
        self._bands = streaming.BBANDS(20, 1.0, 1.0)
        self.values: dict[str, float] = {}

    def update(self, price: float) -> dict[str, float]:
        """Take the next price; return every feature (NaN while its lookback lasts)."""
        p = self._prices
        p.append(price)
        fast, slow = self._sma10.update(price), self._sma30.update(price)
        _, middle, lower = self._bands.update(price)
        std = middle - lower
        self.values = {
            "ret_1": math.log(price / p[-2]) if len(p) >= 2 else math.nan,
            "ret_5": math.log(price / p[0]) if len(p) == 6 else math.nan,
            "rsi_14": self._rsi.update(price),
            "sma_ratio_10_30": fast / slow - 1.0,
            "zscore_20": (price - middle) / std if std > 0 else math.nan,
        }
        return self.values


FEATURES = ("ret_1", "ret_5", "rsi_14", "sma_ratio_10_30", "zscore_20")
"""The feature names `OnlineFeatures` computes."""


class MLConfig(StrategyConfig, frozen=True, kw_only=True):
    """`model`: import path of a `ProbabilityModel` instance or factory (`pkg.mod:name`); thresholds in P."""

    model: str = ""
    long_above: float = 0.55
    short_below: float = 0.45

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.short_below <= self.long_above <= 1.0:
            raise ValueError("need 0 <= short_below <= long_above <= 1")


class MLProbability(_PriceStrategy):
    """Trade a `ProbabilityModel`: long when P(up) is high, short when low, flat in between."""

    name = "ml_probability"
    config_type = MLConfig

    def __init__(
        self, config: MLConfig, *, strategy_id: str = "", model: ProbabilityModel | None = None
    ) -> None:
        super().__init__(config, strategy_id=strategy_id)
        if model is None:
            if not config.model:
                raise ValueError("ml_probability needs a model: --param model=package.module:name")
            from aitrading.strategies.loader import import_object

            obj = import_object(config.model)
            model = obj() if callable(obj) and not isinstance(obj, ProbabilityModel) else obj
        if not isinstance(model, ProbabilityModel):
            raise ValueError(f"{config.model or model!r} is not a ProbabilityModel")
        names = tuple(model.feature_names)
        self._bar_features = all(n in _LAGGED for n in names)
        if not self._bar_features and not all(n in FEATURES for n in names):
            unknown = [n for n in names if n not in FEATURES and n not in _LAGGED]
            raise ValueError(
                f"model {model.version} wants unknown features {unknown}; known: the feature service's "
                f"vectors ({', '.join(FEATURE_NAMES)}), windows of them (`<feature>[t-k]`, k < "
                f"{MAX_WINDOW}) or the per-price set ({', '.join(FEATURES)})"
            )
        self.model = model
        self._features_fn = OnlineFeatures()
        self._series: dict[str, tuple[FeatureEngine, WindowInputs]] = {}
        self._names = names
        self.window = WindowInputs(names).window if self._bar_features else 1
        """How many consecutive bars' vectors the model reads (1 for a tree model)."""
        self._predict_row = (
            model.predict_row if isinstance(model, RowProbabilityModel) else self._predict_list
        )
        self._p = math.nan

    def _predict_list(self, row: npt.NDArray[np.float64]) -> float:
        return float(self.model.predict_up(row.tolist()))

    def on_bar(self, bar: Bar, ctx: StrategyContext, **kwargs: Any) -> Intents:
        if self.config.symbol and bar.symbol != self.config.symbol:
            return None
        if not self._bar_features:
            return self._decide(bar.symbol, bar.close / PRICE_SCALE, ctx)
        series = self._series.get(bar.symbol)
        if series is None:
            series = self._series[bar.symbol] = (FeatureEngine(bar.timeframe), WindowInputs(self._names))
        engine, inputs = series
        accepted = engine.count
        vector = engine.update(bar)
        if vector is None:
            if engine.count != accepted:  # a new bar without a vector: no window may span it
                inputs.reset()
            return None
        row = inputs.push(vector)
        if row is None:
            return None
        p = float(self._predict_row(row))
        target = self._target_of(p)
        if target == self._target:
            return None
        return self._intent(bar.symbol, target, p, {n: vector[i] for n, i in inputs.current}, ctx)

    def on_tick(self, tick: Tick, ctx: StrategyContext, **kwargs: Any) -> Intents:
        if self._bar_features:
            raise ValueError(f"model {self.model.version} needs bar features; run it on bars, not ticks")
        return super().on_tick(tick, ctx)

    def _decide(self, symbol: str, price: float, ctx: StrategyContext) -> Intents:
        values = self._features_fn.update(price)
        vector = [values[n] for n in self._names]
        if any(math.isnan(v) for v in vector):
            return None
        p = float(self.model.predict_up(vector))
        target = self._target_of(p)
        if target == self._target:
            return None
        return self._intent(symbol, target, p, {n: values[n] for n in self._names}, ctx)

    def _target_of(self, p: float) -> int:
        self._p = p
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"model {self.model.version} answered P(up)={p}, outside [0, 1]")
        c = self.config
        return LONG if p > c.long_above else SHORT if p < c.short_below else FLAT

    def _intent(
        self, symbol: str, target: int, p: float, features: dict[str, float], ctx: StrategyContext
    ) -> Intents:
        self._target = target
        return (
            self.intent(
                symbol,
                target,
                ctx,
                confidence=min(1.0, abs(2.0 * p - 1.0)),
                reason=f"P(up)={p:.4f}",
                features=features | {"p_up": p},
                model_versions={self.id: self.model.version},
            ),
        )
