"""Array machinery behind `batch`: moving-average cores, window deviations and extremes, Wilder sums.

Each core takes a series whose first value is valid and returns an array of the same length, NaN during
the lookback. The arithmetic mirrors the streams (`_rolling`, `_kernels`) operation for operation.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from aitrading.features.indicators import _kernels as k
from aitrading.features.indicators._kernels import FloatArray, MAType
from aitrading.features.indicators._rolling import (
    WMA_RESEED_BARS_PER_PERIOD,
    RollingExtreme,
    RollingStd,
    wma_divider,
)

__all__ = [
    "ema_core",
    "ma_core",
    "rolling_std",
    "sequential_sum",
    "sliding_extreme",
    "sma_core",
    "wilder_sums",
    "window_extremes",
    "wma_core",
]

# The deviation of each window is computed in two passes (O(period) per window) up to this period; longer
# windows run the streams' O(1) re-centred sums instead. Chunks bound the temporary memory.
_TWO_PASS_MAX_PERIOD = 128  # measured crossover: two passes cost more than the O(1) loop beyond it
_STD_CHUNK_VALUES = 1 << 22


def sequential_sum(values: FloatArray) -> float:
    """Sum left to right from 0.0, as TA-Lib seeds its averages (and as the streams accumulate)."""
    total = 0.0
    for value in values.tolist():
        total += value
    return total


def sma_core(x: FloatArray, period: int) -> FloatArray:
    n = len(x)
    out = np.full(n, np.nan)
    if n < period:
        return out
    m = n - period + 1
    # TA-Lib's loop: total += x[i]; read total; total -= x[i - period + 1]. One cumulative sum over the
    # additions and subtractions in that order performs exactly those roundings.
    steps = np.empty(period - 1 + 2 * m)
    steps[: period - 1] = x[: period - 1]
    steps[period - 1 :: 2] = x[period - 1 :]
    steps[period::2] = -x[:m]
    out[period - 1 :] = np.cumsum(steps)[period - 1 :: 2] / period
    return out


def ema_core(x: FloatArray, period: int) -> FloatArray:
    n = len(x)
    out = np.full(n, np.nan)
    if n < period:
        return out
    if period == 1:
        return x.copy()
    step, kk = k.ema_step, k.ema_k(period)
    prev = sequential_sum(x[:period]) / period
    values = [prev]
    append = values.append
    for value in x[period:].tolist():
        prev = step(prev, value, kk)
        append(prev)
    out[period - 1 :] = values
    return out


def wma_core(x: FloatArray, period: int) -> FloatArray:
    n = len(x)
    out = np.full(n, np.nan)
    if n < period:
        return out
    if period == 1:
        return x.copy()
    m = n - period + 1
    reseed_every = WMA_RESEED_BARS_PER_PERIOD * period
    # TA-Lib keeps two running sums and rebuilds them from the window on every `reseed_every`-th output;
    # between rebuilds each sum is a running recursion replayed here by cumulative sums, segment by segment.
    starts = np.concatenate(([0], np.arange(reseed_every - 1, m, reseed_every)))
    lengths = np.diff(np.append(starts, m))
    longest = int(lengths.max())
    start_bar = starts + period - 1
    prime = x[: period - 1]
    plain0 = np.empty(len(starts))
    weighted0 = np.empty(len(starts))
    plain0[0] = sequential_sum(prime) + x[period - 1]
    weighted0[0] = sequential_sum(prime * np.arange(1.0, period)) + x[period - 1] * period
    if len(starts) > 1:
        windows = sliding_window_view(x, period)[starts[1:]]
        plain0[1:] = np.cumsum(windows, axis=1)[:, -1]
        weighted0[1:] = np.cumsum(windows * np.arange(1.0, period + 1), axis=1)[:, -1]
    offset = np.arange(1, longest)
    bars = start_bar[:, None] + offset[None, :]
    inside = offset[None, :] < lengths[:, None]
    bars = np.where(inside, bars, period - 1)  # any in-range index; masked out below
    adds = np.where(inside, x[bars], 0.0)
    subs = np.where(inside, -x[np.maximum(bars - period, 0)], 0.0)
    plain_steps = np.empty((len(starts), 2 * longest - 1))
    plain_steps[:, 0] = plain0
    plain_steps[:, 1::2] = adds
    plain_steps[:, 2::2] = subs
    plain = np.cumsum(plain_steps, axis=1)[:, 0::2]
    weighted_steps = np.empty_like(plain_steps)
    weighted_steps[:, 0] = weighted0
    weighted_steps[:, 1::2] = np.where(inside, -plain[:, :-1], 0.0)
    weighted_steps[:, 2::2] = adds * float(period)
    weighted = np.cumsum(weighted_steps, axis=1)[:, 0::2]
    in_range = np.arange(longest)[None, :] < lengths[:, None]
    out[period - 1 :] = weighted[in_range] / wma_divider(period)
    return out


def ma_core(x: FloatArray, period: int, matype: MAType) -> FloatArray:
    if matype is MAType.EMA:
        return ema_core(x, period)
    if matype is MAType.WMA:
        return wma_core(x, period)
    return sma_core(x, period)


def rolling_std(x: FloatArray, period: int) -> FloatArray:
    """Population standard deviation of each full window."""
    out = np.full(len(x), np.nan)
    if period > _TWO_PASS_MAX_PERIOD:
        rolling = RollingStd(period)
        stds = [rolling.push(value) for value in x.tolist()]
        out[period - 1 :] = stds[period - 1 :]
        return out
    windows = sliding_window_view(x, period)
    result = np.empty(len(windows))
    inv = 1.0 / period
    rows = max(1, _STD_CHUNK_VALUES // period)
    with np.errstate(invalid="ignore", over="ignore"):
        for first in range(0, len(windows), rows):
            chunk = windows[first : first + rows]
            dev = chunk - chunk.mean(axis=1, keepdims=True)  # deviations from the window's own mean
            result[first : first + len(chunk)] = k.std_from_shifted_sums_array(
                dev.sum(axis=1), (dev * dev).sum(axis=1), inv
            )
    out[period - 1 :] = result
    return out


def wilder_sums(
    hi: FloatArray, lo: FloatArray, cl: FloatArray, period: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return smoothed +DM, -DM and TR for bars period..n-1 (period - 1 bars summed, then Wilder steps)."""
    plus_dm, minus_dm = k.directional_movement_array(hi[1:] - hi[:-1], lo[:-1] - lo[1:])
    tr = k.true_range_array(hi[1:], lo[1:], cl[:-1])
    seed = period - 1
    plus_s, minus_s, tr_s = (sequential_sum(a[:seed]) for a in (plus_dm, minus_dm, tr))
    step, inv = k.wilder_sum_step, 1.0 / period
    plus_out: list[float] = []
    minus_out: list[float] = []
    tr_out: list[float] = []
    rows = zip(plus_dm[seed:].tolist(), minus_dm[seed:].tolist(), tr[seed:].tolist(), strict=True)
    for p_dm, m_dm, t_r in rows:
        plus_s = step(plus_s, p_dm, inv)
        minus_s = step(minus_s, m_dm, inv)
        tr_s = step(tr_s, t_r, inv)
        plus_out.append(plus_s)
        minus_out.append(minus_s)
        tr_out.append(tr_s)
    return np.array(plus_out), np.array(minus_out), np.array(tr_out)


