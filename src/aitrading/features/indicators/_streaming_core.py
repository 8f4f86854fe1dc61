"""Streaming building blocks: output tuples, the base classes and the moving averages.

Re-exported by `streaming`; see its docstring for the contract.
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

from aitrading.features.indicators import _kernels as k
from aitrading.features.indicators._kernels import MAType
from aitrading.features.indicators._rolling import RunningSum, WeightedSums, wma_divider

__all__ = [
    "BBANDS_NAN",
    "EMA",
    "MA",
    "MACD_NAN",
    "NAN",
    "SMA",
    "STOCH_NAN",
    "WMA",
    "BBandsOutput",
    "MACDOutput",
    "RealIndicator",
    "StochOutput",
    "moving_average",
]

NAN = math.nan


class MACDOutput(NamedTuple):
    """MACD line, signal line and histogram (TA-Lib's output names)."""

    macd: float
    macdsignal: float
    macdhist: float


class BBandsOutput(NamedTuple):
    """Bollinger bands (TA-Lib's output names)."""

    upperband: float
    middleband: float
    lowerband: float


class StochOutput(NamedTuple):
    """Slow %K and %D (TA-Lib's output names)."""

    slowk: float
    slowd: float


MACD_NAN = MACDOutput(NAN, NAN, NAN)
BBANDS_NAN = BBandsOutput(NAN, NAN, NAN)
STOCH_NAN = StochOutput(NAN, NAN)


# --- single input, single output ------------------------------------------------------------------------


class StreamingIndicator(abc.ABC):
    """State every one-output streaming indicator shares: lookback, latest value, readiness, reset.

    Subclasses implement `_start` (reset their own state) and an `update` that hands each raw output to
    `_emit`; leading inputs with a NaN are skipped before `_started`, as TA-Lib skips them.
    """

    lookback: int

    def __init__(self) -> None:
        self._started = False
        self._value = NAN
        self._ready = False
        self._start()

    @abc.abstractmethod
    def _start(self) -> None:
        """Reset the indicator\'s state (called by `__init__`)."""

    def _emit(self, out: float | None) -> float:
        if out is None:
            return NAN
        self._value, self._ready = out, True
        return out

    @property
    def value(self) -> float:
        """The latest output (NaN until ready)."""
        return self._value

    @property
    def ready(self) -> bool:
        """Whether the lookback is over."""
        return self._ready

    def reset(self) -> None:
        """Forget every input seen."""
        self._started, self._value, self._ready = False, NAN, False
        self._start()


class RealIndicator(StreamingIndicator):
    """An indicator of one input series with one output; subclasses implement `_start` and `_step`."""

    @abc.abstractmethod
    def _step(self, x: float) -> float | None:
        """Consume one value; return the output, or None during the lookback."""

    def update(self, real: float) -> float:
        """Take the next value; return the indicator, NaN during the lookback."""
        x = float(real)
        if not self._started:
            if math.isnan(x):
                return NAN  # leading NaN: skipped, as TA-Lib skips it
            self._started = True
        return self._emit(self._step(x))


class SMA(RealIndicator):
    """Simple moving average."""

    def __init__(self, timeperiod: int = 30) -> None:
        self.timeperiod = k.check_period("SMA", "timeperiod", timeperiod, 1)
        self.lookback = k.ma_lookback(self.timeperiod)
        super().__init__()

    def _start(self) -> None:
        self._sum = RunningSum(self.timeperiod)

    def _step(self, x: float) -> float | None:
        total = self._sum.push(x)
        return None if total is None else total / self.timeperiod

    def update(self, real: float) -> float:
        """`RealIndicator.update`, shortened once the window is full (strategies call it per tick)."""
        if self._ready:  # the same arithmetic as `_step`, without the calls around it
            total = self._sum.push(float(real))
            if total is not None:  # always, once full
                self._value = out = total / self.timeperiod
                return out
        return super().update(real)


class EMA(RealIndicator):
    """Exponential moving average, seeded with the SMA of the first `timeperiod` values."""

    def __init__(self, timeperiod: int = 30) -> None:
        self.timeperiod = k.check_period("EMA", "timeperiod", timeperiod, 1)
        self.lookback = k.ma_lookback(self.timeperiod)
        self._k = k.ema_k(self.timeperiod)
        super().__init__()

    def _start(self) -> None:
        self._count = 0
        self._prev = 0.0

    def _step(self, x: float) -> float | None:
        period = self.timeperiod
        if period == 1:
            return x
        if self._count >= period:
            self._prev = k.ema_step(self._prev, x, self._k)
            return self._prev
        self._count += 1
        self._prev += x  # the seed's running sum, left to right from 0.0
        if self._count < period:
            return None
        self._prev /= period
        return self._prev

    def update(self, real: float) -> float:
        """`RealIndicator.update`, shortened after the seed (strategies call it per tick): `_step`'s
        arithmetic (`ema_step`) inlined."""
        if self._count >= self.timeperiod > 1:
            prev = self._prev
            self._prev = self._value = out = (float(real) - prev) * self._k + prev
            return out
        return super().update(real)


class WMA(RealIndicator):
    """Linearly weighted moving average (weights 1..timeperiod, newest heaviest)."""

    def __init__(self, timeperiod: int = 30) -> None:
        self.timeperiod = k.check_period("WMA", "timeperiod", timeperiod, 1)
        self.lookback = k.ma_lookback(self.timeperiod)
        self._divider = wma_divider(self.timeperiod)
        super().__init__()

    def _start(self) -> None:
        self._sums = WeightedSums(self.timeperiod)

    def _step(self, x: float) -> float | None:
        if self.timeperiod == 1:
            return x
        weighted = self._sums.push(x)
        return None if weighted is None else weighted / self._divider


def moving_average(period: int, matype: MAType) -> RealIndicator:
    if matype is MAType.EMA:
        return EMA(period)
    if matype is MAType.WMA:
        return WMA(period)
    return SMA(period)


class MA(RealIndicator):
    """Moving average of TA-Lib type `matype` (0 SMA, 1 EMA, 2 WMA)."""

    def __init__(self, timeperiod: int = 30, matype: int = 0) -> None:
        self.timeperiod = k.check_period("MA", "timeperiod", timeperiod, 1)
        self.matype = k.check_matype("MA", "matype", matype)
        self.lookback = k.ma_lookback(self.timeperiod)
        super().__init__()

    def _start(self) -> None:
        self._ma = moving_average(self.timeperiod, self.matype)

    def _step(self, x: float) -> float | None:
        return self._ma._step(x)
