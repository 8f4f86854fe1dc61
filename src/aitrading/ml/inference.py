"""Inference of a registered model: the `ProbabilityModel` protocol, with a prediction cache.

`RegisteredModel` implements `aitrading.strategies.ml.ProbabilityModel` (structurally: `version`,
`feature_names`, `predict_up(Sequence[float]) -> float`) and adds `predict_proba(Mapping[str, float])` for
named vectors (the features service's `FeatureVector.values`). The same feature values in give the cached
probability back without running the trees: an LRU of `cache_size` entries keyed by the exact float
values (the model version is fixed per instance, so it is part of the key implicitly).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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
        self._cache: OrderedDict[tuple[float, ...], float] = OrderedDict()
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

    def predict_up(self, features: Sequence[float]) -> float:
        """Return P(a long pays its costs over the horizon) for one vector in `feature_names` order."""
        key = tuple(float(v) for v in features)
        if len(key) != len(self._names):
            raise BadInputError(f"model {self._version} wants {len(self._names)} features, got {len(key)}")
        cached = self._cache.get(key)
        if cached is not None:
            self.hits += 1
            self._cache.move_to_end(key)
            return cached
        if not all(math.isfinite(v) for v in key):
            bad = [n for n, v in zip(self._names, key, strict=True) if not math.isfinite(v)]
            raise BadInputError(f"features {bad} are not finite numbers")
        self.misses += 1
        p = float(self._predict(np.array(key, dtype=np.float64)))
        self._cache[key] = p
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return p

    def predict_proba(self, features: Mapping[str, float]) -> float:
        """Return P(up) for a named vector; extra names are ignored, missing ones are an error."""
        missing = [n for n in self._names if n not in features]
        if missing:
            raise BadInputError(f"model {self._version} needs features {missing}")
        return self.predict_up([features[n] for n in self._names])
