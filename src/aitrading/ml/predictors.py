"""Single-row predictors of the tree models: one feature row in, P(class 1) out, in microseconds.

A live decision scores one row at a time, where the libraries' Python `predict` spends most of its time
on per-call set-up (parameter strings, input conversion, shape checks, a predictor object per call):
LightGBM's `Booster.predict` takes ~25 µs for what its C core does in ~3 µs, XGBoost's `inplace_predict`
~90 µs for ~30 µs. So the row goes straight to each library's C API for single rows, through the
library the Python package has loaded:

- LightGBM: `LGBM_BoosterPredictForMatSingleRowFast` with a `FastConfig` made once per model
  (`LGBM_BoosterPredictForMatSingleRowFastInit`, one thread), freed with the predictor;
- XGBoost: `XGBoosterPredictFromDense` (what `inplace_predict` calls) with its JSON arguments, the
  array interface of a preallocated input row and a proxy matrix made once; the booster has `nthread=1`.

Both run on one thread: a single row has nothing to parallelise, and an OpenMP team would spin against
the other processes of a busy machine. Each predictor copies the row into its own buffer under a lock, so
it is safe to share between threads (uncontended, the lock costs ~0.1 µs).

The fast path must give the very numbers of the library's own `predict`: at load, both are asked about a
few probe rows and must agree bit for bit, else (and if the C entry points are missing, as they could be
in a future release) the predictor is the library's `predict` with one thread, as slow as that is.
"""

from __future__ import annotations

import ctypes
import json
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from aitrading.common.errors import BadInputError, OperationalError

__all__ = ["Predictor", "lightgbm_predictor", "xgboost_predictor"]

Predictor = Callable[[npt.NDArray[np.float64]], float]

_log = structlog.get_logger("ml")
_C_API_DTYPE_FLOAT64 = 1
_C_API_PREDICT_NORMAL = 0


def _probes(n: int) -> list[npt.NDArray[np.float64]]:
    """Rows that send the trees down different branches: zeros, a ramp, and both signs of it."""
    ramp = np.linspace(-1.0, 1.0, n)
    return [np.zeros(n), ramp, -ramp, np.full(n, 0.5)]


def _agrees(fast: Predictor, portable: Predictor, n: int) -> bool:
    return all(fast(row) == portable(row) for row in _probes(n))


def _shape_error(row: npt.NDArray[np.float64], n: int) -> BadInputError:
    return BadInputError(f"the model wants a row of {n} values, got shape {np.shape(row)}")


class _LightGBMRow:
    """LightGBM's single-row C API on a model's `FastConfig`."""

    def __init__(self, booster: Any, lib: Any, num_iteration: int) -> None:
        # The C call writes one value per class (model per iteration): only a binary model's single
        # probability fits the one-slot output buffer; anything else must not reach native code.
        if int(booster.num_model_per_iteration()) != 1:
            raise OperationalError("LightGBM fast predictor: not a single-output (binary) model")
        self._lib = lib
        self.n = int(booster.num_feature())
        self._row = np.zeros(self.n)
        self._out = np.zeros(1)
        self._len = ctypes.c_int64(0)
        config = ctypes.c_void_p()
        rc = lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle,
            ctypes.c_int(_C_API_PREDICT_NORMAL),
            ctypes.c_int(0),
            ctypes.c_int(num_iteration),
            ctypes.c_int(_C_API_DTYPE_FLOAT64),
            ctypes.c_int32(self.n),
            ctypes.c_char_p(b"num_threads=1"),
            ctypes.byref(config),
        )
        if rc != 0 or not config.value:
            raise OperationalError(f"LightGBM fast predictor: {lib.LGBM_GetLastError().decode()}")
        self._booster = booster  # the fast config points into the booster: keep it alive
        weakref.finalize(self, lib.LGBM_FastConfigFree, config)
        self._call = lib.LGBM_BoosterPredictForMatSingleRowFast
        self._args = (
            config,
            ctypes.c_void_p(self._row.ctypes.data),
            ctypes.byref(self._len),
            self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        )
        self._lock = threading.Lock()

    def __call__(self, row: npt.NDArray[np.float64]) -> float:
        if row.shape != self._row.shape:
            raise _shape_error(row, self.n)
        with self._lock:
            self._row[:] = row
            if self._call(*self._args) != 0:
                raise OperationalError(
                    f"LightGBM prediction failed: {self._lib.LGBM_GetLastError().decode()}"
                )
            if self._len.value != 1:
                raise OperationalError(f"LightGBM fast predictor wrote {self._len.value} values, not 1")
            return float(self._out[0])


