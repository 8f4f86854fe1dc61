"""Indicators on real market data: batch equals TA-Lib, and streaming equals batch at every step.

Data: the bar and tick files in ../shared/data (see its SOURCES.md; ticks are resampled to bars here, never
copied into the repository) and backtesting.py's EURUSD H1. Agreement means the same NaN positions and
|ours - theirs| <= 1e-9 + 1e-9 * |theirs| everywhere else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aitrading.features.indicators import INDICATORS

try:
    import talib
except ImportError:  # TA-Lib is a test dependency; without it only the TA-Lib comparisons skip
    talib = None

pd = pytest.importorskip("pandas")

needs_talib = pytest.mark.skipif(talib is None, reason="TA-Lib (talib) is not installed")


@dataclass(frozen=True)
class Series:
    """Bars (high, low, close) or a bare price series (high = low = close)."""

    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


def _bars_from_frame(frame: Any) -> Series:
    cols = {str(c).lower(): c for c in frame.columns}
    return Series(*(frame[cols[name]].to_numpy(np.float64) for name in ("high", "low", "close")))


def _tick_bars(times: Any, prices: Any, rule: str) -> Series:
    ohlc = (
        pd.Series(prices.to_numpy(np.float64), index=pd.DatetimeIndex(times)).resample(rule).ohlc().dropna()
    )
    return _bars_from_frame(ohlc)


def _load(name: str, data: Path) -> Series:
    if name == "truefx_AUDUSD_ticks":  # 100,000 raw bids as one long price series
        bid = pd.read_csv(data / "truefx_AUDUSD_ticks_20200130-31.csv.gz")["bid"].to_numpy(np.float64)
        return Series(bid, bid, bid)
    if name == "truefx_AUDUSD_M1":
        ticks = pd.read_csv(data / "truefx_AUDUSD_ticks_20200130-31.csv.gz")
        times = pd.to_datetime(ticks["timestamp"], utc=True)
        return _tick_bars(times, (ticks["bid"] + ticks["ask"]) / 2.0, "1min")
    if name == "histdata_EURUSD_M1":
        ticks = pd.read_csv(
            data / "histdata_EURUSD_T_20200130-31.csv.gz", header=None, names=["time", "bid", "ask", "vol"]
        )
        times = pd.to_datetime(ticks["time"], format="%Y%m%d %H%M%S%f")
        return _tick_bars(times, ticks["bid"], "1min")
    if name == "dukascopy_USDJPY_10s":
        ticks = pd.read_csv(data / "dukascopy_USDJPY_ticks_20190101.csv")
        times = pd.to_datetime(ticks["timestamp"], utc=True)
        return _tick_bars(times, (ticks["bid"] + ticks["ask"]) / 2.0, "10s")
    files = {
        "fxcm_GBPUSD_M1_bid": "fxcm_GBPUSD_M1_bid_201202.csv.gz",
        "fxcm_USDJPY_M1_ask": "fxcm_USDJPY_M1_ask_201302.csv.gz",
        "cme_6EH4_M1": "cme_6EH4_M1_202401.csv.gz",
        "GOOG_D1": "backtestingpy_GOOG_D1_2004-2013.csv",
        "BTCUSD_MN1": "backtestingpy_BTCUSD_MN1_2012-2024.csv",
    }
    return _bars_from_frame(pd.read_csv(data / files[name]))


@functools.cache
def _cached(name: str, data: str) -> Series:
    return _load(name, Path(data))


SHARED = [
    "fxcm_GBPUSD_M1_bid",
    "fxcm_USDJPY_M1_ask",
    "cme_6EH4_M1",
    "GOOG_D1",
    "BTCUSD_MN1",
    "truefx_AUDUSD_M1",
    "histdata_EURUSD_M1",
    "dukascopy_USDJPY_10s",
    "truefx_AUDUSD_ticks",
]
DATASETS = [*SHARED, "backtesting_EURUSD_H1"]


@pytest.fixture(params=DATASETS)
def series(request: pytest.FixtureRequest) -> tuple[str, Series]:
    name = request.param
    if name == "backtesting_EURUSD_H1":
        eurusd = pytest.importorskip("backtesting.test").EURUSD
        return name, _bars_from_frame(eurusd)
    data = request.getfixturevalue("shared_data")
    return name, _cached(name, str(data))


# TA-Lib defaults for every indicator, plus variants that exercise the other conventions: period 1 copies,
# swapped MACD periods, a one-period signal, EMA/WMA middle bands and %K/%D types, unsmoothed DI1.
CASES: list[tuple[str, dict[str, Any]]] = [
    *((name, {}) for name in INDICATORS),
    ("SMA", {"timeperiod": 5}),
    ("SMA", {"timeperiod": 1}),
    ("EMA", {"timeperiod": 9}),
    ("EMA", {"timeperiod": 1}),
    ("WMA", {"timeperiod": 4}),
    ("WMA", {"timeperiod": 200}),
    ("MA", {"timeperiod": 12, "matype": 1}),
    ("MA", {"timeperiod": 12, "matype": 2}),
    ("RSI", {"timeperiod": 2}),
    ("RSI", {"timeperiod": 50}),
    ("MACD", {"fastperiod": 26, "slowperiod": 12, "signalperiod": 9}),
    ("MACD", {"fastperiod": 5, "slowperiod": 35, "signalperiod": 1}),
    ("BBANDS", {"timeperiod": 5, "nbdevup": 1.5, "nbdevdn": 2.5}),
    ("BBANDS", {"timeperiod": 10, "matype": 1}),
    ("BBANDS", {"timeperiod": 14, "nbdevup": 1.0, "nbdevdn": 1.0, "matype": 2}),
    ("BBANDS", {"timeperiod": 150}),  # past the two-pass limit: the re-centred running sums
    ("ATR", {"timeperiod": 1}),
    ("ATR", {"timeperiod": 5}),
    ("PLUS_DI", {"timeperiod": 1}),
    ("PLUS_DI", {"timeperiod": 7}),
    ("MINUS_DI", {"timeperiod": 1}),
    ("MINUS_DI", {"timeperiod": 30}),
    ("DX", {"timeperiod": 5}),
    ("ADX", {"timeperiod": 5}),
    ("ADX", {"timeperiod": 28}),
    ("STOCH", {"fastk_period": 14, "slowk_period": 3, "slowd_period": 3}),
    (
        "STOCH",
        {"fastk_period": 5, "slowk_period": 3, "slowk_matype": 1, "slowd_period": 4, "slowd_matype": 2},
    ),
    ("STOCH", {"fastk_period": 9, "slowk_period": 1, "slowd_period": 1}),
    ("STOCH", {"fastk_period": 150, "slowk_period": 5, "slowd_period": 5}),
]


def _case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, params = case
    return name + "".join(f"-{key}={value}" for key, value in params.items())


def _inputs(name: str, data: Series) -> tuple[np.ndarray, ...]:
    spec = INDICATORS[name]
    return (data.close,) if spec.inputs == ("real",) else (data.high, data.low, data.close)


def _outputs(result: Any) -> tuple[np.ndarray, ...]:
    return tuple(result) if isinstance(result, tuple) else (result,)


def assert_agrees(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Same NaN positions, and |actual - expected| <= 1e-9 + 1e-9 * |expected| elsewhere."""
    assert actual.shape == expected.shape, what
    nan_diff = np.flatnonzero(np.isnan(actual) != np.isnan(expected))
    assert nan_diff.size == 0, f"{what}: NaN differs first at index {nan_diff[0]}"
    close = np.isclose(actual, expected, rtol=1e-9, atol=1e-9) | np.isnan(expected)
    bad = np.flatnonzero(~close)
    assert bad.size == 0, f"{what}: index {bad[0]}: {actual[bad[0]]!r} != {expected[bad[0]]!r}"


