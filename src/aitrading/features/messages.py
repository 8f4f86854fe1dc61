"""The features service's bus message and subjects: `feat.<feed>.<symbol>.<tf>`."""

from __future__ import annotations

from aitrading.common.bus.codec import Message
from aitrading.common.bus.subjects import token
from aitrading.model.market import Timeframe

__all__ = ["TICK_TIMEFRAME", "FeatureVector", "feature_cache_key", "feature_pattern", "feature_subject"]

TICK_TIMEFRAME = "TICK"
"""The timeframe token of per-tick vectors (`feat.<feed>.<symbol>.TICK`)."""


class FeatureVector(Message, frozen=True, kw_only=True):
    """The features of one feed/symbol/timeframe known at `ts_ms` (a bar's close, or a tick's time).

    `time` is the open time (UTC epoch seconds) of the bar the vector was computed at; `feature_set`
    names the definitions (`aitrading.features.vectors.FEATURE_SET_VERSION`) so a model can refuse a
    vector it was not trained on. `values` maps feature names to floats (never NaN: vectors are published
    only once every feature is defined).
    """

    feed: str
    symbol: str
    timeframe: str
    time: int
    ts_ms: int
    feature_set: str
    values: dict[str, float]


def _tf(timeframe: Timeframe | int | str) -> str:
    if timeframe == TICK_TIMEFRAME:
        return TICK_TIMEFRAME
    if isinstance(timeframe, str):
        return Timeframe.parse(timeframe).name
    return Timeframe(timeframe).name


def feature_subject(feed: str, symbol: str, timeframe: Timeframe | int | str) -> str:
    """`feat.<feed>.<symbol>.<tf>` (`tf` a timeframe name such as `H1`, or `TICK`)."""
    if not feed or not symbol:
        raise ValueError("feed and symbol must not be empty")
    return f"feat.{token(feed)}.{token(symbol)}.{_tf(timeframe)}"


def feature_pattern(feed: str | None = None) -> str:
    """Pattern for the feature vectors of one feed, or of every feed."""
    return f"feat.{token(feed)}.*.*" if feed is not None else "feat.*.*.*"


def feature_cache_key(feed: str, symbol: str, timeframe: Timeframe | int | str) -> str:
    """The cache key of the latest vector of a series, with the exact names (subject tokens are lossy)."""
    return f"feat:last:{len(feed)}:{feed}:{symbol}:{_tf(timeframe)}"