def sliding_extreme(x: FloatArray, period: int, *, highest: bool) -> FloatArray:
    """Max (or min) of each full window in O(n) (van Herk / Gil-Werman: block prefix and suffix extremes)."""
    if period == 1:
        return x.copy()
    ufunc = np.maximum if highest else np.minimum
    n, m = len(x), len(x) - period + 1
    blocks = -(-n // period)
    padded = np.concatenate([x, np.full(blocks * period - n, -np.inf if highest else np.inf)])
    padded = padded.reshape(blocks, period)
    prefix = ufunc.accumulate(padded, axis=1).ravel()
    suffix = ufunc.accumulate(padded[:, ::-1], axis=1)[:, ::-1].ravel()
    # The window starting at i covers the rest of i's block (suffix) and the start of the next (prefix).
    return ufunc(suffix[:m], prefix[period - 1 : period - 1 + m])


def window_extremes(hi: FloatArray, lo: FloatArray, period: int) -> tuple[FloatArray, FloatArray]:
    """Highest high and lowest low of each full window, as TA-Lib tracks them."""
    if not (np.isnan(hi).any() or np.isnan(lo).any()):
        # Without NaN, TA-Lib's tracked extremes are exactly the window's max and min.
        return sliding_extreme(hi, period, highest=True), sliding_extreme(lo, period, highest=False)
    highest, lowest = RollingExtreme(period, highest=True), RollingExtreme(period, highest=False)
    highs = [highest.push(value) for value in hi.tolist()][period - 1 :]
    lows = [lowest.push(value) for value in lo.tolist()][period - 1 :]
    return np.array(highs, dtype=np.float64), np.array(lows, dtype=np.float64)
