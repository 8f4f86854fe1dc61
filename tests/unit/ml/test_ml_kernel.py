"""End to end in one kernel: bars on the bus -> features service -> ML service inference over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from ml_helpers import fast_params, planted_bars

from aitrading.common.clock import TestClock
from aitrading.common.config import load_config
from aitrading.common.logging import configure_logging
from aitrading.kernel import Kernel
from aitrading.ml.dataset import Costs
from aitrading.ml.inference import RegisteredModel
from aitrading.ml.registry import ModelRegistry
from aitrading.ml.train import TrainRequest, train
from aitrading.model.ids import bar_subject
from aitrading.model.market import Timeframe


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_live_vector_is_scored_by_the_model_trained_on_the_same_features(tmp_path: Path) -> None:
    configure_logging("WARNING")
    data_dir = tmp_path / "var"
    bars = planted_bars(1200)
    registry = ModelRegistry(data_dir / "models")
    request = TrainRequest(
        symbol="EURUSD",
        timeframe=Timeframe.H1,
        kind="lightgbm",
        costs=Costs(point=0.00001),
        params=fast_params("lightgbm", 10),
        min_train=400,
    )
    meta = train(bars[:1000], request, registry, TestClock())
    cfg = load_config(
        mode="test",
        services={"features": _port(), "ml": _port(), "enabled": ["features", "ml"]},
        storage={"data_dir": str(data_dir)},
        simulator={"enabled": False},
    )
    kernel = Kernel(cfg, simulate=False)
    await kernel.start()
    try:
        bus = kernel.bus
        assert bus is not None
        for bar in bars:
            await bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)
        auth = {"authorization": f"Bearer {kernel.tokens.issue('svc:decision', tenant='t1')}"}
        features_app = kernel.services["features"].app
        ml_app = kernel.services["ml"].app
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=features_app), base_url="http://f"
        ) as f:
            latest = await f.get("/api/v1/F/EURUSD/H1", headers=auth)
        assert latest.status_code == 200
        vector = latest.json()
        assert vector["time"] == bars[-1].time
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ml_app), base_url="http://m") as m:
            scored = await m.post(
                "/api/v1/predict", json={"model": meta["ref"], "features": vector["values"]}, headers=auth
            )
        assert scored.status_code == 200
        want = RegisteredModel.load(registry, meta["ref"]).predict_proba(vector["values"])
        assert scored.json()["probability"] == want
    finally:
        await kernel.stop()
