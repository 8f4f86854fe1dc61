"""The LSTM model kind (optional `lstm` extra): training, registry, the 8022 service, look-ahead guards.

Tests that train need PyTorch and are skipped without it (`pytest.importorskip`); the causality test of
the windows and the missing-extra error of training run either way (with PyTorch installed, the
missing-extra tests hide it from the import system).
"""

from __future__ import annotations

import importlib.abc
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ml_helpers import fast_params, planted_bars
from typer.testing import CliRunner

from aitrading.cli import app
from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.clock import TestClock
from aitrading.common.config import ServicesConfig, load_config
from aitrading.common.errors import OperationalError
from aitrading.common.logging import configure_logging
from aitrading.features.vectors import FEATURE_NAMES, FeatureFrame, compute_batch
from aitrading.kernel import Kernel
from aitrading.ml.dataset import Costs, build_dataset
from aitrading.ml.inference import RegisteredModel
from aitrading.ml.leakage import LookaheadError, check_causal_features
from aitrading.ml.lstm import lagged_name, window_vector, windowed
from aitrading.ml.models import default_params, make_classifier
from aitrading.ml.registry import ModelRegistry
from aitrading.ml.service import MLService
from aitrading.ml.train import TrainRequest, train
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies.ml import ProbabilityModel

SECRET = "a-test-secret-of-enough-length-for-the-lstm-api"
COSTS = Costs(point=0.00001)
WINDOW = 6


def lstm_params(**over: Any) -> dict[str, Any]:
    """Small and quick: a window of 6 vectors, 16 hidden units, 6 epochs."""
    return default_params("lstm") | {"window": WINDOW, "hidden": 16, "epochs": 6} | over


def lstm_request(**over: Any) -> TrainRequest:
    fields: dict[str, Any] = {
        "symbol": "EURUSD",
        "timeframe": Timeframe.H1,
        "kind": "lstm",
        "costs": COSTS,
        "params": lstm_params(),
        "min_train": 500,
        "n_splits": 3,
    }
    return TrainRequest(**(fields | over))


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trained(torch: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("models")
    return root, train(planted_bars(1500), lstm_request(), ModelRegistry(root), TestClock())


@pytest.fixture(scope="module")
def windows() -> list[dict[str, float]]:
    """Named LSTM inputs of unseen bars, built the way a caller would: consecutive feature vectors."""
    frame = compute_batch(planted_bars(300, seed=5), Timeframe.H1)
    rows = [frame.row(i) for i in range(len(frame.times)) if np.isfinite(frame.values[i]).all()]
    return [window_vector(rows[i - WINDOW + 1 : i + 1]) for i in range(WINDOW - 1, len(rows))]


class _NoTorch(importlib.abc.MetaPathFinder):
    """An import system without PyTorch: finding `torch` fails as it does without the extra."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def hide_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import torch` fail as it does without the extra (restored after the test)."""
    for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])


def test_the_lstm_finds_a_planted_signal_and_beats_the_baseline(trained: tuple[Path, dict[str, Any]]) -> None:
    _, meta = trained
    model, base = meta["metrics"]["model"], meta["metrics"]["baseline"]
    assert model["n"] == base["n"] > 900
    assert model["accuracy"] > 0.9
    assert base["accuracy"] < 0.6
    assert model["log_loss"] < base["log_loss"]
    assert model["brier"] < base["brier"]
    assert model["auc"] > 0.95
    assert len(meta["metrics"]["folds"]) == 3
    assert all(f["purged"] >= 1 + 25 for f in meta["metrics"]["folds"])  # horizon + embargo of 25 bars
    assert meta["ref"] == "EURUSD-H1-lstm-h1@1"
    assert meta["artifact"] == "model.lstm.pt"
    assert meta["features"][: len(FEATURE_NAMES)] == [f"{n}[t-{WINDOW - 1}]" for n in FEATURE_NAMES]
    assert meta["features"][-len(FEATURE_NAMES) :] == list(FEATURE_NAMES)
    assert len(meta["features"]) == WINDOW * len(FEATURE_NAMES)


