"""Rolling-window state with O(1) (amortised) updates, shared by the streaming classes and the batch paths.

- `RunningSum`: TA-Lib's SMA running total (add the new value, read, subtract the oldest), so a stream
  reproduces the batch SMA bit for bit.
- `WeightedSums`: TA-Lib's WMA running sums, rebuilt from the window every 8 * period bars so rounding
  cannot pile up over a long stream.
- `RollingStd`: population standard deviation from sums of deviations around a shift, re-centred when
  cancellation would cost precision, when an outlier leaves, and every 32 * period bars.
- `RollingExtreme`: TA-Lib's tracked highest/lowest of a window, including its treatment of NaN; the rescan
  TA-Lib does when the extreme leaves the window is answered from a monotonic deque, so it costs O(1).
"""

from __future__ import annotations

import math
from collections import deque

from aitrading.features.indicators._kernels import std_from_shifted_sums

__all__ = ["RollingExtreme", "RollingStd", "RunningSum", "WeightedSums", "wma_divider"]

# Re-anchoring intervals and triggers. The intervals are TA-Lib 0.8's (WMA, BBANDS/STDDEV). The standard
# deviation re-centres once the mean has drifted about 30 standard deviations from the shift, or a value
# leaves whose squared deviation is 1000 times the rest: TA-Lib waits for 1e6, which lets the stream lose up
# to six digits and drift ~1e-9 from the two-pass batch result on a fast-trending series.
WMA_RESEED_BARS_PER_PERIOD = 8
STD_RESEED_BARS_PER_PERIOD = 32
STD_CANCELLATION_TRIGGER = 1e-3
STD_OUTLIER_TRIGGER = 1e3


def wma_divider(period: int) -> float:
    """Return 1 + 2 + ... + period, the WMA's weight total."""
    return float(period) * (period + 1) / 2.0


