"""Edge cases: short and empty input, flat series, the NaN policy, parameter checks, defaults, lookbacks."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from aitrading.common.errors import BadInputError
from aitrading.features.indicators import INDICATORS, batch, streaming

try:
    import talib
    import talib.abstract
except ImportError:  # TA-Lib is a test dependency; without it only the TA-Lib comparisons skip
    talib = None

needs_talib = pytest.mark.skipif(talib is None, reason="TA-Lib (talib) is not installed")
NAMES = sorted(INDICATORS)


def _walk(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    return close + rng.uniform(0.0, 1.0, n), close - rng.uniform(0.0, 1.0, n), close


def _inputs(name: str, bars: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return (bars[2],) if INDICATORS[name].inputs == ("real",) else tuple(bars)


def _outputs(result: Any) -> tuple[np.ndarray, ...]:
    return tuple(result) if isinstance(result, tuple) else (result,)


def _stream_all(name: str, inputs: tuple[np.ndarray, ...], **params: Any) -> tuple[Any, list[Any]]:
    stream = INDICATORS[name].stream(**params)
    return stream, [_outputs(stream.update(*bar)) for bar in zip(*(a.tolist() for a in inputs), strict=True)]


# --- length ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_input_no_longer_than_the_lookback_gives_only_nan_and_one_more_bar_gives_one_value(name: str) -> None:
    lookback = INDICATORS[name].stream().lookback
    bars = _walk(lookback + 1)
    short = _inputs(name, tuple(a[:lookback] for a in bars))
    for out in _outputs(INDICATORS[name].batch(*short)):
        assert len(out) == lookback
        assert np.isnan(out).all()
    stream, rows = _stream_all(name, short)
    assert not stream.ready
    assert all(math.isnan(v) for row in rows for v in row)
    for out in _outputs(INDICATORS[name].batch(*_inputs(name, bars))):
        assert np.flatnonzero(~np.isnan(out)).tolist() == [lookback]
    stream.update(*(a[lookback] for a in _inputs(name, bars)))
    assert stream.ready


@pytest.mark.parametrize("name", NAMES)
def test_empty_input_gives_empty_output(name: str) -> None:
    empty = tuple(np.array([]) for _ in INDICATORS[name].inputs)
    for out in _outputs(INDICATORS[name].batch(*empty)):
        assert out.shape == (0,)
        assert out.dtype == np.float64


@pytest.mark.parametrize("name", NAMES)
def test_all_nan_input_gives_all_nan(name: str) -> None:
    nan = tuple(np.full(60, np.nan) for _ in INDICATORS[name].inputs)
    for out in _outputs(INDICATORS[name].batch(*nan)):
        assert np.isnan(out).all()
    stream, _ = _stream_all(name, nan)
    assert not stream.ready


# --- flat series ----------------------------------------------------------------------------------------


def test_flat_series_reads_as_talib_reads_it() -> None:
    flat = np.full(80, 1.2345)
    upper, middle, lower = batch.BBANDS(flat)
    valid = ~np.isnan(middle)
    assert (upper[valid] == middle[valid]).all()  # zero variance: the bands collapse exactly
    assert (lower[valid] == middle[valid]).all()
    np.testing.assert_allclose(middle[valid], 1.2345, rtol=1e-15)
    rsi = batch.RSI(flat)
    assert (rsi[~np.isnan(rsi)] == 0.0).all()  # TA-Lib 0.8 answers 0 when nothing moved
    for fn in (batch.ATR, batch.TRANGE, batch.PLUS_DI, batch.MINUS_DI, batch.DX, batch.ADX):
        out = fn(flat, flat, flat)
        assert (out[~np.isnan(out)] == 0.0).all(), fn.__name__
    for out in batch.STOCH(flat, flat, flat):
        assert (out[~np.isnan(out)] == 0.0).all()
    for out in batch.MACD(flat):
        assert (np.abs(out[~np.isnan(out)]) < 1e-12).all()


@needs_talib
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("level", [0.0, 1.2345, 1e-12, 5e6])
def test_flat_series_matches_talib(name: str, level: float) -> None:
    flat = tuple(np.full(80, level) for _ in INDICATORS[name].inputs)
    ours = _outputs(INDICATORS[name].batch(*flat))
    theirs = _outputs(getattr(talib, name)(*flat))
    for mine, ref in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-9, equal_nan=True)


# --- NaN policy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_leading_nan_bars_are_skipped_and_the_lookback_starts_after_them(name: str) -> None:
    bars = _walk()
    holed = tuple(a.copy() for a in bars)
    holed[0][:3] = np.nan  # a NaN in one input is enough to skip the bar
    holed[2][3:5] = np.nan
    inputs, trimmed = _inputs(name, holed), _inputs(name, tuple(a[5:] for a in bars))
    if len(inputs) == 1:
        inputs = (np.concatenate([np.full(5, np.nan), bars[2][5:]]),)
    full = _outputs(INDICATORS[name].batch(*inputs))
    for out, ref in zip(full, _outputs(INDICATORS[name].batch(*trimmed)), strict=True):
        assert np.isnan(out[:5]).all()
        np.testing.assert_array_equal(out[5:], ref)
    _, rows = _stream_all(name, inputs)
    for index, out in enumerate(full):
        streamed = np.array([row[index] for row in rows])
        np.testing.assert_array_equal(np.isnan(streamed), np.isnan(out))
        np.testing.assert_allclose(streamed, out, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_nan_inside_a_price_series_follows_talibs_arithmetic() -> None:
    close = _walk()[2]
    close[100] = np.nan
    for out in (batch.SMA(close), batch.EMA(close), *batch.MACD(close), *batch.BBANDS(close)):
        assert np.isnan(out[100:]).all()  # running sums and recursions keep the NaN for good
    rsi = batch.RSI(close)
    assert (rsi[100:] == 0.0).all()  # TA-Lib 0.8: a NaN total tests as "nothing moved"
    wma = batch.WMA(close, 5)
    # The WMA sums are rebuilt from the window every 8 * period outputs (bars 43, 83, 123, ...): the first
    # rebuild after the NaN has left the window clears it.
    assert np.isnan(wma[100:123]).all()
    assert not np.isnan(wma[123:]).any()


def test_nan_high_inside_bars_follows_talibs_arithmetic() -> None:
    high, low, close = _walk()
    high[100] = np.nan
    assert np.flatnonzero(np.isnan(batch.TRANGE(high, low, close))).tolist() == [0, 100]
    assert np.isnan(batch.ATR(high, low, close)[100:]).all()
    for fn in (batch.PLUS_DI, batch.MINUS_DI):
        assert (fn(high, low, close)[100:] == 0.0).all()  # the smoothed TR is NaN: not positive
    for fn in (batch.DX, batch.ADX):
        out = fn(high, low, close)
        assert (out[100:] == out[99]).all()  # undefined DX: the last value stands


def test_nan_previous_close_is_ignored_by_the_true_range() -> None:
    high, low, close = _walk()
    close[100] = np.nan
    tr = batch.TRANGE(high, low, close)
    assert tr[101] == high[101] - low[101]
    assert np.flatnonzero(np.isnan(tr)).tolist() == [0]


SCENARIOS = {"leading": [0, 1, 2], "single": [100], "run": list(range(60, 70)), "last": [199]}


HOLED_INPUTS = [
    (name, which) for name in NAMES for which in ((2,) if INDICATORS[name].inputs == ("real",) else (0, 1, 2))
]


@needs_talib
@pytest.mark.parametrize(("name", "which"), HOLED_INPUTS)
@pytest.mark.parametrize("where", sorted(SCENARIOS))
def test_nan_handling_matches_talib(name: str, which: int, where: str) -> None:
    """`which` is the input holed: 0 high, 1 low, 2 close (the only input of a price indicator)."""
    bars = [a.copy() for a in _walk()]
    bars[which][SCENARIOS[where]] = np.nan
    inputs = _inputs(name, tuple(bars))
    params = {"timeperiod": 5} if name in {"WMA", "MA"} else {}
    ours = _outputs(INDICATORS[name].batch(*inputs, **params))
    theirs = _outputs(getattr(talib, name)(*inputs, **params))
    for mine, ref in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-9, equal_nan=True)


@needs_talib
def test_bbands_with_a_wma_middle_recovers_from_nan_sooner_than_talib_and_agrees_elsewhere() -> None:
    # Documented deviation (ADR 0013): TA-Lib's deviation stays NaN until its next periodic re-anchor,
    # ours as soon as the NaN has left the window.
    close = _walk(600)[2]
    close[200:210] = np.nan
    ours = batch.BBANDS(close, 5, 2.0, 2.0, 2)
    theirs = talib.BBANDS(close, 5, 2.0, 2.0, 2)
    for mine, ref in zip(ours, theirs, strict=True):
        assert (np.isnan(mine) <= np.isnan(ref)).all()
        assert np.isnan(ref[230:240]).all()
        assert not np.isnan(mine[243:]).any()  # the WMA's first rebuild after the hole is bar 243
        np.testing.assert_allclose(
            mine, np.where(np.isnan(ref), mine, ref), rtol=1e-9, atol=1e-9, equal_nan=True
        )


# --- parameters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: batch.SMA([1.0, 2.0], timeperiod=0), "timeperiod must be in [1, 100000]"),
        (lambda: batch.SMA([1.0, 2.0], timeperiod=100_001), "timeperiod must be in [1, 100000]"),
        (lambda: batch.SMA([1.0, 2.0], timeperiod=2.5), "timeperiod must be an integer"),
        (lambda: batch.EMA([1.0, 2.0], timeperiod=True), "timeperiod must be an integer"),
        (lambda: batch.RSI([1.0, 2.0], timeperiod=1), "timeperiod must be in [2, 100000]"),
        (lambda: batch.ADX([1.0], [1.0], [1.0], timeperiod=1), "timeperiod must be in [2, 100000]"),
        (lambda: batch.MACD([1.0], signalperiod=0), "signalperiod must be in [1, 100000]"),
        (lambda: batch.BBANDS([1.0], matype=3), "matype 3 (DEMA) is not supported"),
        (lambda: batch.BBANDS([1.0], nbdevup=1e38), "nbdevup must be in"),
        (lambda: batch.BBANDS([1.0], nbdevdn=math.nan), "nbdevdn must be in"),
        (lambda: batch.STOCH([1.0], [1.0], [1.0], slowd_matype=8), "slowd_matype 8 (T3) is not supported"),
        (lambda: batch.ATR([1.0, 2.0], [1.0], [1.0]), "same length"),
        (lambda: batch.SMA([[1.0, 2.0]]), "one-dimensional"),
        (lambda: batch.SMA(["a", "b"]), "must be numbers"),
        (lambda: streaming.STOCH(fastk_period=0), "fastk_period must be in [1, 100000]"),
        (lambda: streaming.MA(matype=-1), "matype -1 is not supported"),
    ],
)
def test_bad_parameters_are_rejected_with_a_clear_message(call: Any, message: str) -> None:
    with pytest.raises(BadInputError, match=re.escape(message)):
        call()


def test_macd_with_the_fast_period_above_the_slow_one_swaps_them_as_talib_does() -> None:
    close = _walk()[2]
    for swapped, straight in zip(batch.MACD(close, 26, 12, 9), batch.MACD(close, 12, 26, 9), strict=True):
        np.testing.assert_array_equal(swapped, straight)
    assert streaming.MACD(26, 12, 9).lookback == 33


def test_streams_accept_any_real_number_and_report_value_and_ready() -> None:
    stream = streaming.SMA(3)
    assert (math.isnan(stream.update(np.float32(1.0))), stream.ready) == (True, False)
    stream.update(2)
    assert stream.update(3.0) == 2.0
    assert (stream.value, stream.ready) == (2.0, True)
    macd = streaming.MACD()
    first = macd.update(1.0)
    assert first._fields == ("macd", "macdsignal", "macdhist")
    assert all(math.isnan(v) for v in first)


@needs_talib
@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_talibs(name: str) -> None:
    spec = INDICATORS[name]
    assert spec.defaults == dict(talib.abstract.Function(name).info["parameters"])
    stream = spec.stream()
    for key, value in spec.defaults.items():
        assert getattr(stream, key) == value


LOOKBACK_PARAMS: list[tuple[str, dict[str, Any]]] = [
    *((name, {}) for name in NAMES),
    ("SMA", {"timeperiod": 1}),
    ("EMA", {"timeperiod": 7}),
    ("MACD", {"fastperiod": 30, "slowperiod": 5, "signalperiod": 1}),
    ("BBANDS", {"timeperiod": 9, "matype": 2}),
    ("ATR", {"timeperiod": 1}),
    ("PLUS_DI", {"timeperiod": 1}),
    ("MINUS_DI", {"timeperiod": 3}),
    ("ADX", {"timeperiod": 2}),
    ("STOCH", {"fastk_period": 14, "slowk_period": 1, "slowd_period": 5, "slowd_matype": 1}),
]


@needs_talib
@pytest.mark.parametrize(("name", "params"), LOOKBACK_PARAMS)
def test_lookbacks_are_talibs(name: str, params: dict[str, Any]) -> None:
    function = talib.abstract.Function(name)
    function.set_parameters(params)
    assert INDICATORS[name].stream(**params).lookback == function.lookback


@pytest.mark.parametrize("kind", [streaming.SMA, streaming.EMA])
@pytest.mark.parametrize("period", [1, 2, 5, 30])
def test_the_shortened_ma_update_equals_the_generic_step_bit_for_bit(kind: Any, period: int) -> None:
    """SMA/EMA `update` skip `_step`/`_emit` once warm (strategies call them per tick): the values, `value`
    and `ready` must be those of the generic `RealIndicator.update`, NaN inputs and a reset included."""
    rng = np.random.default_rng(period)
    xs = list(1.1 + np.cumsum(rng.normal(0.0, 1e-3, 300)))
    xs[3] = xs[150] = math.nan  # a NaN in the lookback and one after it
    fast, generic = kind(period), kind(period)
    for i, x in enumerate(xs):
        if i == 200:
            fast.reset()
            generic.reset()
        got, want = fast.update(x), streaming.RealIndicator.update(generic, x)
        assert got == want or (math.isnan(got) and math.isnan(want)), (i, got, want)
        assert fast.ready == generic.ready
        assert fast.value == generic.value or (math.isnan(fast.value) and math.isnan(generic.value))
