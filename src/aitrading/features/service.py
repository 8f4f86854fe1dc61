"""Feature engineering service (port 8011): feature vectors on bar close (and per tick where configured).

It subscribes to closed bars (`md.bar.<feed>.<symbol>.<tf>`), keeps one `FeatureEngine` per series, and on
each bar close publishes the vector on `feat.<feed>.<symbol>.<tf>` and stores it as the series' latest in
the cache; `GET /api/v1/features/...` reads it back (see `aitrading.features.api`). For the symbols named
in `FeaturesConfig.tick_symbols` it also publishes a vector per tick on `feat.<feed>.<symbol>.TICK`: the
latest bar vector of `tick_timeframe` plus the tick's spread, its move since that bar's close and the
seconds since then.

The engines warm up from the live bars (the longest warm-up is 49 bars, EMA 50): a restarted service
publishes again after that many bars of each series. Back-filling from the history API is a planned
improvement (see docs/adr/0017-features-and-ml.md).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import structlog
from fastapi import Request

from aitrading.common.auth import Principal
from aitrading.common.bus import Bus
from aitrading.common.bus.base import Subscription
from aitrading.common.bus.codec import Message, encode
from aitrading.common.clock import Clock
from aitrading.common.config import FeaturesConfig
from aitrading.common.service import Check, Service
from aitrading.features.api import features_router
from aitrading.features.messages import (
    TICK_TIMEFRAME,
    FeatureVector,
    feature_cache_key,
    feature_subject,
)
from aitrading.features.vectors import FEATURE_NAMES, FEATURE_SET_VERSION, FeatureEngine
from aitrading.model.ids import bar_pattern, tick_pattern
from aitrading.model.market import Bar, Tick, TickBatch, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.storage.cache import Cache

__all__ = ["TICK_FEATURE_NAMES", "FeaturePipeline", "FeaturesConfig", "FeaturesService"]

_log = structlog.get_logger("features")

TICK_FEATURE_NAMES = ("tick_spread_bps", "tick_ret", "tick_age_s")
"""Added to the latest bar vector in per-tick vectors."""


class FeaturePipeline:
    """Bars in, feature vectors out: the bus handlers of the service (usable without HTTP)."""

    def __init__(self, bus: Bus, cache: Cache | None, clock: Clock, config: FeaturesConfig) -> None:
        self._bus = bus
        self._cache = cache
        self._clock = clock
        self._config = config
        self._tick_tf = Timeframe.parse(config.tick_timeframe)
        self._engines: dict[tuple[str, str, int], FeatureEngine] = {}
        self._latest: dict[tuple[str, str, int], tuple[Bar, dict[str, float]]] = {}
        self._subs: list[Subscription] = []
        self.published = 0

    async def start(self) -> None:
        """Subscribe to closed bars (and to ticks when some symbol wants per-tick vectors)."""
        self._subs.append(await self._bus.subscribe(bar_pattern(), self._on_message))
        if self._config.tick_symbols:
            self._subs.append(await self._bus.subscribe(tick_pattern(), self._on_message))
            self._subs.append(await self._bus.subscribe("md.ticks.*", self._on_message))

    async def stop(self) -> None:
        """Unsubscribe."""
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.unsubscribe()

    async def _on_message(self, subject: str, msg: Message) -> None:
        if isinstance(msg, Bar):
            await self.on_bar(msg)
        elif isinstance(msg, Tick):
            await self.on_tick(msg)
        elif isinstance(msg, TickBatch):
            for tick in msg.ticks:
                await self.on_tick(tick)

    async def on_bar(self, bar: Bar) -> FeatureVector | None:
        """Update the series' engine with a closed bar; publish and cache its vector once warmed up."""
        key = (bar.feed, bar.symbol, bar.timeframe)
        engine = self._engines.get(key)
        if engine is None:
            try:
                engine = self._engines[key] = FeatureEngine(bar.timeframe)
            except ValueError:
                _log.warning("features_unknown_timeframe", timeframe=bar.timeframe, symbol=bar.symbol)
                return None
        try:
            row = engine.update(bar)
        except ValueError as exc:  # a bad bar is dropped, the series goes on
            _log.warning("features_bad_bar", feed=bar.feed, symbol=bar.symbol, error=str(exc))
            return None
        if row is None:
            return None
        values = dict(zip(FEATURE_NAMES, row, strict=True))
        self._latest[key] = (bar, values)
        tf = Timeframe(bar.timeframe)
        vector = FeatureVector(
            feed=bar.feed,
            symbol=bar.symbol,
            timeframe=tf.name,
            time=bar.time,
            ts_ms=(bar.time + tf.seconds) * 1000,
            feature_set=FEATURE_SET_VERSION,
            values=values,
        )
        await self._emit(vector)
        return vector

    async def on_tick(self, tick: Tick) -> FeatureVector | None:
        """Publish a per-tick vector for a configured symbol whose bar vector is warmed up."""
        if tick.symbol not in self._config.tick_symbols or tick.bid <= 0 or tick.ask <= 0:
            return None
        latest = self._latest.get((tick.feed, tick.symbol, int(self._tick_tf)))
        if latest is None:
            return None
        bar, values = latest
        mid = (tick.bid + tick.ask) / (2 * PRICE_SCALE)
        close_ms = (bar.time + self._tick_tf.seconds) * 1000
        tick_values = dict(values)
        tick_values["tick_spread_bps"] = (tick.ask - tick.bid) / PRICE_SCALE / mid * 1e4
        tick_values["tick_ret"] = math.log(mid * PRICE_SCALE / bar.close)
        tick_values["tick_age_s"] = max(0.0, (tick.time_msc - close_ms) / 1000.0)
        vector = FeatureVector(
            feed=tick.feed,
            symbol=tick.symbol,
            timeframe=TICK_TIMEFRAME,
            time=bar.time,
            ts_ms=tick.time_msc,
            feature_set=FEATURE_SET_VERSION + "+tick",
            values=tick_values,
        )
        await self._emit(vector)
        return vector

    async def _emit(self, vector: FeatureVector) -> None:
        await self._bus.publish(feature_subject(vector.feed, vector.symbol, vector.timeframe), vector)
        self.published += 1
        if self._cache is not None:
            key = feature_cache_key(vector.feed, vector.symbol, vector.timeframe)
            try:
                await self._cache.set(key, encode(vector), ttl=self._config.cache_ttl_s)
            except Exception as exc:  # a cache outage must not stop publishing; readers see it as 503
                _log.warning("features_cache_failed", key=key, error=repr(exc))


class FeaturesService(Service):
    """Feature engineering: vectors per feed/symbol/timeframe on the bus, latest ones over HTTP."""

    name = "features"
    capabilities = (
        "feature vectors on bar close: feat.<feed>.<symbol>.<tf> (indicators, returns, volatility, spread, "
        "session/time of day), per tick for configured symbols (feat.<feed>.<symbol>.TICK)",
        "GET /api/v1/features/{feed}/{symbol}/{timeframe}: the latest vector (cached)",
    )

    def __init__(
        self,
        checks: dict[str, Check] | None,
        *,
        bus: Bus,
        cache: Cache | None,
        clock: Clock,
        authenticate: Callable[[Request], Awaitable[Principal]],
        config: FeaturesConfig | None = None,
    ) -> None:
        super().__init__(checks)
        self.pipeline = FeaturePipeline(bus, cache, clock, config or FeaturesConfig())
        self.add_router(features_router(cache, authenticate))

    async def _on_start(self) -> None:
        await super()._on_start()
        await self.pipeline.start()

    async def _on_stop(self) -> None:
        await self.pipeline.stop()
        await super()._on_stop()
