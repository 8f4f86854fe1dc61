"""Inference of a registered model: the `ProbabilityModel` protocol, with a prediction cache.

`RegisteredModel` implements `aitrading.strategies.ml.ProbabilityModel` (structurally: `version`,
`feature_names`, `predict_up(Sequence[float]) -> float`) and adds `predict_proba(Mapping[str, float])` for
named vectors (the features service's `FeatureVector.values`). The same feature values in give the cached
probability back without running the trees: an LRU of `cache_size` entries keyed by the exact float64
values (their bytes; the model version is fixed per instance, so it is part of the key implicitly).
`predict_row` takes the float64 row itself, as `MLProbability` builds it, and skips every conversion.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from aitrading.common.errors import BadInputError
from aitrading.ml.models import load_predictor
from aitrading.ml.registry import ModelRegistry

__all__ = ["RegisteredModel"]


class RegisteredModel:
    """A registered model loaded for inference (thread-unsafe; one per event loop)."""

    def __init__(self, meta: Mapping[str, Any], predictor: Any, *, cache_size: int = 4096) -> None:
        self.meta = dict(meta)
        self._predict = predictor
        self._names: tuple[str, ...] = tuple(meta["features"])
        self._version = str(meta["ref"])
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    @classmethod
    def load(cls, registry: ModelRegistry, ref: str, *, cache_size: int = 4096) -> RegisteredModel:
        """Load the model `ref` (`name@version` or `name` for the latest) from `registry`."""
        meta = registry.meta(ref)
        directory = registry.directory(meta["ref"])
        return cls(meta, load_predictor(meta["kind"], directory / meta["artifact"]), cache_size=cache_size)

    @property
    def version(self) -> str:
        """The registry reference `name@version`."""
        return self._version

    @property
    def feature_names(self) -> Sequence[str]:
        """The features `predict_up` expects, in order."""
        return self._names

    @property
    def feature_set(self) -> str:
        """The feature definitions the model was trained on."""
        return str(self.meta.get("feature_set", ""))

    @property
    def predictor(self) -> Any:
        """The single-row predictor (no cache): float64 row in model order → P(up)."""
        return self._predict

    def predict_up(self, features: Sequence[float]) -> float:
        """Return P(a long pays its costs over the horizon) for one vector in `feature_names` order."""
        try:
            row = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadInputError(f"model {self._version} wants a vector of numbers") from None
        return self.predict_row(row)

    def predict_row(self, row: npt.NDArray[np.float64]) -> float:
        """Return P(up) for a float64 row in `feature_names` order (the hot path: no conversion)."""
        if row.shape != (len(self._names),):
            got = row.size if row.ndim == 1 else f"shape {row.shape}"
            raise BadInputError(f"model {self._version} wants {len(self._names)} features, got {got}")
        if row.dtype != np.float64:
            row = row.astype(np.float64)
        key = row.tobytes()
        cached = self._cache.get(key)
        if cached is not None:
            self.hits += 1
            self._cache.move_to_end(key)
            return cached
        if not np.isfinite(row).all():
            bad = [n for n, v in zip(self._names, row.tolist(), strict=True) if not math.isfinite(v)]
            raise BadInputError(f"features {bad} are not finite numbers")
        self.misses += 1
        p = float(self._predict(row))
        self._cache[key] = p
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return p

    def predict_proba(self, features: Mapping[str, float]) -> float:
        """Return P(up) for a named vector; extra names are ignored, missing ones are an error."""
        try:
            values = [features[n] for n in self._names]
        except KeyError:
            missing = [n for n in self._names if n not in features]
            raise BadInputError(f"model {self._version} needs features {missing}") from None
        return self.predict_up(values)
