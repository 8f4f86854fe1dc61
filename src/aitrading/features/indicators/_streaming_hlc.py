"""Streaming indicators of high, low and close bars: TRANGE, ATR, +DI, -DI, DX, ADX and STOCH.

Re-exported by `streaming`; see its docstring for the contract.
"""

from __future__ import annotations

import abc
import math

from aitrading.features.indicators import _kernels as k
from aitrading.features.indicators._rolling import RollingExtreme
from aitrading.features.indicators._streaming_core import (
    STOCH_NAN,
    StochOutput,
    StreamingIndicator,
    moving_average,
)

__all__ = ["ADX", "ATR", "DX", "MINUS_DI", "PLUS_DI", "STOCH", "TRANGE"]

NAN = math.nan


class _BarIndicator(StreamingIndicator):
    """An indicator of (high, low, close) bars with one output; subclasses implement `_start` and `_step`."""

    @abc.abstractmethod
    def _step(self, high: float, low: float, close: float) -> float | None:
        """Consume one bar; return the output, or None during the lookback."""

    def update(self, high: float, low: float, close: float) -> float:
        """Take the next bar; return the indicator, NaN during the lookback."""
        hi, lo, cl = float(high), float(low), float(close)
        if not self._started:
            if math.isnan(hi) or math.isnan(lo) or math.isnan(cl):
                return NAN  # leading bars with a NaN are skipped, as TA-Lib skips them
            self._started = True
        return self._emit(self._step(hi, lo, cl))


class TRANGE(_BarIndicator):
    """True range: the largest of high - low and the distances from the previous close."""

    lookback = 1

    def _start(self) -> None:
        self._prev_close: float | None = None

    def _step(self, high: float, low: float, close: float) -> float | None:
        prev_close, self._prev_close = self._prev_close, close
        return None if prev_close is None else k.true_range(high, low, prev_close)


class ATR(_BarIndicator):
    """Wilder's average true range, seeded with the mean of the first `timeperiod` true ranges."""

    def __init__(self, timeperiod: int = 14) -> None:
        self.timeperiod = k.check_period("ATR", "timeperiod", timeperiod, 1)
        self.lookback = self.timeperiod
        self._alpha, self._beta = k.wilder_atr_coefficients(self.timeperiod)
        super().__init__()

    def _start(self) -> None:
        self._prev_close: float | None = None
        self._ranges = 0
        self._atr = 0.0

    def _step(self, high: float, low: float, close: float) -> float | None:
        prev_close, self._prev_close = self._prev_close, close
        if prev_close is None:
            return None
        tr = k.true_range(high, low, prev_close)
        if self._ranges >= self.timeperiod:
            self._atr = k.wilder_atr_step(self._atr, tr, self._alpha, self._beta)
            return self._atr
        self._ranges += 1
        self._atr += tr
        if self._ranges < self.timeperiod:
            return None
        self._atr /= self.timeperiod
        return self._atr


class _WilderSums:
    """Wilder's smoothed +DM, -DM and TR: sums over the first period - 1 bars, then smoothing."""

    __slots__ = ("_bars", "_inv", "_period", "_prev", "minus", "plus", "tr")

    def __init__(self, period: int) -> None:
        self._period = period
        self._inv = 1.0 / period
        self._prev: tuple[float, float, float] | None = None
        self._bars = 0
        self.plus = self.minus = self.tr = 0.0

    def push(self, high: float, low: float, close: float) -> tuple[float, float, float] | None:
        """Add a bar; return one-bar (+DM1, -DM1, TR1) (the smoothed sums are attributes), or None."""
        prev, self._prev = self._prev, (high, low, close)
        if prev is None:
            return None
        prev_high, prev_low, prev_close = prev
        plus, minus = k.directional_movement(high - prev_high, prev_low - low)
        tr = k.true_range(high, low, prev_close)
        self._bars += 1
        if self._bars < self._period:
            self.plus += plus
            self.minus += minus
            self.tr += tr
        else:
            step, inv = k.wilder_sum_step, self._inv
            self.plus = step(self.plus, plus, inv)
            self.minus = step(self.minus, minus, inv)
            self.tr = step(self.tr, tr, inv)
        return plus, minus, tr

    @property
    def smoothed(self) -> bool:
        """Whether the sums have been through their first smoothing step."""
        return self._bars >= self._period


class _DirectionalIndicator(_BarIndicator):
    _plus = True
    _name = "PLUS_DI"

    def __init__(self, timeperiod: int = 14) -> None:
        self.timeperiod = k.check_period(self._name, "timeperiod", timeperiod, 1)
        self.lookback = self.timeperiod
        super().__init__()

    def _start(self) -> None:
        self._sums = _WilderSums(self.timeperiod)

    def _step(self, high: float, low: float, close: float) -> float | None:
        one_bar = self._sums.push(high, low, close)
        if one_bar is None:
            return None
        if self.timeperiod == 1:
            # TA-Lib's unsmoothed DI1 is DM1 / TR1, without the factor 100.
            return k.unsmoothed_di(one_bar[0] if self._plus else one_bar[1], one_bar[2])
        if not self._sums.smoothed:
            return None
        sums = self._sums
        return k.directional_index(sums.plus if self._plus else sums.minus, sums.tr)