class RunningSum:
    """Total of the last `period` values, kept the way TA-Lib's SMA keeps it."""

    __slots__ = ("_period", "_total", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._window: deque[float] = deque(maxlen=period)
        self._total = 0.0

    def push(self, x: float) -> float | None:
        """Add `x`; return the window total once `period` values are in, else None."""
        self._total += x
        self._window.append(x)
        if len(self._window) < self._period:
            return None
        total = self._total
        # The oldest value leaves now, as in TA-Lib; the next append evicts it from the deque.
        self._total -= self._window[0]
        return total


class WeightedSums:
    """Numerator of the WMA (sum of value * weight, weights 1..period), kept as TA-Lib keeps it."""

    __slots__ = ("_bars_to_reseed", "_period", "_plain", "_weighted", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._window: deque[float] = deque(maxlen=period)
        self._plain = 0.0  # sum of the window's values (TA-Lib's periodSub)
        self._weighted = 0.0  # TA-Lib's periodSum
        self._bars_to_reseed = WMA_RESEED_BARS_PER_PERIOD * period

    def push(self, x: float) -> float | None:
        """Add `x`; return the weighted sum once `period` values are in, else None."""
        period = self._period
        window = self._window
        if len(window) < period - 1:
            window.append(x)
            self._plain += x
            self._weighted += x * len(window)
            return None
        leaving = window[0] if len(window) == period else 0.0
        window.append(x)
        self._plain += x
        self._plain -= leaving
        self._weighted += x * period
        self._bars_to_reseed -= 1
        if self._bars_to_reseed <= 0:
            self._bars_to_reseed = WMA_RESEED_BARS_PER_PERIOD * period
            plain = 0.0
            weighted = 0.0
            for weight, value in enumerate(window, start=1):
                plain += value
                weighted += value * weight
            self._plain = plain
            self._weighted = weighted
        weighted = self._weighted
        self._weighted -= self._plain
        return weighted


class RollingStd:
    """Population standard deviation of the last `period` values."""

    __slots__ = (
        "_bars_to_reseed",
        "_inv_period",
        "_period",
        "_shift",
        "_sum_dev",
        "_sum_sq_dev",
        "_window",
    )

    def __init__(self, period: int) -> None:
        self._period = period
        self._inv_period = 1.0 / period
        self._window: deque[float] = deque(maxlen=period)
        self._shift = 0.0
        self._sum_dev = 0.0
        self._sum_sq_dev = 0.0
        self._bars_to_reseed = STD_RESEED_BARS_PER_PERIOD * period

    def push(self, x: float) -> float | None:
        """Add `x`; return the window's standard deviation once `period` values are in, else None."""
        window = self._window
        if not window:
            self._shift = x  # centre on the first value until the first re-centring
        window.append(x)
        dev = x - self._shift
        self._sum_dev += dev
        self._sum_sq_dev += dev * dev
        if len(window) < self._period:
            return None
        inv = self._inv_period
        full_dev, full_sq = self._sum_dev, self._sum_sq_dev
        mean_dev = full_dev * inv
        variance = full_sq * inv - mean_dev * mean_dev
        leaving = window[0] - self._shift
        leaving_sq = leaving * leaving
        self._sum_dev -= leaving
        self._sum_sq_dev -= leaving_sq
        self._bars_to_reseed -= 1
        if (
            self._bars_to_reseed <= 0
            or variance < STD_CANCELLATION_TRIGGER * (self._sum_sq_dev * inv)
            or leaving_sq > STD_OUTLIER_TRIGGER * self._sum_sq_dev
            or not math.isfinite(leaving_sq)
        ):
            full_dev, full_sq = self._recentre()
        return std_from_shifted_sums(full_dev, full_sq, inv)

    def _recentre(self) -> tuple[float, float]:
        """Rebuild the sums around the window's mean; return the sums over the full window.

        The sums carried to the next bar are rebuilt from the values that stay, not by subtracting the
        leaving one, so a NaN or an infinity stops counting as soon as it has left the window.
        """
        self._bars_to_reseed = STD_RESEED_BARS_PER_PERIOD * self._period
        window = self._window
        total = 0.0
        for value in window:
            total += value
        shift = total * self._inv_period
        if math.isfinite(shift):
            self._shift = shift
        shift = self._shift
        full_dev = full_sq = 0.0
        kept_dev = kept_sq = 0.0
        for position, value in enumerate(window):
            dev = value - shift
            full_dev += dev
            full_sq += dev * dev
            if position:
                kept_dev += dev
                kept_sq += dev * dev
        self._sum_dev = kept_dev
        self._sum_sq_dev = kept_sq
        return full_dev, full_sq


class RollingExtreme:
    """TA-Lib's tracked highest (or lowest) of the last `period` values.

    TA-Lib keeps the extreme and its index; when that index leaves the window it rescans the window
    starting from its oldest value with a strict comparison, and otherwise takes a new value that ties or
    beats the extreme. Comparisons with NaN are false, so a NaN is never taken, except that a rescan
    starting on a NaN yields NaN for that bar. The rescan's answer (earliest index of the extreme among
    the non-NaN values) is the front of a monotonic deque, which keeps every update amortised O(1).
    """

    __slots__ = ("_count", "_extreme", "_extreme_idx", "_highest", "_mono", "_period", "_window")

    def __init__(self, period: int, *, highest: bool) -> None:
        self._period = period
        self._highest = highest
        self._window: deque[float] = deque(maxlen=period)
        self._mono: deque[tuple[int, float]] = deque()
        self._count = 0
        self._extreme_idx = -1
        self._extreme = 0.0

    def push(self, x: float) -> float | None:
        """Add `x`; return the tracked extreme once `period` values are in, else None."""
        idx = self._count
        self._count += 1
        self._window.append(x)
        mono = self._mono
        if not math.isnan(x):  # NaN never enters the deque: TA-Lib's comparisons never select it
            if self._highest:
                while mono and mono[-1][1] < x:
                    mono.pop()
            else:
                while mono and mono[-1][1] > x:
                    mono.pop()
            mono.append((idx, x))
        if idx < self._period - 1:
            return None
        trailing = idx - self._period + 1
        while mono and mono[0][0] < trailing:
            mono.popleft()
        if self._extreme_idx < trailing:
            oldest = self._window[0]
            if math.isnan(oldest):
                self._extreme_idx, self._extreme = trailing, oldest
            else:
                self._extreme_idx, self._extreme = mono[0]
        elif (x >= self._extreme) if self._highest else (x <= self._extreme):
            self._extreme_idx, self._extreme = idx, x
        return self._extreme
