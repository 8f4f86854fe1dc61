"""ML service (port 8013): the model registry and inference over HTTP.

Training runs offline (`aitrading ml train`, see `aitrading.ml.train`) and writes to the registry under
the platform's data dir; this service reads the registry and serves `aitrading.ml.api`. Loaded models
keep an LRU of their predictions, so a repeated feature vector costs a dictionary lookup. LSTM models
live in the same registry and are served by the `lstm` service (`aitrading.ml.lstm_service`, 8022).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Request

from aitrading.common.auth import Principal
from aitrading.common.service import Check, Service
from aitrading.ml.api import ModelCache, ml_router
from aitrading.ml.registry import ModelRegistry

__all__ = ["MLService"]


class MLService(Service):
    """ML: model registry and cached inference."""

    name = "ml"
    capabilities = (
        "GET /api/v1/models[/{ref}]: registered models with data range, params, metrics, code version",
        "POST /api/v1/predict: P(up) of a feature vector from a registered model (cached)",
        "offline: aitrading ml train (purged walk-forward CV with embargo, baseline, calibration)",
    )

    def __init__(
        self,
        checks: dict[str, Check] | None,
        *,
        registry_dir: Path,
        authenticate: Callable[[Request], Awaitable[Principal]],
    ) -> None:
        super().__init__(checks)
        self.models = ModelCache(ModelRegistry(registry_dir), kinds=("lightgbm", "xgboost"))
        self.add_router(ml_router(self.models, authenticate))
