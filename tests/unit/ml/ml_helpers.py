"""Helpers of the ML tests: synthetic bars with a planted signal, fast parameters."""

from __future__ import annotations

from typing import Any

import numpy as np

from aitrading.ml.models import default_params
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE


def fast_params(kind: str, trees: int = 30) -> dict[str, Any]:
    """Default parameters with few trees, so a test trains in a second."""
    return default_params(kind) | {"n_estimators": trees}


def planted_bars(
    n: int = 3000, *, seed: int = 11, start: int = 1_600_000_000 - 1_600_000_000 % 3600
) -> list[Bar]:
    """H1 bars whose next move follows the hour of the day: up 8 pips after hours 0-11, down after 12-23.

    The signal is real (a feature, the hour, predicts the label) and strong, so a working pipeline must find
    it out of sample; the noise is a tenth of it.
    """
    rng = np.random.default_rng(seed)
    price = 1.2
    bars = []
    for i in range(n):
        t = start + 3600 * i
        hour_of_prev_close = (t // 3600) % 24  # the previous bar closed at this bar's open
        drift = 0.0008 if hour_of_prev_close < 12 else -0.0008
        o = price
        c = o + drift + rng.normal(0, 0.00008)
        hi, lo = max(o, c) + abs(rng.normal(0, 0.0001)), min(o, c) - abs(rng.normal(0, 0.0001))
        bars.append(
            Bar(
                feed="F",
                symbol="EURUSD",
                timeframe=int(Timeframe.H1),
                time=t,
                open=round(o * PRICE_SCALE),
                high=round(hi * PRICE_SCALE),
                low=round(lo * PRICE_SCALE),
                close=round(c * PRICE_SCALE),
                tick_volume=int(rng.integers(100, 1000)),
                spread=10,
            )
        )
        price = c
    return bars
