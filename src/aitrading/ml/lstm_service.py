"""LSTM service (port 8022): the ML service's interface for the LSTM models of the registry.

The deep model runs in a service of its own so PyTorch (hundreds of MB, its own thread pool) stays out
of the tree models' process in split mode. The routes and schemas are the ML service's
(`aitrading.ml.api`: `GET /api/v1/models[/{ref}]`, `POST /api/v1/predict`); only the served model
kind differs. An LSTM's input is a flat window of feature vectors (`aitrading.ml.lstm.window_vector`).

PyTorch is imported when the first LSTM model is loaded, not when the service starts: without the `lstm`
extra the service starts, lists and shows the registered LSTMs and answers a prediction with 503 and the
install command, so the all-in-one platform runs the same with or without the extra.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Request

from aitrading.common.auth import Principal
from aitrading.common.service import Check, Service
from aitrading.ml.api import ModelCache, ml_router
from aitrading.ml.lstm import INSTALL_HINT, torch_available
from aitrading.ml.registry import ModelRegistry

__all__ = ["LSTMService"]


class LSTMService(Service):
    """LSTM: cached inference of the registered LSTM models, behind the ML service's interface."""

    name = "lstm"

    def __init__(
        self,
        checks: dict[str, Check] | None,
        *,
        registry_dir: Path,
        authenticate: Callable[[Request], Awaitable[Principal]],
    ) -> None:
        super().__init__(checks)
        self.models = ModelCache(ModelRegistry(registry_dir), kinds=("lstm",))
        self.add_router(ml_router(self.models, authenticate))
        self.capabilities = (
            "GET /api/v1/models[/{ref}]: the registered LSTM models with data range, params, metrics",
            "POST /api/v1/predict: P(up) of a window of feature vectors from a registered LSTM (cached)",
            "offline: aitrading ml train --model lstm (purged walk-forward CV with embargo, baseline)",
            "PyTorch: "
            + ("installed" if torch_available() else f"missing, predictions answer 503 ({INSTALL_HINT})"),
        )
