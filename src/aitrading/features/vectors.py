"""Feature vectors of one feed/symbol/timeframe, computed bar by bar: one code path for training and live.

`FeatureEngine.update(bar)` takes the next closed bar in O(1) (streaming indicators, short windows) and
returns the feature vector known at that bar's close, or None during the warm-up. `compute_batch(bars)`
builds the training matrix by replaying the very same engine over stored bars, so a model is trained on
exactly the numbers it is served live: there is no second implementation that could drift (no skew by
construction; `tests/unit/features/test_features_vectors.py` checks it end to end through the service).

Every feature is dimensionless or in points, so models transfer across price levels; all of them use the
bar's own data and earlier bars only (a causality check in `aitrading.ml.leakage` verifies that).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aitrading.features.indicators import streaming
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "FeatureEngine",
    "FeatureFrame",
    "compute_batch",
]

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1",
    "ret_3",
    "ret_12",
    "vol_20",
    "range_1",
    "atr_14",
    "rsi_14",
    "macd_hist",
    "bb_pctb",
    "bb_width",
    "stoch_k",
    "stoch_d",
    "adx_14",
    "di_diff",
    "dist_sma_20",
    "dist_ema_50",
    "spread_points",
    "volume_ratio",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "session_asia",
    "session_london",
    "session_ny",
)
"""The features of a vector, in matrix column order."""

FEATURE_SET_VERSION = "v1-" + hashlib.sha256(",".join(FEATURE_NAMES).encode()).hexdigest()[:8]
"""Names the feature definitions; a model records it and refuses vectors of another set."""

_TWO_PI = 2.0 * math.pi
_VOL_WINDOW = 20
_MAX_RET_LAG = 12


class FeatureEngine:
    """Streaming feature vectors of one series of closed bars (one feed/symbol/timeframe)."""

    def __init__(self, timeframe: Timeframe | int) -> None:
        self.timeframe = Timeframe(timeframe)
        self.reset()

    def reset(self) -> None:
        """Forget every bar seen."""
        self._closes: deque[float] = deque(maxlen=_MAX_RET_LAG + 1)
        self._rets: deque[float] = deque(maxlen=_VOL_WINDOW)
        self._volumes: deque[float] = deque(maxlen=_VOL_WINDOW)
        self._atr = streaming.ATR(14)
        self._rsi = streaming.RSI(14)
        self._macd = streaming.MACD(12, 26, 9)
        self._bb = streaming.BBANDS(20, 2.0, 2.0, 0)
        self._stoch = streaming.STOCH(14, 3, 0, 3, 0)
        self._adx = streaming.ADX(14)
        self._plus_di = streaming.PLUS_DI(14)
        self._minus_di = streaming.MINUS_DI(14)
        self._sma = streaming.SMA(20)
        self._ema = streaming.EMA(50)
        self.last_time: int | None = None
        self.count = 0

    def update(self, bar: Bar) -> tuple[float, ...] | None:
        """Take the next closed bar; return its feature vector (`FEATURE_NAMES` order) or None.

        None during the warm-up (until every feature is defined) and for a bar that is not newer than the
        last one (a redelivered or out-of-order bar changes nothing, so redelivery is harmless). Raise
        `ValueError` (state unchanged) for a bar whose prices are not positive or whose range is inverted.
        """
        if self.last_time is not None and bar.time <= self.last_time:
            return None
        if bar.low <= 0 or bar.high < max(bar.open, bar.close) or bar.low > min(bar.open, bar.close):
            raise ValueError(
                f"bar {bar.symbol} at {bar.time} has inconsistent prices "
                f"(open {bar.open}, high {bar.high}, low {bar.low}, close {bar.close})"
            )
        self.last_time = bar.time
        self.count += 1
        high, low, close = bar.high / PRICE_SCALE, bar.low / PRICE_SCALE, bar.close / PRICE_SCALE
        closes = self._closes
        prev = closes[-1] if closes else math.nan
        closes.append(close)
        ret_1 = _log_ratio(close, prev)
        if not math.isnan(ret_1):
            self._rets.append(ret_1)
        volumes = self._volumes
        vol_mean = sum(volumes) / len(volumes) if len(volumes) == _VOL_WINDOW else math.nan
        volumes.append(float(bar.tick_volume))

        atr = self._atr.update(high, low, close)
        rsi = self._rsi.update(close)
        macd = self._macd.update(close)
        bb = self._bb.update(close)
        stoch = self._stoch.update(high, low, close)
        adx = self._adx.update(high, low, close)
        plus_di = self._plus_di.update(high, low, close)
        minus_di = self._minus_di.update(high, low, close)
        sma = self._sma.update(close)
        ema = self._ema.update(close)

        band = bb.upperband - bb.lowerband
        close_s = bar.time + self.timeframe.seconds  # the vector is known at the bar's close
        hour = (close_s % 86400) / 3600.0
        dow = ((close_s // 86400) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        open_hour = (bar.time % 86400) // 3600
        row = (
            ret_1,
            _log_ratio(close, closes[-4]) if len(closes) >= 4 else math.nan,
            _log_ratio(close, closes[0]) if len(closes) == _MAX_RET_LAG + 1 else math.nan,
            _std(self._rets) if len(self._rets) == _VOL_WINDOW else math.nan,
            (high - low) / close,
            atr / close,
            rsi / 100.0,
            macd.macdhist / close,
            (close - bb.lowerband) / band if band > 0 else 0.5,
            band / bb.middleband,
            stoch.slowk / 100.0,
            stoch.slowd / 100.0,
            adx / 100.0,
            (plus_di - minus_di) / 100.0,
            close / sma - 1.0,
            close / ema - 1.0,
            float(bar.spread),
            math.log((volumes[-1] + 1.0) / (vol_mean + 1.0)),
            math.sin(_TWO_PI * hour / 24.0),
            math.cos(_TWO_PI * hour / 24.0),
            math.sin(_TWO_PI * dow / 7.0),
            math.cos(_TWO_PI * dow / 7.0),
            1.0 if open_hour < 9 else 0.0,  # Tokyo, UTC
            1.0 if 7 <= open_hour < 16 else 0.0,  # London, UTC
            1.0 if 12 <= open_hour < 21 else 0.0,  # New York, UTC
        )
        if any(math.isnan(v) for v in row):
            return None
        return row


def _log_ratio(a: float, b: float) -> float:
    if math.isnan(b) or a <= 0 or b <= 0:
        return math.nan
    return math.log(a / b)


def _std(values: Iterable[float]) -> float:
    xs = list(values)
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))


@dataclass(frozen=True, slots=True)
class FeatureFrame:
    """Feature rows of a bar series: `values[i]` belongs to the bar opened at `times[i]` (NaN in warm-up)."""

    times: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    names: tuple[str, ...] = FEATURE_NAMES

    def row(self, i: int) -> dict[str, float]:
        """Return row `i` as a mapping of feature name to value."""
        return dict(zip(self.names, self.values[i].tolist(), strict=True))


def compute_batch(bars: Sequence[Bar], timeframe: Timeframe | int) -> FeatureFrame:
    """Return the feature rows of `bars` (sorted by time, unique) by replaying `FeatureEngine` over them."""
    engine = FeatureEngine(timeframe)
    n = len(bars)
    values = np.full((n, len(FEATURE_NAMES)), np.nan)
    times = np.empty(n, dtype=np.int64)
    last = None
    for i, bar in enumerate(bars):
        if last is not None and bar.time <= last:
            raise ValueError(f"bars must be sorted by time without duplicates (bar {i} at {bar.time})")
        last = bar.time
        times[i] = bar.time
        row = engine.update(bar)
        if row is not None:
            values[i] = row
    return FeatureFrame(times, values)