def lightgbm_predictor(path: Path) -> Predictor:
    """Return the single-row predictor of the LightGBM model file at `path`."""
    import lightgbm

    booster = lightgbm.Booster(model_file=str(path))
    num_iteration = booster.best_iteration if booster.best_iteration > 0 else -1
    n = int(booster.num_feature())

    def portable(row: npt.NDArray[np.float64]) -> float:
        if row.shape != (n,):
            raise _shape_error(row, n)
        return float(booster.predict(row.reshape(1, -1), num_iteration=num_iteration, num_threads=1)[0])

    try:
        # The C library the package loaded; private in name, but the package's own calls go through it.
        fast = _LightGBMRow(booster, lightgbm.basic._LIB, num_iteration)  # type: ignore[attr-defined]
    except (AttributeError, OSError, OperationalError) as exc:
        _log.warning("ml_fast_predictor_unavailable", library="lightgbm", error=str(exc))
        return portable
    if not _agrees(fast, portable, n):
        _log.warning("ml_fast_predictor_disagrees", library="lightgbm", path=str(path))
        return portable
    return fast


class _XGBoostRow:
    """XGBoost's dense in-place prediction C API on a preallocated row and proxy matrix."""

    def __init__(self, booster: Any, lib: Any) -> None:
        self._lib = lib
        self.n = int(booster.num_features())
        self._row = np.zeros((1, self.n))
        interface = {
            "data": (self._row.ctypes.data, False),
            "shape": (1, self.n),
            "strides": None,
            "typestr": "<f8",
            "version": 3,
        }
        # The arguments of `Booster.inplace_predict` for a value prediction over every tree.
        config = {
            "type": 0,
            "training": False,
            "iteration_begin": 0,
            "iteration_end": 0,
            "missing": float("nan"),
            "strict_shape": False,
            "cache_id": 0,
        }
        proxy = ctypes.c_void_p()
        if lib.XGProxyDMatrixCreate(ctypes.byref(proxy)) != 0 or not proxy.value:
            raise OperationalError(f"XGBoost proxy matrix: {lib.XGBGetLastError().decode()}")
        weakref.finalize(self, lib.XGDMatrixFree, proxy)
        self._booster = booster
        self._shape = ctypes.POINTER(ctypes.c_uint64)()
        self._dims = ctypes.c_uint64()
        self._preds = ctypes.POINTER(ctypes.c_float)()
        self._call = lib.XGBoosterPredictFromDense
        self._args = (
            booster.handle,
            json.dumps(interface).encode(),
            json.dumps(config).encode(),
            proxy,
            ctypes.byref(self._shape),
            ctypes.byref(self._dims),
            ctypes.byref(self._preds),
        )
        self._lock = threading.Lock()

    def __call__(self, row: npt.NDArray[np.float64]) -> float:
        if row.shape != (self.n,):
            raise _shape_error(row, self.n)
        with self._lock:
            self._row[0] = row
            if self._call(*self._args) != 0:
                error = self._lib.XGBGetLastError().decode()
                raise OperationalError(f"XGBoost prediction failed: {error}")
            # The output lives in XGBoost's per-thread buffer until this thread's next call: read it now.
            return float(self._preds[0])


def xgboost_predictor(path: Path) -> Predictor:
    """Return the single-row predictor of the XGBoost model file at `path`."""
    import xgboost

    booster = xgboost.Booster(params={"nthread": 1})
    booster.load_model(str(path))
    booster.set_param({"nthread": 1})  # whatever the file's configuration says
    n = int(booster.num_features())

    def portable(row: npt.NDArray[np.float64]) -> float:
        if row.shape != (n,):
            raise _shape_error(row, n)
        return float(booster.inplace_predict(row.reshape(1, -1))[0])

    try:
        fast = _XGBoostRow(booster, xgboost.core._LIB)
    except (AttributeError, OSError, OperationalError) as exc:
        _log.warning("ml_fast_predictor_unavailable", library="xgboost", error=str(exc))
        return portable
    if not _agrees(fast, portable, n):
        _log.warning("ml_fast_predictor_disagrees", library="xgboost", path=str(path))
        return portable
    return fast
