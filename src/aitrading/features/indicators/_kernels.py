"""The maths of every indicator, written once and used by both the batch functions and the streaming classes.

Each recursion is a scalar step function here; the batch loops and the streaming `update` methods call the
same functions, so the two paths perform the same floating-point operations in the same order. Stages that
are not recursive (true range, directional movement, Fast-K, the variance of a window, Bollinger bands) have
a scalar form for streaming and an array form for batch side by side; the kernel tests check that each pair
agrees bit for bit, on purpose-built inputs with ties, zeros, NaN and infinities.

Conventions follow TA-Lib 0.8 (the version pinned by the tests); see docs/adr/0013-indicators.md.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from aitrading.common.errors import BadInputError

__all__ = [
    "DX_SUM_ZERO_BAND",
    "MAX_NBDEV",
    "MAX_PERIOD",
    "STOCH_FLAT_BAND",
    "VARIANCE_FLOOR",
    "FloatArray",
    "MAType",
    "adx_step",
    "bollinger_bands",
    "check_matype",
    "check_nbdev",
    "check_period",
    "directional_index",
    "directional_index_array",
    "directional_movement",
    "directional_movement_array",
    "dx_array",
    "dx_value",
    "ema_k",
    "ema_step",
    "ma_lookback",
    "macd_lookback",
    "rsi_accumulate",
    "rsi_smooth",
    "rsi_value",
    "std_from_shifted_sums",
    "std_from_shifted_sums_array",
    "stoch_fastk",
    "stoch_fastk_array",
    "stoch_lookback",
    "true_range",
    "true_range_array",
    "unsmoothed_di",
    "unsmoothed_di_array",
    "wilder_atr_coefficients",
    "wilder_atr_step",
    "wilder_sum_step",
]

FloatArray = NDArray[np.float64]
_T = TypeVar("_T", float, FloatArray)

# TA-Lib's parameter ranges: periods up to 100000, deviations within +/-3e37 (TA_REAL_MIN/MAX).
MAX_PERIOD = 100_000
MAX_NBDEV = 3.0e37
# DX treats +DI + -DI as zero inside this fixed band (TA_IS_ZERO with TA-Lib 0.8's TA_EPSILON). The DIs are
# ratios, so a fixed band is scale-free there.
DX_SUM_ZERO_BAND = 1e-14
# Fast-K is 0 when the window's range is within this fraction of |highest| + |lowest| (TA_IS_ZERO_SCALED):
# a machine-flat window then reads 0 instead of dividing rounding noise into [0, 100].
STOCH_FLAT_BAND = 1e-14
# A variance below this fraction of the mean squared deviation from the shift is rounding noise: it is 0.
VARIANCE_FLOOR = 1e-12


class MAType(IntEnum):
    """TA-Lib's moving-average type codes (`matype`), limited to the three implemented here."""

    SMA = 0
    EMA = 1
    WMA = 2


_TALIB_MA_NAMES = {3: "DEMA", 4: "TEMA", 5: "TRIMA", 6: "KAMA", 7: "MAMA", 8: "T3"}


def check_period(indicator: str, name: str, value: int, minimum: int) -> int:
    """Return `value` if it is an integer period TA-Lib accepts, else raise `BadInputError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BadInputError(f"{indicator}: {name} must be an integer, got {value!r}")
    if not minimum <= value <= MAX_PERIOD:
        raise BadInputError(f"{indicator}: {name} must be in [{minimum}, {MAX_PERIOD}], got {value}")
    return int(value)


def check_matype(indicator: str, name: str, value: int) -> MAType:
    """Return the `MAType` for a TA-Lib `matype` code, or raise `BadInputError` naming what is supported."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BadInputError(f"{indicator}: {name} must be an integer MA type, got {value!r}")
    try:
        return MAType(int(value))
    except ValueError:
        known = _TALIB_MA_NAMES.get(int(value))
        what = f"{value} ({known})" if known else str(value)
        raise BadInputError(
            f"{indicator}: {name} {what} is not supported; use 0 (SMA), 1 (EMA) or 2 (WMA)"
        ) from None


def check_nbdev(indicator: str, name: str, value: float) -> float:
    """Return `value` as a float if it is a finite deviation multiplier TA-Lib accepts."""
    try:
        nbdev = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{indicator}: {name} must be a number, got {value!r}") from None
    if not -MAX_NBDEV <= nbdev <= MAX_NBDEV:
        raise BadInputError(f"{indicator}: {name} must be in [-{MAX_NBDEV:g}, {MAX_NBDEV:g}], got {value!r}")
    return nbdev


# --- lookbacks (bars consumed before the first output, counted from the first all-valid bar) ------------


def ma_lookback(period: int) -> int:
    """SMA, EMA and WMA all need `period` values; a period of 1 copies its input."""
    return period - 1


