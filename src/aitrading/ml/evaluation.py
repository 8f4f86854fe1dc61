"""Out-of-sample scores of probability forecasts, beside a naive baseline, and a calibration curve.

The baseline predicts the training fold's share of positive labels for every test sample (the prior): its
accuracy is the majority class's, its AUC 0.5. A model is worth something only where it beats it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (  # type: ignore[import-untyped]  # scikit-learn ships no type hints
    accuracy_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

__all__ = ["Calibration", "Scores", "calibration", "score"]

_EPS = 1e-15


@dataclass(frozen=True, slots=True)
class Scores:
    """Accuracy (threshold 0.5), log-loss, Brier score and ROC AUC of probability forecasts."""

    n: int
    accuracy: float
    log_loss: float
    brier: float
    auc: float

    def as_dict(self) -> dict[str, Any]:
        """Return the scores as a JSON-safe dict (an undefined AUC is None)."""
        out = asdict(self)
        if out["auc"] != out["auc"]:
            out["auc"] = None
        return out


def score(y: npt.NDArray[np.int64], p: npt.NDArray[np.float64]) -> Scores:
    """Return the scores of probabilities `p` of class 1 against labels `y` (AUC NaN if one class only)."""
    p = np.clip(p, _EPS, 1 - _EPS)
    both = np.unique(y).size == 2
    return Scores(
        n=int(y.size),
        accuracy=float(accuracy_score(y, (p > 0.5).astype(np.int64))),
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        auc=float(roc_auc_score(y, p)) if both else float("nan"),
    )


@dataclass(frozen=True, slots=True)
class Calibration:
    """Reliability curve: per probability bin (equal counts), the mean forecast and the observed frequency."""

    mean_predicted: list[float]
    observed: list[float]
    counts: list[int]

    def as_dict(self) -> dict[str, Any]:
        """Return the curve as a dict."""
        return asdict(self)


def calibration(y: npt.NDArray[np.int64], p: npt.NDArray[np.float64], bins: int = 10) -> Calibration:
    """Return the calibration curve of `p` against `y` with `bins` quantile bins."""
    # The binning of sklearn.calibration.calibration_curve(strategy="quantile"), keeping the counts.
    edges = np.percentile(p, np.linspace(0, 100, bins + 1))
    which = np.searchsorted(edges[1:-1], p)
    total = np.bincount(which, minlength=len(edges))
    sum_p = np.bincount(which, weights=p, minlength=len(edges))
    sum_y = np.bincount(which, weights=y, minlength=len(edges))
    nz = total > 0
    return Calibration(
        mean_predicted=[round(float(v), 6) for v in sum_p[nz] / total[nz]],
        observed=[round(float(v), 6) for v in sum_y[nz] / total[nz]],
        counts=[int(c) for c in total[nz]],
    )
