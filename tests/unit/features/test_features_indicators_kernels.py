"""The shared maths: scalar and array forms agree bit for bit, and the rolling windows are right."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aitrading.features.indicators import _batch_core, batch
from aitrading.features.indicators import _kernels as k
from aitrading.features.indicators._rolling import RollingExtreme, RollingStd, WeightedSums, wma_divider

EPS = np.finfo(np.float64).eps
# Zeros of both signs, the smallest and largest magnitudes, near-ties, infinities and NaN.
AWKWARD = [
    0.0,
    -0.0,
    5e-324,
    1e-15,
    1.0,
    1.0 + EPS,
    1.0 - EPS / 2,
    -1.0,
    100.0,
    1e300,
    math.inf,
    -math.inf,
    math.nan,
]


def _same(scalar: float, array_value: float) -> bool:
    """Bit-identical up to the NaN payload (the sign of zero counts)."""
    if math.isnan(scalar) or math.isnan(array_value):
        return math.isnan(scalar) and math.isnan(array_value)
    return scalar == array_value and math.copysign(1.0, scalar) == math.copysign(1.0, array_value)


def _columns(count: int) -> list[np.ndarray]:
    rows = list(itertools.product(AWKWARD, repeat=count))
    return [np.array([row[i] for row in rows]) for i in range(count)]


def test_true_range_array_is_the_scalar_kernel_bit_for_bit() -> None:
    high, low, prev_close = _columns(3)
    with np.errstate(invalid="ignore", over="ignore"):
        got = k.true_range_array(high, low, prev_close)
        for i in range(len(high)):
            assert _same(k.true_range(high[i], low[i], prev_close[i]), got[i]), (
                high[i],
                low[i],
                prev_close[i],
            )


def test_true_range_ignores_a_nan_previous_close_but_not_a_nan_high() -> None:
    assert k.true_range(2.0, 1.0, math.nan) == 1.0
    assert math.isnan(k.true_range(math.nan, 1.0, 1.5))
    assert k.true_range(2.0, 1.0, 0.5) == 1.5


def test_directional_movement_array_is_the_scalar_kernel_bit_for_bit() -> None:
    plus, minus = _columns(2)
    with np.errstate(invalid="ignore", over="ignore"):
        got_plus, got_minus = k.directional_movement_array(plus, minus)
        for i in range(len(plus)):
            want = k.directional_movement(plus[i], minus[i])
            assert _same(want[0], got_plus[i])
            assert _same(want[1], got_minus[i])


def test_directional_movement_keeps_only_the_larger_positive_move_and_nothing_on_a_tie() -> None:
    assert k.directional_movement(3.0, 1.0) == (3.0, 0.0)
    assert k.directional_movement(1.0, 3.0) == (0.0, 3.0)
    assert k.directional_movement(2.0, 2.0) == (0.0, 0.0)
    assert k.directional_movement(-1.0, -2.0) == (0.0, 0.0)


def test_directional_index_forms_are_bit_identical() -> None:
    dm, tr = _columns(2)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        smoothed = k.directional_index_array(dm, tr)
        unsmoothed = k.unsmoothed_di_array(dm, tr)
        for i in range(len(dm)):
            assert _same(k.directional_index(dm[i], tr[i]), smoothed[i])
            assert _same(k.unsmoothed_di(dm[i], tr[i]), unsmoothed[i])


def test_dx_array_is_the_scalar_kernel_with_the_same_undefined_bars() -> None:
    plus, minus, tr = _columns(3)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        values, defined = k.dx_array(plus, minus, tr)
        for i in range(len(plus)):
            want = k.dx_value(plus[i], minus[i], tr[i])
            assert defined[i] == (want is not None)
            if want is not None:
                assert _same(want, values[i])


def test_stoch_fastk_array_is_the_scalar_kernel_bit_for_bit() -> None:
    close, highest, lowest = _columns(3)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        got = k.stoch_fastk_array(close, highest, lowest)
        for i in range(len(close)):
            assert _same(k.stoch_fastk(close[i], highest[i], lowest[i]), got[i])


def test_stoch_fastk_reads_zero_for_a_window_flat_to_machine_precision_at_any_price_scale() -> None:
    assert k.stoch_fastk(1.0, 1.0 + EPS, 1.0) == 0.0
    assert k.stoch_fastk(1e-15, 1.5e-15, 1e-15) == 0.0  # a real range at a tiny scale is not flat
    assert k.stoch_fastk(1.25e-15, 1.5e-15, 1e-15) == 50.0


def test_std_from_shifted_sums_forms_are_bit_identical() -> None:
    sum_dev, sum_sq = _columns(2)
    with np.errstate(invalid="ignore", over="ignore"):
        got = k.std_from_shifted_sums_array(sum_dev, sum_sq, 0.2)
        for i in range(len(sum_dev)):
            assert _same(k.std_from_shifted_sums(sum_dev[i], sum_sq[i], 0.2), got[i])


def test_std_of_a_flat_window_is_exactly_zero_and_rounding_noise_is_floored() -> None:
    assert k.std_from_shifted_sums(0.0, 0.0, 0.05) == 0.0
    assert k.std_from_shifted_sums(3.0, 0.45 + 1e-17, 1 / 20) == 0.0  # 20 deviations of 0.15: noise only
    assert math.isclose(k.std_from_shifted_sums(0.0, 4.0, 0.25), 1.0)


def _talib_tracked_extreme(values: list[float], period: int, *, highest: bool) -> list[float]:
    """TA-Lib's STOCH tracking loop, spelled out: rescan from the oldest bar when the extreme expires."""
    out: list[float] = []
    idx, ext = -1, 0.0
    for today in range(period - 1, len(values)):
        trailing = today - period + 1
        value = values[today]
        if idx < trailing:
            idx, ext = trailing, values[trailing]
            for i in range(trailing + 1, today + 1):
                if (values[i] > ext) if highest else (values[i] < ext):
                    idx, ext = i, values[i]
        elif (value >= ext) if highest else (value <= ext):
            idx, ext = today, value
        out.append(ext)
    return out


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(st.integers(0, 6).map(float), st.just(math.nan)), max_size=80),
    period=st.integers(1, 9),
    highest=st.booleans(),
)
def test_rolling_extreme_reproduces_talibs_tracking_including_ties_and_nan(
    values: list[float], period: int, highest: bool
) -> None:
    tracker = RollingExtreme(period, highest=highest)
    got = [tracker.push(v) for v in values][period - 1 :]
    want = _talib_tracked_extreme(values, period, highest=highest)
    assert len(got) == len(want)
    assert all(_same(a, b) for a, b in zip(got, want, strict=True) if a is not None)


