"""The `ProbabilityModel` protocol and the strategy that trades any such model's probabilities.

A model answers one question: the probability that the price moves up over its horizon, given a feature
vector in the order of its `feature_names`. The ML package (`aitrading.ml`) implements it for trained
models; tests use a tiny deterministic one. `MLProbability` computes the features on every event, asks the
model, goes long above `long_above`, short below `short_below` and flat in between,
with confidence `|2p - 1|`; its intents carry the model version and the feature values.

Features: on bars, a model trained on the feature service's vectors (`features.vectors.FEATURE_NAMES`)
gets them from the same `FeatureEngine` that built its training set — no train/serve skew; a model may
instead ask for the small per-price set `FEATURES` (`OnlineFeatures`), which also works on ticks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from aitrading.features.indicators import streaming
from aitrading.features.vectors import FEATURE_NAMES, FeatureEngine
from aitrading.model.market import Bar, Tick
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies.base import FLAT, LONG, SHORT, Intents, StrategyConfig, StrategyContext
from aitrading.strategies.builtin import _PriceStrategy

__all__ = ["FEATURES", "MLConfig", "MLProbability", "OnlineFeatures", "ProbabilityModel"]


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
        self._bar_features = all(n in FEATURE_NAMES for n in names)
        if not self._bar_features and not all(n in FEATURES for n in names):
            unknown = [n for n in names if n not in FEATURES]
            raise ValueError(
                f"model {model.version} wants unknown features {unknown}; known: the feature service's "
                f"vectors ({', '.join(FEATURE_NAMES)}) or the per-price set ({', '.join(FEATURES)})"
            )
        self.model = model
        self._features_fn = OnlineFeatures()
        self._engines: dict[str, FeatureEngine] = {}
        self._names = names
        self._p = math.nan

    def on_bar(self, bar: Bar, ctx: StrategyContext, **kwargs: Any) -> Intents:
        if self.config.symbol and bar.symbol != self.config.symbol:
            return None
        if not self._bar_features:
            return self._decide(bar.symbol, bar.close / PRICE_SCALE, ctx)
        engine = self._engines.get(bar.symbol)
        if engine is None:
            engine = self._engines[bar.symbol] = FeatureEngine(bar.timeframe)
        vector = engine.update(bar)
        if vector is None:
            return None
        values = dict(zip(FEATURE_NAMES, vector, strict=True))
        return self._ask(bar.symbol, values, ctx)

    def on_tick(self, tick: Tick, ctx: StrategyContext, **kwargs: Any) -> Intents:
        if self._bar_features:
            raise ValueError(f"model {self.model.version} needs bar features; run it on bars, not ticks")
        return super().on_tick(tick, ctx)

    def _decide(self, symbol: str, price: float, ctx: StrategyContext) -> Intents:
        return self._ask(symbol, self._features_fn.update(price), ctx)

    def _ask(self, symbol: str, values: dict[str, float], ctx: StrategyContext) -> Intents:
        vector = [values[n] for n in self._names]
        if any(math.isnan(v) for v in vector):
            return None
        p = self._p = float(self.model.predict_up(vector))
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"model {self.model.version} answered P(up)={p}, outside [0, 1]")
        c = self.config
        target = LONG if p > c.long_above else SHORT if p < c.short_below else FLAT
        if target == self._target:
            return None
        self._target = target
        features = {n: values[n] for n in self._names} | {"p_up": p}
        return (
            self.intent(
                symbol,
                target,
                ctx,
                confidence=min(1.0, abs(2.0 * p - 1.0)),
                reason=f"P(up)={p:.4f}",
                features=features,
                model_versions={self.id: self.model.version},
            ),
        )

    def _on_price(self, price: float) -> int | None:  # pragma: no cover - `_decide` is overridden
        raise NotImplementedError
