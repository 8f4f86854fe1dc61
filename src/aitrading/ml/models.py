"""The model kinds the registry knows: gradient-boosted trees from LightGBM and XGBoost, and an LSTM.

`make_classifier` builds an untrained estimator with conservative defaults (shallow trees, slow learning,
subsampling: FX direction has little signal and overfits easily), `save_model` writes its native text
format (no pickle: an artifact is data, not code), and `load_predictor` reads it back as a function of
one feature row → probability of class 1, tuned for single-row latency (`aitrading.ml.predictors`). The
LSTM (`aitrading.ml.lstm`) needs the optional PyTorch extra; its rows are flat windows of feature vectors
and its artifact a state dict of tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aitrading.common.errors import BadInputError

if TYPE_CHECKING:  # the predictors import numpy; the CLI imports this module on every start
    from aitrading.ml.predictors import Predictor

__all__ = [
    "ARTIFACT_FILES",
    "MODEL_KINDS",
    "ModelKind",
    "default_params",
    "load_predictor",
    "make_classifier",
    "save_model",
]

ModelKind = Literal["lightgbm", "xgboost", "lstm"]
MODEL_KINDS: tuple[ModelKind, ...] = ("lightgbm", "xgboost", "lstm")
ARTIFACT_FILES: Mapping[str, str] = {
    "lightgbm": "model.lgb.txt",
    "xgboost": "model.xgb.json",
    "lstm": "model.lstm.pt",
}


def default_params(kind: str, seed: int = 7) -> dict[str, Any]:
    """Return the default hyper-parameters of `kind`."""
    if kind == "lightgbm":
        return {
            "n_estimators": 200,
            "learning_rate": 0.03,
            "num_leaves": 15,
            "min_child_samples": 50,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "random_state": seed,
            "n_jobs": 2,
            "verbose": -1,
        }
    if kind == "xgboost":
        return {
            "n_estimators": 200,
            "learning_rate": 0.03,
            "max_depth": 3,
            "min_child_weight": 5.0,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "tree_method": "hist",
            "random_state": seed,
            "n_jobs": 2,
            "eval_metric": "logloss",
        }
    if kind == "lstm":
        from aitrading.ml.lstm import default_lstm_params

        return default_lstm_params(seed)
    raise BadInputError(f"unknown model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")


def make_classifier(kind: str, params: Mapping[str, Any]) -> Any:
    """Return an untrained scikit-learn compatible classifier of `kind` with `params`."""
    if kind == "lightgbm":
        import lightgbm

        return lightgbm.LGBMClassifier(**params)
    if kind == "xgboost":
        import xgboost

        return xgboost.XGBClassifier(**params)
    if kind == "lstm":
        from aitrading.ml.lstm import LSTMClassifier

        return LSTMClassifier(params)
    raise BadInputError(f"unknown model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")


def save_model(kind: str, estimator: Any, directory: Path) -> Path:
    """Write the trained `estimator` in its library's native format under `directory`; return the path."""
    path = directory / ARTIFACT_FILES[kind]
    if kind == "lstm":
        from aitrading.ml.lstm import save_lstm

        save_lstm(estimator, path)
    elif kind == "lightgbm":
        estimator.booster_.save_model(str(path))
    else:
        estimator.get_booster().save_model(str(path))
    return path


def load_predictor(kind: str, path: Path) -> Predictor:
    """Return a single-row predictor (probability of class 1) of the artifact at `path`.

    The predictor takes a float64 row of the model's inputs and runs on one thread: the tree models
    through their libraries' single-row C APIs (`aitrading.ml.predictors`), the LSTM with one intra-op
    thread for the call.
    """
    if kind == "lightgbm":
        from aitrading.ml.predictors import lightgbm_predictor

        return lightgbm_predictor(path)
    if kind == "xgboost":
        from aitrading.ml.predictors import xgboost_predictor

        return xgboost_predictor(path)
    if kind == "lstm":
        from aitrading.ml.lstm import load_lstm_predictor

        return load_lstm_predictor(path)
    raise BadInputError(f"unknown model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")