def test_rolling_extreme_keeps_at_most_one_window_of_candidates() -> None:
    tracker = RollingExtreme(14, highest=True)
    for value in np.linspace(100.0, 0.0, 5000).tolist():  # falling highs: the extreme expires every bar
        tracker.push(value)
        assert len(tracker._mono) <= 14


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float64, st.integers(30, 400), elements=st.floats(-1e3, 1e3, allow_nan=False)),
    period=st.integers(2, 30),
    spike=st.floats(1e4, 1e8),
    trend=st.floats(-50.0, 50.0),
)
def test_rolling_std_matches_the_two_pass_deviation_through_trends_and_spikes(
    values: np.ndarray, period: int, spike: float, trend: float
) -> None:
    series = values + trend * np.arange(len(values))
    series[len(series) // 2] += spike
    rolling = RollingStd(period)
    got = np.array([np.nan if (s := rolling.push(v)) is None else s for v in series.tolist()])
    windows = np.lib.stride_tricks.sliding_window_view(series, period)
    want = windows.std(axis=1)
    assert np.isnan(got[: period - 1]).all()
    np.testing.assert_allclose(got[period - 1 :], want, rtol=1e-9, atol=1e-9 * np.abs(series).max())


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e6, 1e6, allow_nan=False)),
    period=st.integers(1, 40),
    highest=st.booleans(),
)
def test_sliding_extreme_is_the_max_or_min_of_each_window(
    values: np.ndarray, period: int, highest: bool
) -> None:
    if period > len(values):
        period = len(values)
    windows = np.lib.stride_tricks.sliding_window_view(values, period)
    want = windows.max(axis=1) if highest else windows.min(axis=1)
    np.testing.assert_array_equal(_batch_core.sliding_extreme(values, period, highest=highest), want)


def test_wma_running_sums_do_not_drift_over_a_long_series_with_an_outlier() -> None:
    rng = np.random.default_rng(255)
    series = 1.1 + np.cumsum(rng.normal(0.0, 1e-4, 200_000))
    series[1000] *= 1000.0  # a bad print that leaves the window long before the end
    period = 30
    exact = np.convolve(series, np.arange(period, 0, -1.0), "valid") / wma_divider(period)
    sums = WeightedSums(period)
    streamed = np.array([w for v in series.tolist() if (w := sums.push(v)) is not None]) / wma_divider(period)
    assert np.abs(streamed - exact)[-1000:].max() < 1e-12
    np.testing.assert_array_equal(batch.WMA(series, period)[period - 1 :], streamed)
