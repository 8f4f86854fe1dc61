"""Feature engineering service (port 8011): feature vectors on bar close (and per tick where configured).

It subscribes to closed bars (`md.bar.<feed>.<symbol>.<tf>`), keeps one `FeatureEngine` per series, and on
each bar close publishes the vector on `feat.<feed>.<symbol>.<tf>` and stores it as the series' latest in
the cache; `GET /api/v1/...` reads it back (see `aitrading.features.api`). For the symbols named
in `FeaturesConfig.tick_symbols` it also publishes a vector per tick on `feat.<feed>.<symbol>.TICK`: the
latest bar vector of `tick_timeframe` plus the tick's spread, its move since that bar's close and the
seconds since then.

Warm-up from stored bars
------------------------
An engine needs 49 bars before its first vector (EMA 50), so a restarted service would stay silent for
49 bars of every series. Instead it replays stored bars (`aitrading.features.history`: the tick store in
process, the database service's history API in split mode) into each engine without publishing them:

- **At start**, in the background, for every stored feed/symbol and each of `warmup_timeframes`: the last
  `warmup_bars` stored bars; the latest vector goes to the cache (not the bus), so the HTTP API and the
  per-tick vectors answer at once.
- **When a series' first live bar comes** (a new series, or one the start did not reach): the last
  `warmup_bars` stored bars before it, then the live bar, which is published. After a start warm-up the
  same step replays the bars stored meanwhile, so a bar closed while the service was subscribing is not
  skipped.

The engines are deterministic, so a restarted service publishes the vectors an uninterrupted one would
have, exactly when the store holds no more than `warmup_bars` bars of the series before the restart (the
replay then covers all of them). With a longer history the restarted engine starts from a later bar: the
exponential indicators forget their start (measured on EURUSD H1: below 1e-13 after 500 bars) and the
running sums of the windowed ones keep a float rounding difference of about 1e-12 (absolute); see
docs/adr/0017-features-and-ml.md. A bar corrected after it was published (a late tick) is replayed as
stored, i.e. corrected, where the live engine had ignored the correction.

Missing history degrades to warming from live bars, never to a failure: no history source or
`warmup_bars = 0` (status `live`), no stored bars for the series (a new symbol: `live`, logged), the source
failing (`cold`: a warning names the series and the reason; the service asks again after
`warmup_retry_s`, and that fresh replay replaces an engine that has since run on across the gap), history
not available in this
configuration (split mode on the embedded chDB store: the database service answers 503 with that reason;
one warning, then every series is `live`). `GET /api/v1/status` shows which.
Bars are handled one at a time per subscription, so a series' first bar waits for its warm-up (the store
in process: milliseconds; over HTTP bounded by the client's timeout); a replay returns to the event loop
every 200 bars. The warm-up at start replays closed bars only (those that opened before the current
period): a bar still forming then is published when it closes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request

from aitrading.common.auth import Principal
from aitrading.common.bus import Bus
from aitrading.common.bus.base import Subscription
from aitrading.common.bus.codec import Message, encode
from aitrading.common.clock import NS_PER_S, Clock
from aitrading.common.config import FeaturesConfig
from aitrading.common.errors import OperationalError
from aitrading.common.service import Check, Service
from aitrading.features.api import features_router
from aitrading.features.history import BarHistory, recent_bars
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


@dataclass(eq=False)
class _Series:
    """One feed/symbol/timeframe: its engine and how it was warmed up."""

    engine: FeatureEngine
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    synced: bool = False
    """The stored bars before live ones were replayed (or need not be): live bars go straight in."""
    state: str = "new"
    """`history` (warmed from stored bars), `live` (warms from live bars: no history for it) or `cold`
    (history failed; asked again after `warmup_retry_s` until the engine produces)."""
    replayed: int = 0
    next_try_ns: int = 0
    gapped: bool = False
    """A catch-up failed after the engine was warmed: it has run on across missing bars, so the next fresh
    replay replaces it however many bars it has seen."""


class FeaturePipeline:
    """Bars in, feature vectors out: the bus handlers of the service (usable without HTTP)."""

    def __init__(
        self,
        bus: Bus,
        cache: Cache | None,
        clock: Clock,
        config: FeaturesConfig,
        history: BarHistory | None = None,
    ) -> None:
        self._bus = bus
        self._cache = cache
        self._clock = clock
        self._config = config
        self._history = history if config.warmup_bars > 0 else None
        self._owned_history = history
        self._tick_tf = Timeframe.parse(config.tick_timeframe)
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._latest: dict[tuple[str, str, int], tuple[Bar, dict[str, float]]] = {}
        self._subs: list[Subscription] = []
        self._warm_task: asyncio.Task[None] | None = None
        self.published = 0
        self.warmup_failures = 0
        self.last_warmup_error = ""
        self.start_warmup = "not started"
        self.history_off = ""
        """Why history was switched off after it said it is not available here (empty: it was not)."""

    async def start(self) -> None:
        """Subscribe to closed bars (and ticks if configured), then warm up the stored series meanwhile."""
        self._subs.append(await self._bus.subscribe(bar_pattern(), self._on_message))
        if self._config.tick_symbols:
            self._subs.append(await self._bus.subscribe(tick_pattern(), self._on_message))
            self._subs.append(await self._bus.subscribe("md.ticks.*", self._on_message))
        if self._history is None:
            self.start_warmup = (
                "off: no history source" if self._owned_history is None else "off: warmup_bars is 0"
            )
            _log.info("features_warmup_off", reason=self.start_warmup, warmup_bars=self._config.warmup_bars)
            return
        self.start_warmup = "running"
        self._warm_task = asyncio.create_task(self.warm_stored_series(), name="features:warmup")

    async def stop(self) -> None:
        """Stop the warm-up, unsubscribe and release the history source."""
        task, self._warm_task = self._warm_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.unsubscribe()
        if self._owned_history is not None:
            await self._owned_history.close()

    async def wait_warm(self) -> None:
        """Wait until the warm-up at start has finished (tests, benchmarks)."""
        if self._warm_task is not None:
            await asyncio.gather(self._warm_task, return_exceptions=True)

    async def warm_stored_series(self) -> None:
        """Warm up every stored feed/symbol in each of `warmup_timeframes`, caching its latest vector."""
        history = self._history
        if history is None:
            return
        try:
            stored = await history.series()
        except Exception as exc:  # no list of series: each warms when its first live bar comes
            self.start_warmup = f"failed: {exc}"
            self._failed(f"listing stored series: {exc}", exc)
            _log.warning("features_warmup_unavailable", source=history.name, error=str(exc))
            return
        timeframes = sorted(Timeframe.parse(t) for t in self._config.warmup_timeframes)
        now_s = self._clock.now_ns() // NS_PER_S
        warmed = 0
        for feed, symbol in stored:
            for tf in timeframes:
                # Closed bars only: the one that opened at the current period's start is still forming.
                # Replayed now, its live close would count as a bar already seen, and never be published.
                until_s = now_s - now_s % tf.seconds
                key = (feed, symbol, int(tf))
                series = self._series_of(key)
                if series is None:
                    continue
                async with series.lock:
                    if series.synced or series.engine.count:  # a live bar came first and warmed it
                        continue
                    row, last = await self._warm(series, key, until_s, catch_up=False)
                if row is not None and last is not None:
                    warmed += 1
                    vector = self._vector(last, row)
                    self._latest[key] = (last, vector.values)
                    await self._cache_vector(vector)
        self.start_warmup = f"done: {warmed} series warmed up from the {history.name}"
        _log.info("features_warmup_done", series=warmed, stored=len(stored), source=history.name)

    def _series_of(self, key: tuple[str, str, int]) -> _Series | None:
        series = self._series.get(key)
        if series is None:
            try:
                engine = FeatureEngine(key[2])
            except ValueError:
                _log.warning("features_unknown_timeframe", timeframe=key[2], symbol=key[1])
                return None
            series = self._series[key] = _Series(engine)
        return series

    async def _warm(
        self, series: _Series, key: tuple[str, str, int], until_s: int, *, catch_up: bool
    ) -> tuple[tuple[float, ...] | None, Bar | None]:
        """Replay stored bars before `until_s` into the series' engine; return its last row and bar.

        With `catch_up`, an engine already warmed from history gets the bars stored after its last one;
        otherwise a fresh engine replays the last `warmup_bars`, and replaces the series' engine unless
        it saw fewer bars (a new symbol keeps the live bars it has). Never raises: a failing source is
        logged and leaves the series `cold` until `warmup_retry_s` has passed.
        """
        history = self._history
        if history is None:
            series.synced, series.state = True, "live"
            return None, None
        feed, symbol, tf = key[0], key[1], Timeframe(key[2])
        now = self._clock.now_ns()
        if now < series.next_try_ns:
            return None, None
        engine = series.engine
        try:
            if catch_up and series.state == "history" and engine.last_time is not None:
                bars = await history.bars(feed, symbol, tf, engine.last_time + 1, until_s)
            else:
                bars = await recent_bars(history, feed, symbol, tf, until_s, self._config.warmup_bars)
                engine = FeatureEngine(tf)
        except Exception as exc:  # history is a nicety: the series warms from live bars meanwhile
            # A failed catch-up keeps the engine warmed at start, but the bars it missed are a gap: `cold`
            # makes the next try (after `warmup_retry_s`) replay afresh, which replaces that engine.
            warmed = series.state == "history"
            series.gapped = series.gapped or (catch_up and warmed)
            series.state = "cold"
            series.next_try_ns = now + int(self._config.warmup_retry_s * NS_PER_S)
            self._failed(f"{feed}/{symbol}/{tf.name}: {exc}", exc)
            if self._history is None:  # not available in this configuration: said once, in `_failed`
                series.synced = True
                series.state = "history" if warmed else "live"
                return None, None
            _log.warning(
                "features_warmup_failed",
                feed=feed,
                symbol=symbol,
                timeframe=tf.name,
                source=history.name,
                error=str(exc),
                then=f"warming from live bars; asking again in {self._config.warmup_retry_s:g} s",
            )
            return None, None
        row, last = await _replay(engine, bars)
        if engine is not series.engine:
            if engine.count < series.engine.count and not series.gapped:  # fewer than it has seen live
                row, last = None, None
            else:
                series.engine, series.gapped = engine, False
        series.replayed += len(bars)
        series.state = "history" if series.engine.count else "live"
        if series.state == "live":
            series.synced = True  # nothing stored: a new series, which warms from live bars
            _log.info("features_warmup_no_history", feed=feed, symbol=symbol, timeframe=tf.name)
        return row, last

    def _failed(self, error: str, exc: Exception) -> None:
        self.warmup_failures += 1
        self.last_warmup_error = error[:300]
        if isinstance(exc, OperationalError) and self._history is not None:
            # History is not available in this configuration (split mode on the embedded chDB store):
            # asking again would not help, so every series warms from live bars, as before warm-up.
            _log.warning(
                "features_warmup_off",
                source=self._history.name,
                reason=str(exc),
                then="warming from live bars",
            )
            self.history_off = str(exc)[:300]
            self._history = None

    async def _on_message(self, subject: str, msg: Message) -> None:
        if isinstance(msg, Bar):
            await self.on_bar(msg)
        elif isinstance(msg, Tick):
            await self.on_tick(msg)
        elif isinstance(msg, TickBatch):
            for tick in msg.ticks:
                await self.on_tick(tick)

    async def on_bar(self, bar: Bar) -> FeatureVector | None:
        """Update the series' engine with a closed bar; publish and cache its vector once warmed up.

        The series' first live bar first replays the stored bars before it (see the module docstring).
        """
        key = (bar.feed, bar.symbol, bar.timeframe)
        series = self._series_of(key)
        if series is None:
            return None
        async with series.lock:
            if not series.synced:
                await self._warm(series, key, bar.time, catch_up=True)
                if series.state == "history":
                    series.synced = True
            try:
                row = series.engine.update(bar)
            except ValueError as exc:  # a bad bar is dropped, the series goes on
                _log.warning("features_bad_bar", feed=bar.feed, symbol=bar.symbol, error=str(exc))
                return None
            if row is None:
                return None
            if series.state != "cold":  # it produces: never replace its engine, unless history failed
                series.synced = True  # cold: the next try replays afresh and heals what it missed
            vector = self._vector(bar, row)
            self._latest[key] = (bar, vector.values)
        await self._emit(vector)
        return vector

    @staticmethod
    def _vector(bar: Bar, row: tuple[float, ...]) -> FeatureVector:
        tf = Timeframe(bar.timeframe)
        return FeatureVector(
            feed=bar.feed,
            symbol=bar.symbol,
            timeframe=tf.name,
            time=bar.time,
            ts_ms=(bar.time + tf.seconds) * 1000,
            feature_set=FEATURE_SET_VERSION,
            values=dict(zip(FEATURE_NAMES, row, strict=True)),
        )

    def status(self) -> dict[str, Any]:
        """How the series were warmed up, what was published, and the last warm-up failure."""
        states: dict[str, int] = {}
        for series in self._series.values():
            states[series.state] = states.get(series.state, 0) + 1
        return {
            "history": None if self._history is None else self._history.name,
            "history_off": self.history_off,
            "warmup_bars": self._config.warmup_bars,
            "start_warmup": self.start_warmup,
            "series": states,
            "bars_replayed": sum(s.replayed for s in self._series.values()),
            "published": self.published,
            "warmup_failures": self.warmup_failures,
            "last_warmup_error": self.last_warmup_error,
        }

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
        await self._cache_vector(vector)

    async def _cache_vector(self, vector: FeatureVector) -> None:
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
        "GET /api/v1/{feed}/{symbol}/{timeframe}: the latest vector (cached)",
        "warm-up from stored bars at start and on a series' first bar (tick store or database service); "
        "GET /api/v1/status",
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
        history: BarHistory | None = None,
    ) -> None:
        super().__init__(checks)
        self.pipeline = FeaturePipeline(bus, cache, clock, config or FeaturesConfig(), history)
        self.add_router(features_router(cache, authenticate, self.pipeline.status))

    async def _on_start(self) -> None:
        await super()._on_start()
        await self.pipeline.start()

    async def _on_stop(self) -> None:
        await self.pipeline.stop()
        await super()._on_stop()


_REPLAY_SLICE = 200
"""Bars replayed between two returns to the event loop (~5 ms): a long warm-up must not stall the loop."""


async def _replay(engine: FeatureEngine, bars: Sequence[Bar]) -> tuple[tuple[float, ...] | None, Bar | None]:
    """Feed stored bars to `engine` without publishing; return the last row and its bar (None if none)."""
    row: tuple[float, ...] | None = None
    last: Bar | None = None
    for i, bar in enumerate(bars):
        if i and not i % _REPLAY_SLICE:
            await asyncio.sleep(0)  # the series' lock keeps its engine to this replay meanwhile
        try:
            out = engine.update(bar)
        except ValueError as exc:  # a bad stored bar is skipped, as a live one would have been
            _log.warning("features_bad_bar", feed=bar.feed, symbol=bar.symbol, error=str(exc), stored=True)
            continue
        if out is not None:
            row, last = out, bar
    if last is not None and last.time != engine.last_time:  # the last bar did not produce: no vector
        return None, None
    return row, last
