"""Batch indicators over whole numpy series, with TA-Lib's names, parameters, defaults and conventions.

Every function returns float64 arrays as long as its input, NaN during the lookback, like `talib`. Leading
bars where any input is NaN are skipped and the lookback counts from the first bar where all inputs are
valid; a NaN after that flows through the same arithmetic TA-Lib uses (see docs/adr/0013-indicators.md).

Stages that are not recursive are vectorised, and exact: SMA and WMA replay TA-Lib's running sums with
cumulative sums over interleaved additions and subtractions, which round exactly as the running loop does.
Recursions (EMA, Wilder smoothing, ADX) run as tight loops over the step functions in `_kernels`, the same
ones the streaming classes call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from aitrading.common.errors import BadInputError
from aitrading.features.indicators import _batch_core as c
from aitrading.features.indicators import _kernels as k
from aitrading.features.indicators._kernels import FloatArray

__all__ = [
    "ADX",
    "ATR",
    "BBANDS",
    "DX",
    "EMA",
    "MA",
    "MACD",
    "MINUS_DI",
    "PLUS_DI",
    "RSI",
    "SMA",
    "STOCH",
    "TRANGE",
    "WMA",
]

# --- input handling -------------------------------------------------------------------------------------


def _series(indicator: str, name: str, values: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{indicator}: {name} must be numbers: {exc}") from None
    if arr.ndim != 1:
        raise BadInputError(f"{indicator}: {name} must be one-dimensional, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _hlc(indicator: str, high: ArrayLike, low: ArrayLike, close: ArrayLike) -> list[FloatArray]:
    arrays = [
        _series(indicator, "high", high),
        _series(indicator, "low", low),
        _series(indicator, "close", close),
    ]
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise BadInputError(f"{indicator}: high, low and close must have the same length")
    return arrays


def _first_valid(arrays: Sequence[FloatArray]) -> int:
    """Return the first index where every input is non-NaN (TA-Lib's begidx), or the length if none is."""
    valid = ~np.isnan(arrays[0])
    for arr in arrays[1:]:
        valid &= ~np.isnan(arr)
    hits = np.flatnonzero(valid)
    return int(hits[0]) if hits.size else len(arrays[0])


def _apply(
    arrays: Sequence[FloatArray], lookback: int, outputs: int, core: Callable[..., tuple[FloatArray, ...]]
) -> tuple[FloatArray, ...]:
    n = len(arrays[0])
    result = tuple(np.full(n, np.nan) for _ in range(outputs))
    begin = _first_valid(arrays)
    if n - begin > lookback:
        for out, values in zip(result, core(*(arr[begin:] for arr in arrays)), strict=True):
            out[begin:] = values
    return result


# --- moving averages ------------------------------------------------------------------------------------


def SMA(real: ArrayLike, timeperiod: int = 30) -> FloatArray:
    """Simple moving average."""
    period = k.check_period("SMA", "timeperiod", timeperiod, 1)
    x = _series("SMA", "real", real)
    return _apply([x], k.ma_lookback(period), 1, lambda v: (c.sma_core(v, period),))[0]


def EMA(real: ArrayLike, timeperiod: int = 30) -> FloatArray:
    """Exponential moving average, seeded with the SMA of the first `timeperiod` values."""
    period = k.check_period("EMA", "timeperiod", timeperiod, 1)
    x = _series("EMA", "real", real)
    return _apply([x], k.ma_lookback(period), 1, lambda v: (c.ema_core(v, period),))[0]


def WMA(real: ArrayLike, timeperiod: int = 30) -> FloatArray:
    """Linearly weighted moving average (weights 1..timeperiod, newest heaviest)."""
    period = k.check_period("WMA", "timeperiod", timeperiod, 1)
    x = _series("WMA", "real", real)
    return _apply([x], k.ma_lookback(period), 1, lambda v: (c.wma_core(v, period),))[0]


def MA(real: ArrayLike, timeperiod: int = 30, matype: int = 0) -> FloatArray:
    """Moving average of TA-Lib type `matype` (0 SMA, 1 EMA, 2 WMA)."""
    period = k.check_period("MA", "timeperiod", timeperiod, 1)
    kind = k.check_matype("MA", "matype", matype)
    x = _series("MA", "real", real)
    return _apply([x], k.ma_lookback(period), 1, lambda v: (c.ma_core(v, period, kind),))[0]


# --- momentum -------------------------------------------------------------------------------------------


def RSI(real: ArrayLike, timeperiod: int = 14) -> FloatArray:
    """Wilder's relative strength index."""
    period = k.check_period("RSI", "timeperiod", timeperiod, 2)
    x = _series("RSI", "real", real)

    def core(v: FloatArray) -> tuple[FloatArray]:
        out = np.full(len(v), np.nan)
        deltas = np.diff(v).tolist()
        accumulate, smooth, value = k.rsi_accumulate, k.rsi_smooth, k.rsi_value
        inv, less_one = 1.0 / period, float(period - 1)
        gain = loss = 0.0
        for delta in deltas[:period]:
            gain, loss = accumulate(gain, loss, delta)
        gain, loss = gain * inv, loss * inv
        values = [value(gain, loss)]
        append = values.append
        for delta in deltas[period:]:
            gain, loss = smooth(gain, loss, delta, less_one, inv)
            append(value(gain, loss))
        out[period:] = values
        return (out,)

    return _apply([x], period, 1, core)[0]


def MACD(
    real: ArrayLike, fastperiod: int = 12, slowperiod: int = 26, signalperiod: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return (macd, macdsignal, macdhist); the fast EMA's seed window ends where the slow one's does."""
    fast = k.check_period("MACD", "fastperiod", fastperiod, 2)
    slow = k.check_period("MACD", "slowperiod", slowperiod, 2)
    signal = k.check_period("MACD", "signalperiod", signalperiod, 1)
    fast, slow = min(fast, slow), max(fast, slow)
    x = _series("MACD", "real", real)

    def core(v: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        n = len(v)
        line = np.full(n, np.nan)
        line[slow - 1 :] = c.ema_core(v[slow - fast :], fast)[fast - 1 :] - c.ema_core(v, slow)[slow - 1 :]
        signal_line = np.full(n, np.nan)
        signal_line[slow - 1 :] = c.ema_core(line[slow - 1 :], signal)
        lookback = k.macd_lookback(fast, slow, signal)
        line[:lookback] = np.nan  # TA-Lib publishes the line only once the signal exists
        return line, signal_line, line - signal_line

    macd, macdsignal, macdhist = _apply([x], k.macd_lookback(fast, slow, signal), 3, core)
    return macd, macdsignal, macdhist


# --- volatility -----------------------------------------------------------------------------------------


def BBANDS(
    real: ArrayLike, timeperiod: int = 20, nbdevup: float = 2.0, nbdevdn: float = 2.0, matype: int = 0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return (upperband, middleband, lowerband): an MA of type `matype` +/- nbdev population std devs."""
    period = k.check_period("BBANDS", "timeperiod", timeperiod, 2)
    up = k.check_nbdev("BBANDS", "nbdevup", nbdevup)
    dn = k.check_nbdev("BBANDS", "nbdevdn", nbdevdn)
    kind = k.check_matype("BBANDS", "matype", matype)
    x = _series("BBANDS", "real", real)

    def core(v: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        return k.bollinger_bands(c.ma_core(v, period, kind), c.rolling_std(v, period), up, dn)

    upper, middle, lower = _apply([x], period - 1, 3, core)
    return upper, middle, lower


def TRANGE(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> FloatArray:
    """True range: the largest of high - low and the distances from the previous close."""
    hi, lo, cl = _hlc("TRANGE", high, low, close)

    def core(hh: FloatArray, ll: FloatArray, cc: FloatArray) -> tuple[FloatArray]:
        out = np.full(len(hh), np.nan)
        out[1:] = k.true_range_array(hh[1:], ll[1:], cc[:-1])
        return (out,)

    return _apply([hi, lo, cl], 1, 1, core)[0]


def ATR(high: ArrayLike, low: ArrayLike, close: ArrayLike, timeperiod: int = 14) -> FloatArray:
    """Wilder's average true range, seeded with the mean of the first `timeperiod` true ranges."""
    period = k.check_period("ATR", "timeperiod", timeperiod, 1)
    hi, lo, cl = _hlc("ATR", high, low, close)

    def core(hh: FloatArray, ll: FloatArray, cc: FloatArray) -> tuple[FloatArray]:
        out = np.full(len(hh), np.nan)
        tr = k.true_range_array(hh[1:], ll[1:], cc[:-1])
        alpha, beta = k.wilder_atr_coefficients(period)
        step = k.wilder_atr_step
        prev = c.sequential_sum(tr[:period]) / period
        values = [prev]
        append = values.append
        for value in tr[period:].tolist():
            prev = step(prev, value, alpha, beta)
            append(prev)
        out[period:] = values
        return (out,)

    return _apply([hi, lo, cl], period, 1, core)[0]


# --- directional movement -------------------------------------------------------------------------------


def _di(
    indicator: str, high: ArrayLike, low: ArrayLike, close: ArrayLike, timeperiod: int, *, plus: bool
) -> FloatArray:
    period = k.check_period(indicator, "timeperiod", timeperiod, 1)
    hi, lo, cl = _hlc(indicator, high, low, close)

    def core(hh: FloatArray, ll: FloatArray, cc: FloatArray) -> tuple[FloatArray]:
        out = np.full(len(hh), np.nan)
        if period == 1:
            dms = k.directional_movement_array(hh[1:] - hh[:-1], ll[:-1] - ll[1:])
            tr = k.true_range_array(hh[1:], ll[1:], cc[:-1])
            out[1:] = k.unsmoothed_di_array(dms[0] if plus else dms[1], tr)
            return (out,)
        plus_s, minus_s, tr_s = c.wilder_sums(hh, ll, cc, period)
        out[period:] = k.directional_index_array(plus_s if plus else minus_s, tr_s)
        return (out,)

    return _apply([hi, lo, cl], period, 1, core)[0]


def PLUS_DI(high: ArrayLike, low: ArrayLike, close: ArrayLike, timeperiod: int = 14) -> FloatArray:
    """Plus directional indicator, +DI."""
    return _di("PLUS_DI", high, low, close, timeperiod, plus=True)


def MINUS_DI(high: ArrayLike, low: ArrayLike, close: ArrayLike, timeperiod: int = 14) -> FloatArray:
    """Minus directional indicator, -DI."""
    return _di("MINUS_DI", high, low, close, timeperiod, plus=False)


def DX(high: ArrayLike, low: ArrayLike, close: ArrayLike, timeperiod: int = 14) -> FloatArray:
    """Directional movement index; a bar where DX is undefined repeats the previous value (0 at first)."""
    period = k.check_period("DX", "timeperiod", timeperiod, 2)
    hi, lo, cl = _hlc("DX", high, low, close)

    def core(hh: FloatArray, ll: FloatArray, cc: FloatArray) -> tuple[FloatArray]:
        out = np.full(len(hh), np.nan)
        values, defined = k.dx_array(*c.wilder_sums(hh, ll, cc, period))
        last = np.maximum.accumulate(np.where(defined, np.arange(len(values)), -1))
        out[period:] = np.where(last >= 0, values[np.maximum(last, 0)], 0.0)
        return (out,)

    return _apply([hi, lo, cl], period, 1, core)[0]


def ADX(high: ArrayLike, low: ArrayLike, close: ArrayLike, timeperiod: int = 14) -> FloatArray:
    """Average directional movement index: the mean of the first `timeperiod` DX, then Wilder smoothing."""
    period = k.check_period("ADX", "timeperiod", timeperiod, 2)
    hi, lo, cl = _hlc("ADX", high, low, close)

    def core(hh: FloatArray, ll: FloatArray, cc: FloatArray) -> tuple[FloatArray]:
        out = np.full(len(hh), np.nan)
        values, defined = k.dx_array(*c.wilder_sums(hh, ll, cc, period))
        total = 0.0
        for value, ok in zip(values[:period].tolist(), defined[:period].tolist(), strict=True):
            if ok:
                total += value
        prev = total / period
        result = [prev]
        append, step, inv = result.append, k.adx_step, 1.0 / period
        for value, ok in zip(values[period:].tolist(), defined[period:].tolist(), strict=True):
            if ok:
                prev = step(prev, value, inv)
            append(prev)
        out[2 * period - 1 :] = result
        return (out,)

    return _apply([hi, lo, cl], 2 * period - 1, 1, core)[0]


# --- stochastic -----------------------------------------------------------------------------------------


def STOCH(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    fastk_period: int = 5,
    slowk_period: int = 3,
    slowk_matype: int = 0,
    slowd_period: int = 3,
    slowd_matype: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """Return (slowk, slowd): Fast-K smoothed by an MA (%K slowing), then %D as an MA of %K."""
    fk = k.check_period("STOCH", "fastk_period", fastk_period, 1)
    sk = k.check_period("STOCH", "slowk_period", slowk_period, 1)
    sd = k.check_period("STOCH", "slowd_period", slowd_period, 1)
    sk_type = k.check_matype("STOCH", "slowk_matype", slowk_matype)
    sd_type = k.check_matype("STOCH", "slowd_matype", slowd_matype)
    hi, lo, cl = _hlc("STOCH", high, low, close)
    lookback = k.stoch_lookback(fk, sk, sd)

    def core(hh: FloatArray, ll: FloatArray, cc: FloatArray) -> tuple[FloatArray, FloatArray]:
        slowk_out, slowd_out = np.full(len(hh), np.nan), np.full(len(hh), np.nan)
        highest, lowest = c.window_extremes(hh, ll, fk)
        fastk = k.stoch_fastk_array(cc[fk - 1 :], highest, lowest)
        slowk = c.ma_core(fastk, sk, sk_type)[k.ma_lookback(sk) :]
        slowd = c.ma_core(slowk, sd, sd_type)
        slowk_out[lookback:] = slowk[k.ma_lookback(sd) :]
        slowd_out[lookback:] = slowd[k.ma_lookback(sd) :]
        return slowk_out, slowd_out

    slowk, slowd = _apply([hi, lo, cl], lookback, 2, core)
    return slowk, slowd
