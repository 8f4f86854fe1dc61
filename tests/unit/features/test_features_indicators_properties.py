"""Hypothesis properties of the indicators on random walks (with ties, flat runs and NaN holes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aitrading.features.indicators import INDICATORS, batch, streaming

try:
    import talib
except ImportError:  # TA-Lib is a test dependency; without it only the TA-Lib comparison skips
    talib = None

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Bars = tuple[np.ndarray, np.ndarray, np.ndarray]


@st.composite
def random_walks(draw: st.DrawFn, max_size: int = 250) -> Bars:
    """Positive (high, low, close) bars of a geometric random walk; sometimes rounded to a tick size."""
    n = draw(st.integers(0, max_size))
    start = draw(st.floats(1e-3, 1e5))
    vol = draw(st.sampled_from([1e-5, 1e-4, 1e-3, 3e-2]))
    unit = st.floats(-4.0, 4.0, allow_nan=False)
    close = start * np.exp(np.cumsum(draw(arrays(np.float64, n, elements=unit)) * vol))
    spread = st.floats(0.0, 3.0, allow_nan=False)
    high = close * (1.0 + draw(arrays(np.float64, n, elements=spread)) * vol)
    low = close * (1.0 - draw(arrays(np.float64, n, elements=spread)) * vol)
    if draw(st.booleans()):  # quantised prices: ties, repeated highs/lows and flat stretches
        tick = start * vol * draw(st.sampled_from([0.5, 2.0, 20.0]))
        high, low, close = (np.round(a / tick) * tick for a in (high, low, close))
    return high, low, close


@st.composite
def with_nan_holes(draw: st.DrawFn) -> Bars:
    """Random walks with NaN at random bars of random inputs (leading, interior and trailing)."""
    high, low, close = (a.copy() for a in draw(random_walks()))
    n = len(close)
    if n:
        for _ in range(draw(st.integers(1, 4))):
            target = draw(st.sampled_from([high, low, close]))
            first = draw(st.integers(0, n - 1))
            target[first : first + draw(st.integers(1, 5))] = np.nan
    return high, low, close


PARAMS: dict[str, Any] = {
    "SMA": st.fixed_dictionaries({"timeperiod": st.integers(1, 40)}),
    "EMA": st.fixed_dictionaries({"timeperiod": st.integers(1, 40)}),
    "WMA": st.fixed_dictionaries({"timeperiod": st.integers(1, 12)}),
    "MA": st.fixed_dictionaries({"timeperiod": st.integers(1, 30), "matype": st.integers(0, 2)}),
    "RSI": st.fixed_dictionaries({"timeperiod": st.integers(2, 30)}),
    "MACD": st.fixed_dictionaries(
        {
            "fastperiod": st.integers(2, 20),
            "slowperiod": st.integers(2, 40),
            "signalperiod": st.integers(1, 12),
        }
    ),
    "BBANDS": st.fixed_dictionaries(
        {
            "timeperiod": st.integers(2, 30),
            "nbdevup": st.floats(0.0, 4.0),
            "nbdevdn": st.floats(0.0, 4.0),
            "matype": st.integers(0, 2),
        }
    ),
    "TRANGE": st.just({}),
    "ATR": st.fixed_dictionaries({"timeperiod": st.integers(1, 30)}),
    "PLUS_DI": st.fixed_dictionaries({"timeperiod": st.integers(1, 30)}),
    "MINUS_DI": st.fixed_dictionaries({"timeperiod": st.integers(1, 30)}),
    "DX": st.fixed_dictionaries({"timeperiod": st.integers(2, 30)}),
    "ADX": st.fixed_dictionaries({"timeperiod": st.integers(2, 20)}),
    "STOCH": st.fixed_dictionaries(
        {
            "fastk_period": st.integers(1, 20),
            "slowk_period": st.integers(1, 6),
            "slowk_matype": st.integers(0, 2),
            "slowd_period": st.integers(1, 6),
            "slowd_matype": st.integers(0, 2),
        }
    ),
}


@st.composite
def indicator_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(INDICATORS)))
    return name, draw(PARAMS[name])


def _inputs(name: str, bars: Bars) -> Bars | tuple[np.ndarray]:
    return (bars[2],) if INDICATORS[name].inputs == ("real",) else bars


def _outputs(result: Any) -> tuple[np.ndarray, ...]:
    return tuple(result) if isinstance(result, tuple) else (result,)


def _assert_agrees(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-9, equal_nan=True)


def _stream(name: str, params: dict[str, Any], inputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    stream = INDICATORS[name].stream(**params)
    rows = [_outputs(stream.update(*bar)) for bar in zip(*(a.tolist() for a in inputs), strict=True)]
    count = len(_outputs(INDICATORS[name].batch(*inputs, **params)))
    return tuple(np.array([row[i] for row in rows], dtype=np.float64) for i in range(count))


@SETTINGS
@given(call=indicator_calls(), bars=random_walks())
def test_streaming_equals_batch_on_random_walks(call: tuple[str, dict[str, Any]], bars: Bars) -> None:
    name, params = call
    inputs = _inputs(name, bars)
    expected = _outputs(INDICATORS[name].batch(*inputs, **params))
    for mine, ref in zip(_stream(name, params, inputs), expected, strict=True):
        _assert_agrees(mine, ref)


@SETTINGS
@given(call=indicator_calls(), bars=with_nan_holes())
def test_streaming_equals_batch_with_nan_in_the_input(call: tuple[str, dict[str, Any]], bars: Bars) -> None:
    name, params = call
    inputs = _inputs(name, bars)
    expected = _outputs(INDICATORS[name].batch(*inputs, **params))
    for mine, ref in zip(_stream(name, params, inputs), expected, strict=True):
        _assert_agrees(mine, ref)


@pytest.mark.skipif(talib is None, reason="TA-Lib (talib) is not installed")
@SETTINGS
@given(call=indicator_calls(), bars=random_walks())
def test_batch_equals_talib_on_random_walks(call: tuple[str, dict[str, Any]], bars: Bars) -> None:
    name, params = call
    inputs = _inputs(name, bars)
    ours = _outputs(INDICATORS[name].batch(*inputs, **params))
    theirs = _outputs(getattr(talib, name)(*inputs, **params))
    for mine, ref in zip(ours, theirs, strict=True):
        _assert_agrees(mine, ref)


@SETTINGS
@given(
    value=st.floats(-1e9, 1e9, allow_nan=False),
    n=st.integers(0, 120),
    period=st.integers(1, 60),
)
def test_sma_of_a_constant_is_the_constant(value: float, n: int, period: int) -> None:
    out = batch.SMA(np.full(n, value), timeperiod=period)
    assert np.isnan(out[: period - 1]).all()
    for got in out[period - 1 :]:
        assert math.isclose(got, value, rel_tol=1e-12, abs_tol=1e-300)


@SETTINGS
@given(bars=random_walks(), period=st.integers(2, 40))
def test_rsi_stays_within_0_and_100(bars: Bars, period: int) -> None:
    out = batch.RSI(bars[2], timeperiod=period)
    valid = out[~np.isnan(out)]
    assert ((valid >= 0.0) & (valid <= 100.0)).all()


@SETTINGS
@given(bars=random_walks(), call=PARAMS["BBANDS"])
def test_bollinger_middle_band_is_the_moving_average_and_bands_bracket_it(
    bars: Bars, call: dict[str, Any]
) -> None:
    upper, middle, lower = batch.BBANDS(bars[2], **call)
    moving_average = batch.MA(bars[2], timeperiod=call["timeperiod"], matype=call["matype"])
    np.testing.assert_array_equal(middle, moving_average)
    if call["matype"] == 0:
        np.testing.assert_array_equal(middle, batch.SMA(bars[2], timeperiod=call["timeperiod"]))
    valid = ~np.isnan(middle)
    assert (upper[valid] >= middle[valid]).all()
    assert (lower[valid] <= middle[valid]).all()


@SETTINGS
@given(bars=random_walks(), call=PARAMS["STOCH"], period=st.integers(2, 20))
def test_oscillators_stay_within_0_and_100(bars: Bars, call: dict[str, Any], period: int) -> None:
    results = [*batch.STOCH(*bars, **call)]
    results += [fn(*bars, timeperiod=period) for fn in (batch.PLUS_DI, batch.MINUS_DI, batch.DX, batch.ADX)]
    for out in results:
        valid = out[~np.isnan(out)]
        assert ((valid >= -1e-9) & (valid <= 100.0 + 1e-9)).all()


@SETTINGS
@given(bars=random_walks(), period=st.integers(1, 30))
def test_stream_reset_forgets_everything(bars: Bars, period: int) -> None:
    stream = streaming.ATR(timeperiod=period)
    first = [stream.update(*bar) for bar in zip(*bars, strict=True)]
    stream.reset()
    assert not stream.ready
    assert math.isnan(stream.value)
    again = [stream.update(*bar) for bar in zip(*bars, strict=True)]
    np.testing.assert_array_equal(np.array(first), np.array(again))
