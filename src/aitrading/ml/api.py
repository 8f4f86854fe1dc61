"""The ML API (port 8013): registered models and their inference.

- `GET /api/v1/models`: the registry index (every version, with its headline metrics);
- `GET /api/v1/models/{ref}`: one model's metadata (`name@version`, or `name` for the latest);
- `POST /api/v1/predict`: `{"model": ref, "features": {name: value}}` → P(up) from that model.

Through the gateway these are `/api/v1/ml/...` (tree models) and `/api/v1/lstm/...` (the LSTM).

The same router serves the tree models on the ML service (8013) and the LSTM models on the `lstm`
service (8022): each lists, shows and predicts only the model kinds it serves, and names the other
kinds' service in its 404. A model that needs a missing optional extra (PyTorch) answers 503 with the
command that installs it.

Authorisation: a valid bearer token. Models are trained by the operator on feed market data and hold
nothing of a tenant's, so any authenticated principal may list and use them; a prediction depends only on
the model and the features sent, so the shared cache cannot carry one tenant's data to another. Errors:
an unknown model is a 404, a bad vector (missing or non-finite features) a 400 naming them.

This module does not use `from __future__ import annotations`: FastAPI resolves the closures' annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, Field

from aitrading.common.auth import Principal
from aitrading.common.errors import BadInputError, NotFoundError, OperationalError
from aitrading.ml.inference import RegisteredModel
from aitrading.ml.registry import ModelRegistry

__all__ = ["ModelCache", "PredictRequest", "PredictionPublic", "ml_router"]


class PredictRequest(BaseModel):
    """A feature vector to score with a registered model."""

    model: str = Field(min_length=1, max_length=200, examples=["EURUSD-H1-lightgbm-h1@1"])
    features: dict[str, float] = Field(max_length=1000)


class PredictionPublic(BaseModel):
    """The probability that a long trade pays its costs over the model's horizon."""

    model: str
    probability: float
    feature_set: str


SERVED_BY: dict[str, str] = {"lightgbm": "ml", "xgboost": "ml", "lstm": "lstm"}
"""Which service serves each model kind."""


class ModelCache:
    """Registered models of `kinds` loaded once per reference (a bare name resolves to its latest version)."""

    def __init__(
        self, registry: ModelRegistry, *, kinds: tuple[str, ...] | None = None, cache_size: int = 4096
    ) -> None:
        self.registry = registry
        self.kinds = kinds
        self._models: dict[str, RegisteredModel] = {}
        self._cache_size = cache_size

    def list(self) -> list[dict[str, Any]]:
        """Return the index entries of the served kinds, oldest first."""
        return [e for e in self.registry.list() if self.kinds is None or e["kind"] in self.kinds]

    def meta(self, ref: str) -> dict[str, Any]:
        """Return the metadata of `ref`; raise `NotFoundError` if absent or of a kind served elsewhere."""
        name, version = self.registry.resolve(ref)
        meta = self.registry.meta(f"{name}@{version}")
        if self.kinds is not None and meta["kind"] not in self.kinds:
            elsewhere = SERVED_BY.get(meta["kind"], "another")
            raise NotFoundError(
                f"model {meta['ref']} is a {meta['kind']} model, served by the {elsewhere} service; this "
                f"one serves {', '.join(self.kinds)}"
            )
        return meta

    def get(self, ref: str) -> RegisteredModel:
        """Return the loaded model `ref`; raise `NotFoundError` if the registry has none of these kinds."""
        name, version = self.registry.resolve(ref)
        full = f"{name}@{version}"
        model = self._models.get(full)
        if model is None:
            self.meta(full)  # refuses the kinds served elsewhere
            model = self._models[full] = RegisteredModel.load(
                self.registry, full, cache_size=self._cache_size
            )
        return model


def ml_router(models: ModelCache, authenticate: Callable[[Request], Awaitable[Principal]]) -> APIRouter:
    """Return the router of the ML API over `models`."""
    router = APIRouter(prefix="/api/v1", tags=["ml"])
    CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
    Ref = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.#+@-]+$")]

    @router.get("/models", summary="Every registered model version")
    async def list_models(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"models": models.list()}

    @router.get("/models/{ref}", summary="One model's metadata")
    async def show_model(principal: CurrentPrincipal, ref: Ref) -> dict[str, Any]:
        try:
            return models.meta(ref)
        except NotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None

    @router.post("/predict", summary="P(up) of a feature vector")
    async def predict(principal: CurrentPrincipal, body: PredictRequest) -> PredictionPublic:
        try:
            model = models.get(body.model)
        except NotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except OperationalError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        try:
            p = model.predict_proba(body.features)
        except BadInputError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        return PredictionPublic(model=model.version, probability=p, feature_set=model.feature_set)

    return router
