"""Train a model on stored bars: look-ahead checks, purged walk-forward evaluation, registration.

`train(bars, request, registry, clock)`:
1. refuses features or labels that peek ahead (`aitrading.ml.leakage`); for the LSTM the features are
   windows of the feature vectors (`aitrading.ml.lstm.windowed`) and the check runs on the windows;
2. builds the data set (features at bar close, labels = forward return net of costs);
3. evaluates with purged walk-forward CV and an embargo, checking every fold for label overlap; pools the
   out-of-sample forecasts and scores them against the prior baseline, with a calibration curve;
4. fits the final model on every sample and registers it with its metadata.

The scores are what they are: on FX direction they sit near the baseline, and the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aitrading import __version__
from aitrading.common.clock import Clock
from aitrading.common.errors import BadInputError
from aitrading.features.vectors import FEATURE_SET_VERSION, compute_batch
from aitrading.ml.cv import PurgedWalkForward, verify_fold
from aitrading.ml.dataset import Costs, FeatureBuilder, build_dataset, forward_labels
from aitrading.ml.evaluation import calibration, score
from aitrading.ml.leakage import check_causal_features, check_causal_labels
from aitrading.ml.models import default_params, make_classifier, save_model
from aitrading.ml.registry import ModelRegistry, model_name
from aitrading.model.market import Bar, Timeframe

__all__ = ["Progress", "TrainRequest", "code_version", "train"]

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) as training advances."""


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """What to train."""

    symbol: str
    timeframe: Timeframe
    kind: str
    horizon: int = 1
    costs: Costs = field(default_factory=lambda: Costs(point=0.00001))
    n_splits: int = 5
    embargo: int | None = None
    """Bars kept out before each test fold; default: the horizon + 24 (a day of H1 bars)."""
    min_train: int = 1000
    params: dict[str, Any] | None = None
    seed: int = 7
    feed: str = ""
    source: str = ""


def code_version() -> dict[str, str]:
    """Return the package version and the git commit of the source tree ('unknown' outside a checkout).

    Read from `.git` directly (HEAD, the ref file or packed-refs): no subprocess, no git binary needed.
    """
    return {"package": __version__, "git_sha": _git_sha(Path(__file__).resolve().parent)}


def _git_sha(here: Path) -> str:
    for directory in (here, *here.parents):
        git = directory / ".git"
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref: "):
                return head
            ref = head[5:]
            if (git / ref).is_file():
                return (git / ref).read_text().strip()
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
        except OSError:
            return "unknown"
        return "unknown"
    return "unknown"


def _noop(stage: str, done: int, total: int) -> None:
    """Ignore progress."""


def train(
    bars: Sequence[Bar],
    request: TrainRequest,
    registry: ModelRegistry,
    clock: Clock,
    *,
    progress: Progress = _noop,
    features: FeatureBuilder = compute_batch,
) -> dict[str, Any]:
    """Train, evaluate and register a model on `bars`; return its registry metadata."""
    started = time.perf_counter()
    params = (
        dict(request.params) if request.params is not None else default_params(request.kind, request.seed)
    )
    name = model_name(request.symbol, request.timeframe.name, request.kind, request.horizon)
    make_classifier(request.kind, params)  # bad kind, params or a missing extra fail before the long part
    if request.kind == "lstm":
        from aitrading.ml.lstm import windowed

        features = windowed(features, int(params["window"]))
    embargo = request.embargo if request.embargo is not None else request.horizon + 24

    progress("look-ahead checks", 0, 2)
    check_causal_features(features, bars, request.timeframe)
    progress("look-ahead checks", 1, 2)
    check_causal_labels(
        partial(forward_labels, horizon=request.horizon, costs=request.costs), bars, request.horizon
    )
    progress("look-ahead checks", 2, 2)

    data = build_dataset(
        bars, request.timeframe, horizon=request.horizon, costs=request.costs, features=features
    )
    splitter = PurgedWalkForward(n_splits=request.n_splits, embargo=embargo, min_train=request.min_train)
    oos_p = np.full(len(data), np.nan)
    base_p = np.full(len(data), np.nan)
    folds: list[dict[str, Any]] = []
    progress("walk-forward folds", 0, request.n_splits)
    for k, fold in enumerate(splitter.split(data.start, data.label_end), start=1):
        verify_fold(fold, data.start, data.label_end, embargo)
        y_train = data.y[fold.train]
        if np.unique(y_train).size < 2:
            raise BadInputError(f"fold {k}: the training labels hold one class only; use more data")
        model = make_classifier(request.kind, params)
        model.fit(data.x[fold.train], y_train)
        p = model.predict_proba(data.x[fold.test])[:, 1]
        prior = float(y_train.mean())
        oos_p[fold.test] = p
        base_p[fold.test] = prior
        y_test = data.y[fold.test]
        folds.append(
            {
                "fold": k,
                "train": int(fold.train.size),
                "purged": fold.purged,
                "test_from": int(data.times[fold.test[0]]),
                "test_to": int(data.times[fold.test[-1]]),
                "model": score(y_test, p).as_dict(),
                "baseline": score(y_test, np.full(y_test.size, prior)).as_dict(),
            }
        )
        progress("walk-forward folds", k, request.n_splits)

    tested = np.isfinite(oos_p)
    y_oos = data.y[tested]
    metrics = {
        "model": score(y_oos, oos_p[tested]).as_dict(),
        "baseline": score(y_oos, base_p[tested]).as_dict(),
        "calibration": calibration(y_oos, oos_p[tested]).as_dict(),
        "folds": folds,
        "positive_rate": float(data.y.mean()),
    }

    progress("final fit", 0, 1)
    final = make_classifier(request.kind, params)
    final.fit(data.x, data.y)
    progress("final fit", 1, 1)

    meta = {
        "kind": request.kind,
        "symbol": request.symbol,
        "feed": request.feed,
        "timeframe": request.timeframe.name,
        "horizon": request.horizon,
        "label": "1 if close[t+horizon] - close[t] - cost > 0 (a long trade pays its costs), else 0",
        "costs": asdict(request.costs),
        "features": list(data.names),
        "feature_set": FEATURE_SET_VERSION,
        "params": params,
        "data": {
            "source": request.source,
            "bars": len(bars),
            "samples": len(data),
            "from": int(bars[0].time),
            "to": int(bars[-1].time),
        },
        "cv": {
            "method": "purged walk-forward, expanding window",
            "n_splits": request.n_splits,
            "embargo_bars": embargo,
            "min_train": request.min_train,
        },
        "metrics": metrics,
        "code": code_version(),
        "created": clock.utcnow().isoformat(),
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    return registry.register(name, meta, partial(save_model, request.kind, final))