@needs_talib
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_batch_matches_talib_on_real_data(
    series: tuple[str, Series], case: tuple[str, dict[str, Any]]
) -> None:
    data_name, data = series
    name, params = case
    inputs = _inputs(name, data)
    ours = _outputs(INDICATORS[name].batch(*inputs, **params))
    theirs = _outputs(getattr(talib, name)(*inputs, **params))
    assert len(ours) == len(theirs)
    for index, (mine, ref) in enumerate(zip(ours, theirs, strict=True)):
        assert_agrees(mine, ref, f"{data_name} {_case_id(case)} output {index}")


STREAM_CASES = [case for case in CASES if not case[1] or case[0] in {"BBANDS", "STOCH", "MACD", "PLUS_DI"}]


@pytest.mark.parametrize("case", STREAM_CASES, ids=_case_id)
def test_streaming_matches_batch_at_every_step(
    series: tuple[str, Series], case: tuple[str, dict[str, Any]]
) -> None:
    data_name, data = series
    name, params = case
    spec = INDICATORS[name]
    inputs = _inputs(name, data)
    expected = _outputs(spec.batch(*inputs, **params))
    stream = spec.stream(**params)
    rows = [_outputs(stream.update(*bar)) for bar in zip(*(arr.tolist() for arr in inputs), strict=True)]
    for index, ref in enumerate(expected):
        assert_agrees(
            np.array([row[index] for row in rows]), ref, f"{data_name} {_case_id(case)} output {index}"
        )
    # These series start without NaN, so the lookback is exactly TA-Lib's leading run of NaN.
    valid = np.flatnonzero(~np.isnan(expected[0]))
    assert stream.ready is bool(valid.size)
    if valid.size:
        assert valid[0] == stream.lookback
        np.testing.assert_array_equal(np.array(_outputs(stream.value)), np.array(rows[-1]))