def macd_lookback(fastperiod: int, slowperiod: int, signalperiod: int) -> int:
    """The slow EMA's lookback plus the signal EMA's (TA-Lib swaps fast and slow if given backwards)."""
    return max(fastperiod, slowperiod) - 1 + signalperiod - 1


def stoch_lookback(fastk_period: int, slowk_period: int, slowd_period: int) -> int:
    """Fast-K's window, then the %K and %D smoothings; both outputs start here."""
    return fastk_period - 1 + ma_lookback(slowk_period) + ma_lookback(slowd_period)


# --- moving averages ------------------------------------------------------------------------------------


def ema_k(period: int) -> float:
    """Return the EMA smoothing factor 2 / (period + 1)."""
    return 2.0 / (period + 1)


def ema_step(prev: float, x: float, k: float) -> float:
    """Advance an EMA by one value (TA-Lib fuses this into one FMA; see the ADR)."""
    return (x - prev) * k + prev


# --- RSI (Wilder) ---------------------------------------------------------------------------------------


def rsi_accumulate(gain: float, loss: float, delta: float) -> tuple[float, float]:
    """Add one price change to the gain and loss totals, without a branch on its sign."""
    up = delta if delta > 0.0 else 0.0
    return gain + up, loss + (up - delta)


def rsi_smooth(
    gain: float, loss: float, delta: float, period_less_one: float, inv_period: float
) -> tuple[float, float]:
    """Advance Wilder's average gain and loss by one change: (avg * (n - 1) + change) / n."""
    gain, loss = rsi_accumulate(gain * period_less_one, loss * period_less_one, delta)
    return gain * inv_period, loss * inv_period


def rsi_value(gain: float, loss: float) -> float:
    """Return 100 * gain / (gain + loss), or 0 when nothing moved (and after a NaN, as TA-Lib 0.8 does)."""
    total = gain + loss
    return 100.0 * (gain / total) if total > 0.0 else 0.0


# --- true range, ATR ------------------------------------------------------------------------------------


def true_range(high: float, low: float, prev_close: float) -> float:
    """Return the largest of high - low, |prev_close - high| and |prev_close - low|, compared in that order.

    The order and the strict comparisons decide what NaN does, exactly as in TA-Lib: a NaN high or low gives
    NaN, a NaN previous close is ignored.
    """
    greatest = high - low
    candidate = abs(prev_close - high)
    if candidate > greatest:  # noqa: PLR1730 - spelled out: this comparison order is the NaN policy
        greatest = candidate
    candidate = abs(prev_close - low)
    if candidate > greatest:  # noqa: PLR1730 - as above
        greatest = candidate
    return greatest


def true_range_array(high: FloatArray, low: FloatArray, prev_close: FloatArray) -> FloatArray:
    """Array form of `true_range` (same comparisons, same NaN behaviour)."""
    greatest = high - low
    candidate = np.abs(prev_close - high)
    greatest = np.where(candidate > greatest, candidate, greatest)
    candidate = np.abs(prev_close - low)
    return np.where(candidate > greatest, candidate, greatest)


def wilder_atr_coefficients(period: int) -> tuple[float, float]:
    """Return (alpha, beta) with beta = (n - 1) / n and alpha = 1 - beta, so they sum to exactly 1."""
    beta = (period - 1) / period
    return 1.0 - beta, beta


def wilder_atr_step(prev: float, tr: float, alpha: float, beta: float) -> float:
    """Advance Wilder's average true range by one bar."""
    return beta * prev + alpha * tr


# --- directional movement: +DI, -DI, DX, ADX ------------------------------------------------------------


def directional_movement(diff_plus: float, diff_minus: float) -> tuple[float, float]:
    """Return (+DM1, -DM1) from the high's rise and the low's fall; a tie or a NaN gives (0, 0)."""
    plus = diff_plus if (diff_plus - diff_minus > 0.0 and diff_plus > 0.0) else 0.0
    minus = diff_minus if (diff_minus - diff_plus > 0.0 and diff_minus > 0.0) else 0.0
    return plus, minus