class PLUS_DI(_DirectionalIndicator):
    """Plus directional indicator, +DI."""


class MINUS_DI(_DirectionalIndicator):
    """Minus directional indicator, -DI."""

    _plus = False
    _name = "MINUS_DI"


class DX(_BarIndicator):
    """Directional movement index; a bar where DX is undefined repeats the previous value (0 at first)."""

    def __init__(self, timeperiod: int = 14) -> None:
        self.timeperiod = k.check_period("DX", "timeperiod", timeperiod, 2)
        self.lookback = self.timeperiod
        super().__init__()

    def _start(self) -> None:
        self._sums = _WilderSums(self.timeperiod)
        self._last = 0.0

    def _step(self, high: float, low: float, close: float) -> float | None:
        if self._sums.push(high, low, close) is None or not self._sums.smoothed:
            return None
        dx = k.dx_value(self._sums.plus, self._sums.minus, self._sums.tr)
        if dx is not None:
            self._last = dx
        return self._last


class ADX(_BarIndicator):
    """Average directional movement index: the mean of the first `timeperiod` DX, then Wilder smoothing."""

    def __init__(self, timeperiod: int = 14) -> None:
        self.timeperiod = k.check_period("ADX", "timeperiod", timeperiod, 2)
        self.lookback = 2 * self.timeperiod - 1
        self._inv = 1.0 / self.timeperiod
        super().__init__()

    def _start(self) -> None:
        self._sums = _WilderSums(self.timeperiod)
        self._dx_count = 0
        self._adx = 0.0

    def _step(self, high: float, low: float, close: float) -> float | None:
        if self._sums.push(high, low, close) is None or not self._sums.smoothed:
            return None
        dx = k.dx_value(self._sums.plus, self._sums.minus, self._sums.tr)
        if self._dx_count >= self.timeperiod:
            if dx is not None:
                self._adx = k.adx_step(self._adx, dx, self._inv)
            return self._adx
        self._dx_count += 1
        if dx is not None:
            self._adx += dx  # the seed: a sum of the first DX values, undefined ones left out
        if self._dx_count < self.timeperiod:
            return None
        self._adx /= self.timeperiod
        return self._adx


class STOCH:
    """Slow stochastic: Fast-K smoothed by an MA (%K slowing), then %D as an MA of %K."""

    def __init__(
        self,
        fastk_period: int = 5,
        slowk_period: int = 3,
        slowk_matype: int = 0,
        slowd_period: int = 3,
        slowd_matype: int = 0,
    ) -> None:
        self.fastk_period = k.check_period("STOCH", "fastk_period", fastk_period, 1)
        self.slowk_period = k.check_period("STOCH", "slowk_period", slowk_period, 1)
        self.slowd_period = k.check_period("STOCH", "slowd_period", slowd_period, 1)
        self.slowk_matype = k.check_matype("STOCH", "slowk_matype", slowk_matype)
        self.slowd_matype = k.check_matype("STOCH", "slowd_matype", slowd_matype)
        self.lookback = k.stoch_lookback(self.fastk_period, self.slowk_period, self.slowd_period)
        self.reset()

    def reset(self) -> None:
        """Forget every bar seen."""
        self._started, self._value, self._ready = False, STOCH_NAN, False
        self._highest = RollingExtreme(self.fastk_period, highest=True)
        self._lowest = RollingExtreme(self.fastk_period, highest=False)
        self._slowk = moving_average(self.slowk_period, self.slowk_matype)
        self._slowd = moving_average(self.slowd_period, self.slowd_matype)

    def update(self, high: float, low: float, close: float) -> StochOutput:
        """Take the next bar; return (slowk, slowd), NaN during the lookback."""
        hi, lo, cl = float(high), float(low), float(close)
        if not self._started:
            if math.isnan(hi) or math.isnan(lo) or math.isnan(cl):
                return STOCH_NAN
            self._started = True
        highest = self._highest.push(hi)
        lowest = self._lowest.push(lo)
        if highest is None or lowest is None:
            return STOCH_NAN
        slowk = self._slowk._step(k.stoch_fastk(cl, highest, lowest))
        if slowk is None:
            return STOCH_NAN
        slowd = self._slowd._step(slowk)
        if slowd is None:
            return STOCH_NAN
        self._value, self._ready = StochOutput(slowk, slowd), True
        return self._value

    @property
    def value(self) -> StochOutput:
        """The latest output (NaN until ready)."""
        return self._value

    @property
    def ready(self) -> bool:
        """Whether the lookback is over."""
        return self._ready
