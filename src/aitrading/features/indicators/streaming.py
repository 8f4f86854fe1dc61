"""Streaming indicators: one class per TA-Lib indicator, updated one bar at a time in O(1).

`update(...)` takes the newest value (or high, low, close) and returns the current output, NaN while the
indicator is in its lookback; multi-output indicators return a named tuple with TA-Lib's output names.
`value` is the latest output, `ready` says the lookback is over, `lookback` is TA-Lib's lookback and
`reset()` starts again.

A stream runs the same step functions (`_kernels`) and window state (`_rolling`) as `batch`, so feeding a
series bar by bar reproduces the batch output at every step. Like TA-Lib, leading bars with a NaN input are
skipped (they do not count towards the lookback); a NaN after the first valid bar goes through the maths
as TA-Lib's would (see docs/adr/0013-indicators.md).
"""

from __future__ import annotations

import math

from aitrading.features.indicators import _kernels as k
from aitrading.features.indicators._rolling import RollingStd
from aitrading.features.indicators._streaming_core import (
    BBANDS_NAN,
    EMA,
    MA,
    MACD_NAN,
    SMA,
    WMA,
    BBandsOutput,
    MACDOutput,
    RealIndicator,
    StochOutput,
    moving_average,
)
from aitrading.features.indicators._streaming_hlc import ADX, ATR, DX, MINUS_DI, PLUS_DI, STOCH, TRANGE

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
    "BBandsOutput",
    "MACDOutput",
    "StochOutput",
]


class RSI(RealIndicator):
    """Wilder's relative strength index."""

    def __init__(self, timeperiod: int = 14) -> None:
        self.timeperiod = k.check_period("RSI", "timeperiod", timeperiod, 2)
        self.lookback = self.timeperiod
        self._inv = 1.0 / self.timeperiod
        self._less_one = float(self.timeperiod - 1)
        super().__init__()

    def _start(self) -> None:
        self._last: float | None = None
        self._changes = 0
        self._gain = 0.0
        self._loss = 0.0

    def _step(self, x: float) -> float | None:
        if self._last is None:
            self._last = x
            return None
        delta = x - self._last
        self._last = x
        if self._changes >= self.timeperiod:
            self._gain, self._loss = k.rsi_smooth(self._gain, self._loss, delta, self._less_one, self._inv)
            return k.rsi_value(self._gain, self._loss)
        self._changes += 1
        self._gain, self._loss = k.rsi_accumulate(self._gain, self._loss, delta)
        if self._changes < self.timeperiod:
            return None
        self._gain, self._loss = self._gain * self._inv, self._loss * self._inv
        return k.rsi_value(self._gain, self._loss)


# --- single input, several outputs ----------------------------------------------------------------------


class MACD:
    """MACD line, signal and histogram; the fast EMA's seed window ends where the slow one's does."""

    def __init__(self, fastperiod: int = 12, slowperiod: int = 26, signalperiod: int = 9) -> None:
        fast = k.check_period("MACD", "fastperiod", fastperiod, 2)
        slow = k.check_period("MACD", "slowperiod", slowperiod, 2)
        self.signalperiod = k.check_period("MACD", "signalperiod", signalperiod, 1)
        self.fastperiod, self.slowperiod = min(fast, slow), max(fast, slow)  # TA-Lib swaps them if reversed
        self.lookback = k.macd_lookback(self.fastperiod, self.slowperiod, self.signalperiod)
        self.reset()

    def reset(self) -> None:
        """Forget every value seen."""
        self._started, self._value, self._ready = False, MACD_NAN, False
        self._count = 0
        self._fast, self._slow = EMA(self.fastperiod), EMA(self.slowperiod)
        self._signal = EMA(self.signalperiod)

    def update(self, real: float) -> MACDOutput:
        """Take the next value; return (macd, macdsignal, macdhist), NaN during the lookback."""
        x = float(real)
        if not self._started:
            if math.isnan(x):
                return MACD_NAN
            self._started = True
        count = self._count
        self._count += 1
        slow = self._slow._step(x)
        fast = self._fast._step(x) if count >= self.slowperiod - self.fastperiod else None
        if slow is None or fast is None:
            return MACD_NAN
        line = fast - slow
        signal = self._signal._step(line)
        if signal is None:
            return MACD_NAN
        self._value, self._ready = MACDOutput(line, signal, line - signal), True
        return self._value

    @property
    def value(self) -> MACDOutput:
        """The latest output (NaN until ready)."""
        return self._value

    @property
    def ready(self) -> bool:
        """Whether the lookback is over."""
        return self._ready


class BBANDS:
    """Bollinger bands: an MA of type `matype` +/- nbdev population standard deviations."""

    def __init__(
        self, timeperiod: int = 20, nbdevup: float = 2.0, nbdevdn: float = 2.0, matype: int = 0
    ) -> None:
        self.timeperiod = k.check_period("BBANDS", "timeperiod", timeperiod, 2)
        self.nbdevup = k.check_nbdev("BBANDS", "nbdevup", nbdevup)
        self.nbdevdn = k.check_nbdev("BBANDS", "nbdevdn", nbdevdn)
        self.matype = k.check_matype("BBANDS", "matype", matype)
        self.lookback = self.timeperiod - 1
        self.reset()

    def reset(self) -> None:
        """Forget every value seen."""
        self._started, self._value, self._ready = False, BBANDS_NAN, False
        self._middle = moving_average(self.timeperiod, self.matype)
        self._std = RollingStd(self.timeperiod)

    def update(self, real: float) -> BBandsOutput:
        """Take the next value; return (upperband, middleband, lowerband), NaN during the lookback."""
        x = float(real)
        if not self._started:
            if math.isnan(x):
                return BBANDS_NAN
            self._started = True
        middle = self._middle._step(x)
        std = self._std.push(x)
        if middle is None or std is None:
            return BBANDS_NAN
        self._value = BBandsOutput(*k.bollinger_bands(middle, std, self.nbdevup, self.nbdevdn))
        self._ready = True
        return self._value

    @property
    def value(self) -> BBandsOutput:
        """The latest output (NaN until ready)."""
        return self._value

    @property
    def ready(self) -> bool:
        """Whether the lookback is over."""
        return self._ready