def directional_movement_array(
    diff_plus: FloatArray, diff_minus: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Array form of `directional_movement`."""
    with np.errstate(invalid="ignore"):
        plus = np.where((diff_plus - diff_minus > 0.0) & (diff_plus > 0.0), diff_plus, 0.0)
        minus = np.where((diff_minus - diff_plus > 0.0) & (diff_minus > 0.0), diff_minus, 0.0)
    return plus, minus


def wilder_sum_step(prev: float, x: float, inv_period: float) -> float:
    """Advance a Wilder running sum (DM14, TR14): prev - prev / n + x."""
    return prev - prev * inv_period + x


def directional_index(dm_sum: float, tr_sum: float) -> float:
    """Return 100 * DM / TR, or 0 while the smoothed true range is not positive."""
    return 100.0 * (dm_sum / tr_sum) if tr_sum > 0.0 else 0.0


def directional_index_array(dm_sum: FloatArray, tr_sum: FloatArray) -> FloatArray:
    """Array form of `directional_index`."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        positive = tr_sum > 0.0
        return np.where(positive, 100.0 * (dm_sum / np.where(positive, tr_sum, 1.0)), 0.0)


def unsmoothed_di(dm1: float, tr: float) -> float:
    """Return TA-Lib's one-bar DI, DM1 / TR1 (a fraction, not a percentage, as TA-Lib has it)."""
    if not dm1 > 0.0:
        return 0.0
    return 0.0 if tr <= 0.0 else dm1 / tr


def unsmoothed_di_array(dm1: FloatArray, tr: FloatArray) -> FloatArray:
    """Array form of `unsmoothed_di`."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        not_positive = tr <= 0.0
        ratio = np.where(not_positive, 0.0, dm1 / np.where(not_positive, 1.0, tr))
        return np.where(dm1 > 0.0, ratio, 0.0)


def dx_value(plus_dm_sum: float, minus_dm_sum: float, tr_sum: float) -> float | None:
    """Return 100 * |-DI - +DI| / (-DI + +DI), or None where TA-Lib leaves DX undefined."""
    if not tr_sum > 0.0:
        return None
    minus_di = 100.0 * (minus_dm_sum / tr_sum)
    plus_di = 100.0 * (plus_dm_sum / tr_sum)
    total = minus_di + plus_di
    if -DX_SUM_ZERO_BAND < total < DX_SUM_ZERO_BAND:
        return None
    return 100.0 * (abs(minus_di - plus_di) / total)


def dx_array(
    plus_dm_sum: FloatArray, minus_dm_sum: FloatArray, tr_sum: FloatArray
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Array form of `dx_value`: the values and a mask of where they are defined."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        positive = tr_sum > 0.0
        safe_tr = np.where(positive, tr_sum, 1.0)
        minus_di = 100.0 * (minus_dm_sum / safe_tr)
        plus_di = 100.0 * (plus_dm_sum / safe_tr)
        total = minus_di + plus_di
        defined = positive & ~((total > -DX_SUM_ZERO_BAND) & (total < DX_SUM_ZERO_BAND))
        values = 100.0 * (np.abs(minus_di - plus_di) / np.where(defined, total, 1.0))
    return values, defined


def adx_step(prev: float, dx: float, inv_period: float) -> float:
    """Advance Wilder's average of DX by one defined value."""
    return prev - (prev - dx) * inv_period


# --- stochastic -----------------------------------------------------------------------------------------


def stoch_fastk(close: float, highest: float, lowest: float) -> float:
    """Return Fast-K = 100 * (close - lowest) / (highest - lowest), or 0 for a flat window."""
    if abs(highest - lowest) <= STOCH_FLAT_BAND * (abs(highest) + abs(lowest)):
        return 0.0
    return 100.0 * ((close - lowest) / (highest - lowest))


def stoch_fastk_array(close: FloatArray, highest: FloatArray, lowest: FloatArray) -> FloatArray:
    """Array form of `stoch_fastk`."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        flat = np.abs(highest - lowest) <= STOCH_FLAT_BAND * (np.abs(highest) + np.abs(lowest))
        return np.where(flat, 0.0, 100.0 * ((close - lowest) / np.where(flat, 1.0, highest - lowest)))


# --- standard deviation, Bollinger bands ----------------------------------------------------------------


def std_from_shifted_sums(sum_dev: float, sum_sq_dev: float, inv_period: float) -> float:
    """Return the population standard deviation of a window from the sums of its deviations from a shift.

    Any shift gives the same variance; one near the window's values avoids cancellation. A variance below
    `VARIANCE_FLOOR` of the mean squared deviation is rounding noise and reads 0, so a flat window has a
    standard deviation of exactly 0.
    """
    mean_dev = sum_dev * inv_period
    mean_sq = sum_sq_dev * inv_period
    variance = mean_sq - mean_dev * mean_dev
    if variance < VARIANCE_FLOOR * mean_sq:
        return 0.0
    return math.sqrt(variance) if variance >= 0.0 else math.nan  # NaN in, NaN out (as np.sqrt)


def std_from_shifted_sums_array(sum_dev: FloatArray, sum_sq_dev: FloatArray, inv_period: float) -> FloatArray:
    """Array form of `std_from_shifted_sums`."""
    mean_dev = sum_dev * inv_period
    mean_sq = sum_sq_dev * inv_period
    variance = mean_sq - mean_dev * mean_dev
    with np.errstate(invalid="ignore"):
        return np.where(variance < VARIANCE_FLOOR * mean_sq, 0.0, np.sqrt(variance))


def bollinger_bands(middle: _T, std: _T, nbdevup: float, nbdevdn: float) -> tuple[_T, _T, _T]:
    """Return (upper, middle, lower) = middle + std * nbdevup, middle, middle - std * nbdevdn."""
    return middle + std * nbdevup, middle, middle - std * nbdevdn