def test_the_registry_round_trip_gives_the_trained_networks_probabilities(
    torch: Any, trained: tuple[Path, dict[str, Any]], windows: list[dict[str, float]]
) -> None:
    root, meta = trained
    artifact = root / meta["name"] / "1" / meta["artifact"]
    state = torch.load(artifact, weights_only=True)  # a state dict of tensors, no pickled classes
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert {"mean", "scale", "head.weight", "lstm.weight_ih_l0"} <= set(state)

    loaded = RegisteredModel.load(ModelRegistry(root), meta["ref"])
    assert isinstance(loaded, ProbabilityModel)
    assert loaded.version == "EURUSD-H1-lstm-h1@1"
    got = [loaded.predict_proba(w) for w in windows]
    again = [RegisteredModel.load(ModelRegistry(root), meta["name"]).predict_proba(w) for w in windows]
    assert got == again
    assert 0.0 < min(got) < 0.5 < max(got) < 1.0

    # The final fit, repeated in memory with the same seed, answers the same (float32, batch vs one row).
    data = build_dataset(
        planted_bars(1500), Timeframe.H1, horizon=1, costs=COSTS, features=windowed(compute_batch, WINDOW)
    )
    net = make_classifier("lstm", lstm_params()).fit(data.x, data.y)
    x = np.array([[w[n] for n in meta["features"]] for w in windows])
    np.testing.assert_allclose(net.predict_proba(x)[:, 1], got, rtol=1e-5, atol=1e-7)
    assert all(torch.equal(state[k], net.net.state_dict()[k]) for k in state)  # deterministic weights


