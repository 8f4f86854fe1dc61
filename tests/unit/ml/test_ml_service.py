"""The ML service: authenticated inference of registered models with a prediction cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import lightgbm
import numpy as np
import pytest
import xgboost
from ml_helpers import fast_params, planted_bars

from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError
from aitrading.features.vectors import FEATURE_NAMES, compute_batch
from aitrading.ml.dataset import Costs
from aitrading.ml.inference import RegisteredModel
from aitrading.ml.registry import ModelRegistry
from aitrading.ml.service import MLService
from aitrading.ml.train import TrainRequest, train
from aitrading.model.market import Timeframe
from aitrading.strategies.ml import ProbabilityModel

SECRET = "a-test-secret-of-enough-length-for-the-ml-api"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("models")
    registry = ModelRegistry(root)
    bars = planted_bars(1500)
    metas = {}
    for kind in ("lightgbm", "xgboost"):
        request = TrainRequest(
            symbol="EURUSD",
            timeframe=Timeframe.H1,
            kind=kind,
            costs=Costs(point=0.00001),
            params=fast_params(kind, 20),
            min_train=500,
        )
        metas[kind] = train(bars, request, registry, TestClock())
    return root, metas


@pytest.fixture(scope="module")
def vectors() -> list[dict[str, float]]:
    frame = compute_batch(planted_bars(300, seed=5), Timeframe.H1)
    return [frame.row(i) for i in range(len(frame.times)) if np.isfinite(frame.values[i]).all()]


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
async def client(
    trained: tuple[Path, dict[str, Any]], tokens: TokenService
) -> AsyncIterator[httpx.AsyncClient]:
    service = MLService({}, registry_dir=trained[0], authenticate=principal_dependency(tokens))
    await service.start()
    try:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ml") as c:
            c.headers["authorization"] = f"Bearer {tokens.issue('svc:decision', tenant='t1')}"
            yield c
    finally:
        await service.stop()


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_a_registered_model_is_a_probability_model_answering_like_its_library(
    trained: tuple[Path, dict[str, Any]], vectors: list[dict[str, float]], kind: str
) -> None:
    root, metas = trained
    model = RegisteredModel.load(ModelRegistry(root), metas[kind]["ref"])
    assert isinstance(model, ProbabilityModel)
    assert model.version == f"EURUSD-H1-{kind}-h1@1"
    assert tuple(model.feature_names) == FEATURE_NAMES
    x = np.array([[v[n] for n in FEATURE_NAMES] for v in vectors])
    artifact = root / f"EURUSD-H1-{kind}-h1" / "1" / metas[kind]["artifact"]
    if kind == "lightgbm":
        want = lightgbm.Booster(model_file=str(artifact)).predict(x)
    else:
        booster = xgboost.Booster()
        booster.load_model(str(artifact))
        want = booster.predict(xgboost.DMatrix(x, feature_names=[f"f{i}" for i in range(x.shape[1])]))
    got = [model.predict_proba(v) for v in vectors]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert model.misses == len(vectors)
    assert model.hits == 0
    again = [model.predict_up([v[n] for n in FEATURE_NAMES]) for v in vectors]
    assert again == got  # same features in -> the cached probability
    assert model.hits == len(vectors)


def test_bad_vectors_are_refused_with_the_feature_named(trained: tuple[Path, dict[str, Any]]) -> None:
    root, metas = trained
    model = RegisteredModel.load(ModelRegistry(root), metas["lightgbm"]["ref"])
    row = dict.fromkeys(FEATURE_NAMES, 0.1)
    with pytest.raises(BadInputError, match="needs features \\['rsi_14'\\]"):
        model.predict_proba({k: v for k, v in row.items() if k != "rsi_14"})
    with pytest.raises(BadInputError, match="\\['vol_20'\\] are not finite"):
        model.predict_proba(row | {"vol_20": float("nan")})
    with pytest.raises(BadInputError, match="wants 25 features, got 2"):
        model.predict_up([0.1, 0.2])


async def test_predict_endpoint_serves_the_registered_model_and_needs_a_token(
    client: httpx.AsyncClient, trained: tuple[Path, dict[str, Any]], vectors: list[dict[str, float]]
) -> None:
    root, metas = trained
    ref = metas["xgboost"]["ref"]
    want = RegisteredModel.load(ModelRegistry(root), ref).predict_proba(vectors[0])
    anonymous = await client.post(
        "/api/v1/predict", json={"model": ref, "features": vectors[0]}, headers={"authorization": ""}
    )
    assert anonymous.status_code == 401
    first = await client.post(
        "/api/v1/predict", json={"model": "EURUSD-H1-xgboost-h1", "features": vectors[0]}
    )
    assert first.status_code == 200
    assert first.json()["model"] == ref
    assert first.json()["probability"] == pytest.approx(want, rel=1e-12)
    second = await client.post("/api/v1/predict", json={"model": ref, "features": vectors[0]})
    assert second.json() == first.json()
    unknown = await client.post(
        "/api/v1/predict", json={"model": "GBPUSD-H1-xgboost-h1", "features": vectors[0]}
    )
    assert unknown.status_code == 404
    assert "no model named" in unknown.json()["detail"]
    partial = await client.post("/api/v1/predict", json={"model": ref, "features": {"ret_1": 0.1}})
    assert partial.status_code == 400
    assert "needs features" in partial.json()["detail"]


async def test_models_are_listed_and_shown(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/api/v1/models")).json()["models"]
    assert [m["ref"] for m in listed] == ["EURUSD-H1-lightgbm-h1@1", "EURUSD-H1-xgboost-h1@1"]
    shown = await client.get("/api/v1/models/EURUSD-H1-lightgbm-h1@1")
    assert shown.status_code == 200
    assert shown.json()["features"] == list(FEATURE_NAMES)
    assert (await client.get("/api/v1/models/EURUSD-H1-lightgbm-h1@9")).status_code == 404