def test_the_same_seed_trains_the_same_model(torch: Any, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    bars = planted_bars(900)
    first = train(bars, lstm_request(min_train=400, n_splits=2), registry, TestClock())
    second = train(bars, lstm_request(min_train=400, n_splits=2), registry, TestClock())
    assert second["ref"] == "EURUSD-H1-lstm-h1@2"
    assert first["metrics"] == second["metrics"]
    a = torch.load(tmp_path / first["name"] / "1" / "model.lstm.pt", weights_only=True)
    b = torch.load(tmp_path / first["name"] / "2" / "model.lstm.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
async def lstm_client(
    trained: tuple[Path, dict[str, Any]], tokens: TokenService
) -> AsyncIterator[httpx.AsyncClient]:
    from aitrading.ml.lstm_service import LSTMService

    service = LSTMService({}, registry_dir=trained[0], authenticate=principal_dependency(tokens))
    await service.start()
    try:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lstm") as c:
            c.headers["authorization"] = f"Bearer {tokens.issue('svc:decision', tenant='t1')}"
            yield c
    finally:
        await service.stop()


async def test_the_lstm_service_predicts_through_the_ml_api_with_a_token(
    lstm_client: httpx.AsyncClient, trained: tuple[Path, dict[str, Any]], windows: list[dict[str, float]]
) -> None:
    root, meta = trained
    want = RegisteredModel.load(ModelRegistry(root), meta["ref"]).predict_proba(windows[0])
    body = {"model": "EURUSD-H1-lstm-h1", "features": windows[0]}
    anonymous = await lstm_client.post("/api/v1/predict", json=body, headers={"authorization": ""})
    assert anonymous.status_code == 401
    first = await lstm_client.post("/api/v1/predict", json=body)
    assert first.status_code == 200
    assert first.json() == {"model": meta["ref"], "probability": want, "feature_set": meta["feature_set"]}
    assert (await lstm_client.post("/api/v1/predict", json=body)).json() == first.json()
    partial = {k: v for k, v in windows[0].items() if k != lagged_name("rsi_14", 2)}
    missing = await lstm_client.post("/api/v1/predict", json={"model": meta["ref"], "features": partial})
    assert missing.status_code == 400
    assert "rsi_14[t-2]" in missing.json()["detail"]
    listed = (await lstm_client.get("/api/v1/models")).json()["models"]
    assert [m["ref"] for m in listed] == ["EURUSD-H1-lstm-h1@1"]
    shown = await lstm_client.get("/api/v1/models/EURUSD-H1-lstm-h1@1")
    assert shown.json()["params"]["window"] == WINDOW


async def test_each_service_serves_its_own_kinds_and_names_the_other(
    trained: tuple[Path, dict[str, Any]], lstm_client: httpx.AsyncClient, tokens: TokenService
) -> None:
    root, _ = trained
    tree = TrainRequest(
        symbol="GBPUSD",
        timeframe=Timeframe.H1,
        kind="lightgbm",
        costs=COSTS,
        params=fast_params("lightgbm", 10),
        min_train=500,
    )
    train(planted_bars(900), tree, ModelRegistry(root), TestClock())
    refused = await lstm_client.get("/api/v1/models/GBPUSD-H1-lightgbm-h1")
    assert refused.status_code == 404
    assert "served by the ml service" in refused.json()["detail"]
    ml = MLService({}, registry_dir=root, authenticate=principal_dependency(tokens))
    auth = {"authorization": f"Bearer {tokens.issue('svc:decision', tenant='t1')}"}
    transport = httpx.ASGITransport(app=ml.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ml", headers=auth) as c:
        listed = (await c.get("/api/v1/models")).json()["models"]
        assert [m["ref"] for m in listed] == ["GBPUSD-H1-lightgbm-h1@1"]
        wrong = await c.post(
            "/api/v1/predict", json={"model": "EURUSD-H1-lstm-h1", "features": {"ret_1": 0.0}}
        )
    assert wrong.status_code == 404
    assert "served by the lstm service" in wrong.json()["detail"]


def next_bar_return(bars: Sequence[Bar], tf: Timeframe) -> FeatureFrame:
    """A leak: `ret_1` replaced by the NEXT bar's return."""
    frame = compute_batch(bars, tf)
    close = np.array([b.close for b in bars], dtype=float)
    values = frame.values.copy()
    values[:, FEATURE_NAMES.index("ret_1")] = np.r_[np.log(close[1:] / close[:-1]), np.nan]
    return FeatureFrame(times=frame.times, values=values, names=frame.names)


def test_training_an_lstm_on_a_peeking_feature_stops_before_registering_anything(
    torch: Any, tmp_path: Path
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(LookaheadError, match=r"feature 'ret_1' peeks ahead"):
        train(planted_bars(1500), lstm_request(), registry, TestClock(), features=next_bar_return)
    assert registry.list() == []
    assert not any((tmp_path / "models").glob("*/*/meta.json"))


def test_the_windows_are_causal_and_a_window_reaching_forward_is_refused() -> None:
    bars = planted_bars(400)
    check_causal_features(windowed(compute_batch, 5), bars, Timeframe.H1)

    def leading(bars: Sequence[Bar], tf: Timeframe) -> FeatureFrame:
        frame = windowed(compute_batch, 2)(bars, tf)  # then mislabel: put bar t+1's vector in "[t-1]"
        f = len(FEATURE_NAMES)
        values = frame.values.copy()
        values[:-1, :f] = frame.values[1:, f:]
        values[-1, :f] = np.nan
        return FeatureFrame(times=frame.times, values=values, names=frame.names)

    with pytest.raises(LookaheadError, match=r"\[t-1\]' peeks ahead"):
        check_causal_features(leading, bars, Timeframe.H1)


def test_asking_for_an_lstm_without_pytorch_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hide_torch(monkeypatch)
    with pytest.raises(OperationalError, match=r"install the lstm extra: pip install -e '\.\[lstm\]'"):
        train(planted_bars(600), lstm_request(), ModelRegistry(tmp_path), TestClock())
    assert ModelRegistry(tmp_path).list() == []


async def test_without_pytorch_the_lstm_service_starts_lists_and_answers_503(
    trained: tuple[Path, dict[str, Any]],
    tokens: TokenService,
    windows: list[dict[str, float]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aitrading.ml.lstm_service import LSTMService

    hide_torch(monkeypatch)
    service = LSTMService({}, registry_dir=trained[0], authenticate=principal_dependency(tokens))
    auth = {"authorization": f"Bearer {tokens.issue('svc:decision', tenant='t1')}"}
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lstm", headers=auth) as c:
        assert (await c.get("/api/v1/models/EURUSD-H1-lstm-h1")).status_code == 200
        resp = await c.post("/api/v1/predict", json={"model": "EURUSD-H1-lstm-h1", "features": windows[0]})
    assert resp.status_code == 503
    assert "pip install -e '.[lstm]'" in resp.json()["detail"]


def _write_csv(path: Path, bars: Sequence[Bar]) -> None:
    lines = ["time,open,high,low,close,spread"]
    for b in bars:
        when = datetime.fromtimestamp(b.time, UTC).isoformat()
        prices = ",".join(f"{v / PRICE_SCALE:.5f}" for v in (b.open, b.high, b.low, b.close))
        lines.append(f"{when},{prices},{b.spread}")
    path.write_text("\n".join(lines) + "\n")


def test_cli_trains_an_lstm_and_refuses_a_window_for_trees(
    torch: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "bars.csv"
    _write_csv(csv, planted_bars(900))
    runner = CliRunner()
    base = ["ml", "train", "--symbol", "EURUSD", "--timeframe", "H1", "--csv", str(csv)]
    base += ["--registry", str(tmp_path / "reg"), "--splits", "2", "--min-train", "400"]
    result = runner.invoke(app, [*base, "--model", "lstm", "--window", "4"])
    assert result.exit_code == 0, result.output
    assert "registered EURUSD-H1-lstm-h1@1" in result.output
    assert "the model beats the naive baseline" in result.output
    trees = runner.invoke(app, [*base, "--model", "lightgbm", "--window", "4"])
    assert trees.exit_code == 2
    assert "--window applies to --model lstm only" in trees.output
    hide_torch(monkeypatch)
    missing = runner.invoke(app, [*base, "--model", "lstm"])
    assert missing.exit_code == 2
    assert "install the lstm extra" in missing.output


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_platform_runs_the_lstm_service_over_the_registry_of_its_data_dir(
    torch: Any, tmp_path: Path, windows: list[dict[str, float]]
) -> None:
    configure_logging("WARNING")
    data_dir = tmp_path / "var"
    registry = ModelRegistry(data_dir / "models")
    meta = train(planted_bars(900), lstm_request(min_train=400, n_splits=2), registry, TestClock())
    cfg = load_config(
        mode="test",
        services={"hub": _port(), "lstm": _port(), "enabled": ["hub", "lstm"]},
        storage={"data_dir": str(data_dir)},
        simulator={"enabled": False},
    )
    assert ServicesConfig().port("lstm") == 8022
    kernel = Kernel(cfg, simulate=False)
    await kernel.start()
    try:
        auth = {"authorization": f"Bearer {kernel.tokens.issue('svc:decision', tenant='t1')}"}
        transport = httpx.ASGITransport(app=kernel.services["lstm"].app)
        async with httpx.AsyncClient(transport=transport, base_url="http://l", headers=auth) as c:
            scored = await c.post("/api/v1/predict", json={"model": meta["ref"], "features": windows[0]})
        assert scored.status_code == 200
        assert scored.json()["probability"] == RegisteredModel.load(registry, meta["ref"]).predict_proba(
            windows[0]
        )
    finally:
        await kernel.stop()
