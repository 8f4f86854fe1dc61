"""Warm-up from stored bars: a restarted features service publishes what an uninterrupted one would have.

The bridge's part is played as the bridge does it: each closed bar is written to the tick store and
published on `md.bar.*`. History comes from a real chDB store, in process or through the database
service's API served by uvicorn on a free port.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from aitrading.certs import init_certs
from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.bus import Bus
from aitrading.common.bus.codec import Message, decode
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import NS_PER_S, TestClock
from aitrading.common.config import FeaturesConfig, load_config
from aitrading.common.logging import configure_logging
from aitrading.common.serving import HttpServers
from aitrading.dbservice.service import DatabaseService
from aitrading.features.history import BarHistory, HttpBarHistory, StoreBarHistory, recent_bars
from aitrading.features.messages import FeatureVector, feature_cache_key, feature_pattern
from aitrading.features.service import FeaturePipeline, FeaturesService
from aitrading.features.vectors import FEATURE_NAMES, FeatureEngine
from aitrading.kernel import Kernel
from aitrading.ml.data import load_bars_csv
from aitrading.model.ids import bar_subject
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.storage.cache import MemoryCache
from aitrading.storage.ticks import ChDBTickStore

SECRET = "a-test-secret-of-enough-length-for-features-warmup"


def _walk(n: int, *, symbol: str = "EURUSD", start: int = 1_700_000_100, seed: int = 5) -> list[Bar]:
    """M5 bars of a random walk with gaps (a quiet hour every 100 bars), like a market with pauses."""
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 0.001, n))
    bars, t = [], start
    for i, c in enumerate(close):
        o = c - rng.normal(0, 0.0005)
        hi, lo = max(o, c) + abs(rng.normal(0, 0.0004)), min(o, c) - abs(rng.normal(0, 0.0004))
        t += 300 if i % 100 else 3600
        bars.append(
            Bar(
                feed="F",
                symbol=symbol,
                timeframe=int(Timeframe.M5),
                time=t,
                open=round(o * PRICE_SCALE),
                high=round(hi * PRICE_SCALE),
                low=round(lo * PRICE_SCALE),
                close=round(c * PRICE_SCALE),
                tick_volume=int(rng.integers(1, 500)),
                spread=int(rng.integers(0, 20)),
                real_volume=int(rng.integers(0, 10**9)),
            )
        )
    return bars


class _Sink:
    def __init__(self) -> None:
        self.got: list[FeatureVector] = []

    async def __call__(self, subject: str, msg: Message) -> None:
        assert isinstance(msg, FeatureVector)
        self.got.append(msg)


class _Rig:
    """A bus, a cache, a clock and a store shared by the service's successive lives (its restarts)."""

    def __init__(self, bus: Bus, store: ChDBTickStore, tokens: TokenService) -> None:
        self.bus, self.store, self.tokens = bus, store, tokens
        self.clock = TestClock(start_ns=0)
        self.cache = MemoryCache()

    async def service(self, history: BarHistory | None, **cfg: object) -> FeaturesService:
        service = FeaturesService(
            {},
            bus=self.bus,
            cache=self.cache,
            clock=self.clock,
            authenticate=principal_dependency(self.tokens),
            config=FeaturesConfig(**cfg),
            history=history,
        )
        await service.start()
        await service.pipeline.wait_warm()
        return service

    async def close_bars(self, bars: Sequence[Bar]) -> None:
        """Do what the bridge does with closed bars: store and publish each; the clock follows.

        The bars are stored in one write first (chDB writes cost milliseconds each): the service reads
        only bars that opened before its clock or before the live bar it handles, so it cannot see
        the later ones early.
        """
        await self.store.write_bars(bars)
        for bar in bars:
            self.clock.set_ns((bar.time + Timeframe(bar.timeframe).seconds) * NS_PER_S)
            await self.bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)


@pytest.fixture
async def rig(chdb_store: ChDBTickStore) -> AsyncIterator[_Rig]:
    bus = MemoryBus()
    await bus.connect()
    try:
        yield _Rig(bus, chdb_store, TokenService(SECRET))
    finally:
        await bus.close()


async def _uninterrupted(bars: Sequence[Bar]) -> list[FeatureVector]:
    """The vectors of a service that saw every bar (its own bus, no store, no history)."""
    bus = MemoryBus()
    await bus.connect()
    sink = _Sink()
    await bus.subscribe(feature_pattern(), sink)
    service = FeaturesService(
        {},
        bus=bus,
        cache=None,
        clock=TestClock(),
        authenticate=principal_dependency(TokenService(SECRET)),
        config=FeaturesConfig(warmup_bars=0),
    )
    await service.start()
    try:
        for bar in bars:
            await bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)
    finally:
        await service.stop()
        await bus.close()
    return sink.got


async def _restarted(
    rig: _Rig, before: Sequence[Bar], after: Sequence[Bar], history: BarHistory | None, **cfg: object
) -> tuple[list[FeatureVector], FeaturesService]:
    """Run the service over `before`, stop it, start a new one with `history`, run it over `after`."""
    first = await rig.service(None, warmup_bars=0)
    await rig.close_bars(before)
    await first.stop()
    sink = _Sink()
    sub = await rig.bus.subscribe(feature_pattern(), sink)
    second = await rig.service(history, **cfg)
    await rig.close_bars(after)
    await sub.unsubscribe()
    return sink.got, second


@pytest.fixture
async def dbservice_url(chdb_store: ChDBTickStore) -> AsyncIterator[str]:
    """The database service over the same store, served by uvicorn on a free loopback port."""
    service = DatabaseService({}, store=chdb_store, tokens=TokenService(SECRET))
    await service.start()
    servers = HttpServers()
    servers.add("dbservice", lambda: service.app, "127.0.0.1", 0)
    await servers.start()
    try:
        yield f"http://127.0.0.1:{servers.port('dbservice')}"
    finally:
        await servers.stop()
        await service.stop()


def _http_history(url: str, tokens: TokenService, *, page: int = 50_000) -> HttpBarHistory:
    http = httpx.AsyncClient(base_url=url, timeout=5.0)
    return HttpBarHistory(http, lambda: tokens.issue("svc:features", ttl_s=60), page=page)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_after_a_restart_the_first_live_bar_publishes_the_vector_an_uninterrupted_service_would(
    rig: _Rig,
) -> None:
    bars = _walk(400)
    reference = await _uninterrupted(bars)
    got, service = await _restarted(rig, bars[:300], bars[300:], StoreBarHistory(rig.store))
    await service.stop()

    expected = [v for v in reference if v.time >= bars[300].time]
    assert len(got) == len(expected) == 100  # from the first live bar on, none lost to a warm-up
    assert got == expected  # bit for bit: the replay covered every bar the other one saw
    assert service.pipeline.status()["series"] == {"history": 1}


async def test_warm_up_over_the_database_service_api_gives_the_same_vectors(
    rig: _Rig, dbservice_url: str
) -> None:
    bars = _walk(400, seed=11)
    reference = await _uninterrupted(bars)
    # Pages of 64 bars: the client follows the API's cursor across the windows of `recent_bars`.
    history = _http_history(dbservice_url, rig.tokens, page=64)
    got, service = await _restarted(rig, bars[:250], bars[250:], history)
    status = service.pipeline.status()
    await service.stop()

    assert got == [v for v in reference if v.time >= bars[250].time]
    assert status["history"] == "database service"
    assert status["warmup_failures"] == 0
    assert status["bars_replayed"] == 250


async def test_start_warm_up_caches_the_latest_vector_before_any_live_bar(
    rig: _Rig, dbservice_url: str
) -> None:
    bars = _walk(200, seed=2)
    reference = await _uninterrupted(bars)
    first = await rig.service(None, warmup_bars=0)
    await rig.close_bars(bars)
    await first.stop()
    tick = Tick(
        feed="F", symbol="EURUSD", time_msc=bars[-1].time * 1000, bid=bars[-1].close, ask=bars[-1].close
    )
    await rig.store.write_ticks([tick])  # the bridge stores ticks: that is how the series is listed
    await rig.cache.delete(feature_cache_key("F", "EURUSD", "M5"))  # an in-process cache dies with it

    second = await rig.service(_http_history(dbservice_url, rig.tokens), warmup_timeframes=["M5", "H1"])
    raw = await rig.cache.get(feature_cache_key("F", "EURUSD", "M5"))
    status = second.pipeline.status()
    await second.stop()

    assert raw is not None
    assert decode(raw) == reference[-1]
    assert status["start_warmup"] == "done: 1 series warmed up from the database service"
    assert status["series"] == {"history": 1, "live": 1}  # H1 has no stored bars
    assert status["published"] == 0  # history is not published again


async def test_with_more_history_than_the_warm_up_window_vectors_agree_to_float_rounding(
    rig: _Rig,
) -> None:
    bars = _walk(1500, seed=7)
    reference = await _uninterrupted(bars)
    got, service = await _restarted(
        rig, bars[:1200], bars[1200:], StoreBarHistory(rig.store), warmup_bars=600
    )
    await service.stop()

    expected = [v for v in reference if v.time >= bars[1200].time]
    assert [v.time for v in got] == [v.time for v in expected]
    worst = max(
        abs(a - b)
        for g, e in zip(got, expected, strict=True)
        for a, b in zip(g.values.values(), e.values.values(), strict=True)
    )
    assert worst < 1e-9  # running sums of the windowed indicators keep ~1e-12 of float rounding


async def test_real_eurusd_h1_restart_after_a_year_matches_within_rounding(
    rig: _Rig, shared_data: Path
) -> None:
    path = shared_data / "backtestingpy_EURUSD_H1_2017-2018.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    bars = load_bars_csv(path, symbol="EURUSD", timeframe=Timeframe.H1, feed="F")
    reference = await _uninterrupted(bars)
    got, service = await _restarted(rig, bars[:4000], bars[4000:], StoreBarHistory(rig.store))
    await service.stop()

    expected = [v for v in reference if v.time >= bars[4000].time]
    assert len(got) == len(expected) == len(bars) - 4000
    for g, e in zip(got, expected, strict=True):
        assert g.time == e.time
        assert all(
            math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
            for a, b in zip(g.values.values(), e.values.values(), strict=True)
        )


async def test_an_unreachable_database_service_degrades_to_warming_from_live_bars(rig: _Rig) -> None:
    bars = _walk(120, seed=3)
    reference = await _uninterrupted(bars[60:])  # what a service that starts cold publishes
    history = _http_history(f"http://127.0.0.1:{_free_port()}", rig.tokens)
    got, service = await _restarted(rig, bars[:60], bars[60:], history, warmup_retry_s=86400)
    status = service.pipeline.status()
    await service.stop()

    assert got == reference
    assert len(got) == 60 - 49  # the EMA 50 warm-up again, as before this feature
    assert status["start_warmup"].startswith("failed: database service unreachable")
    assert status["series"] == {"cold": 1}
    assert status["warmup_failures"] == 2  # the list of series at start, the series' first bar
    assert status["history"] == "database service"  # an outage: asked again after warmup_retry_s
    assert "unreachable" in status["last_warmup_error"]


async def test_a_database_service_without_a_store_degrades_with_its_reason(rig: _Rig) -> None:
    service = DatabaseService({}, store=None, tokens=rig.tokens)  # split mode on embedded chDB
    await service.start()
    servers = HttpServers()
    servers.add("dbservice", lambda: service.app, "127.0.0.1", 0)
    await servers.start()
    try:
        history = _http_history(f"http://127.0.0.1:{servers.port('dbservice')}", rig.tokens)
        bars = _walk(60, seed=4)
        got, features = await _restarted(rig, [], bars, history)
        status = features.pipeline.status()
        await features.stop()
    finally:
        await servers.stop()
        await service.stop()

    assert len(got) == 60 - 49
    assert "embedded tick store (chDB) is owned by the data bridge" in status["history_off"]
    assert status["history"] is None
    assert status["warmup_failures"] == 1  # said once, at start: the series' first bar does not ask
    assert status["series"] == {"live": 1}


async def test_a_new_symbol_warms_from_live_bars_and_is_not_asked_for_again(rig: _Rig) -> None:
    bars = _walk(80, symbol="NEWSYM", seed=9)
    reference = await _uninterrupted(bars)
    got, service = await _restarted(rig, [], bars, StoreBarHistory(rig.store))
    status = service.pipeline.status()
    await service.stop()

    assert got == reference  # the first 49 bars warm it, as they always did
    assert status["series"] == {"live": 1}
    assert status["warmup_failures"] == 0


class _Flaky:
    """A history source that fails while `down`."""

    def __init__(self, inner: BarHistory) -> None:
        self.inner, self.down, self.name = inner, True, "flaky"

    async def series(self) -> list[tuple[str, str]]:
        if self.down:
            raise ConnectionError("store down")
        return await self.inner.series()

    async def bars(self, feed: str, symbol: str, timeframe: Timeframe, from_s: int, to_s: int) -> list[Bar]:
        if self.down:
            raise ConnectionError("store down")
        return await self.inner.bars(feed, symbol, timeframe, from_s, to_s)

    async def close(self) -> None:
        await self.inner.close()


async def test_history_is_asked_again_after_the_retry_delay_while_the_series_is_still_cold(
    rig: _Rig,
) -> None:
    bars = _walk(300, seed=12)
    reference = await _uninterrupted(bars)
    flaky = _Flaky(StoreBarHistory(rig.store))
    first = await rig.service(None, warmup_bars=0)
    await rig.close_bars(bars[:200])
    await first.stop()
    sink = _Sink()
    await rig.bus.subscribe(feature_pattern(), sink)
    second = await rig.service(flaky, warmup_retry_s=1800)  # M5 bars: six of them
    await rig.close_bars(bars[200:203])  # cold: history failed at the first, not asked for again yet
    flaky.down = False
    await rig.close_bars(bars[203:210])
    status = second.pipeline.status()
    await second.stop()

    assert [v.time for v in sink.got] == [b.time for b in bars[206:210]]  # 30 minutes after the failure
    assert sink.got == [v for v in reference if bars[206].time <= v.time <= bars[209].time]
    assert status["series"] == {"history": 1}


async def test_recent_bars_reaches_back_across_gaps_and_stops_when_the_store_has_no_more(
    chdb_store: ChDBTickStore,
) -> None:
    early = _walk(50, seed=1)
    late = _walk(20, seed=1, start=early[-1].time + 5 * 86400)  # five days without bars
    await chdb_store.write_bars([*early, *late])
    history = StoreBarHistory(chdb_store, page=16)
    until = late[-1].time + 1

    got = await recent_bars(history, "F", "EURUSD", Timeframe.M5, until, 60)
    assert [b.time for b in got] == [b.time for b in [*early, *late][-60:]]
    everything = await recent_bars(history, "F", "EURUSD", Timeframe.M5, until, 1000)
    assert [b.time for b in everything] == [b.time for b in [*early, *late]]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert_dir = tmp_path_factory.mktemp("certs")
    init_certs(cert_dir)
    return cert_dir


async def test_split_features_service_warms_up_from_the_database_service_process_over_mtls(
    tmp_path: Path, certs: Path
) -> None:
    configure_logging("WARNING")
    ports = {"dbservice": _free_port(), "features": _free_port()}
    cfg = load_config(
        mode="test",
        services={**ports, "enabled": ["dbservice", "features"]},
        storage={"data_dir": str(tmp_path / "var")},
        simulator={"enabled": False},
        security={"tls": {"enabled": True, "cert_dir": str(certs), "mtls": True}},
        features={"warmup_timeframes": ["M5"]},
    )
    bars = _walk(120, seed=21)
    reference = await _uninterrupted(bars)
    # One clock for both processes (tokens are checked against it), just after the stored bars.
    clock = TestClock(start_ns=(bars[99].time + 300) * NS_PER_S)
    store_side = Kernel(cfg, ["dbservice"], simulate=False, clock=clock)
    await store_side.start()
    try:
        await store_side.ticks.write_bars(bars[:100])
        last = bars[99]
        await store_side.ticks.write_ticks(
            [Tick(feed="F", symbol="EURUSD", time_msc=last.time * 1000, bid=last.close, ask=last.close)]
        )
        features_side = Kernel(cfg, ["features"], simulate=False, migrate=False, clock=clock)
        await features_side.start()
        try:
            service = features_side.services["features"]
            assert isinstance(service, FeaturesService)
            await service.pipeline.wait_warm()
            assert features_side.bus is not None
            assert features_side.cache is not None
            sink = _Sink()
            await features_side.bus.subscribe(feature_pattern(), sink)
            for bar in bars[100:]:
                await features_side.bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)
            status = service.pipeline.status()
            cached = await features_side.cache.get(feature_cache_key("F", "EURUSD", "M5"))
        finally:
            await features_side.stop()
    finally:
        await store_side.stop()

    assert status["history"] == "database service"
    assert status["start_warmup"] == "done: 1 series warmed up from the database service"
    assert sink.got == [v for v in reference if v.time >= bars[100].time]
    assert cached is not None
    assert decode(cached) == reference[-1]


class _GatedHistory:
    """History that answers only when let through: a warm-up still running when a bar closes."""

    name = "gated"

    def __init__(self, stored: Sequence[Bar]) -> None:
        self.stored = list(stored)
        self.gate = asyncio.Event()
        self.calls = 0

    async def series(self) -> list[tuple[str, str]]:
        return [("F", "EURUSD")]

    async def bars(self, feed: str, symbol: str, tf: Timeframe, from_s: int, to_s: int) -> list[Bar]:
        self.calls += 1
        await self.gate.wait()
        return [b for b in self.stored if from_s <= b.time < to_s]

    async def close(self) -> None:
        return None


async def test_a_bar_that_closes_while_the_start_warm_up_runs_is_published() -> None:
    bars = _walk(200)
    stored, forming = bars[:199], bars[199]
    reference = [v for v in await _uninterrupted(bars) if v.time == forming.time]
    clock = TestClock(start_ns=(forming.time + 10) * NS_PER_S)  # the service starts as `forming` forms
    bus = MemoryBus()
    await bus.connect()
    sink = _Sink()
    await bus.subscribe(feature_pattern(), sink)
    history = _GatedHistory(stored)
    config = FeaturesConfig(warmup_timeframes=("M5",), warmup_bars=500)
    pipeline = FeaturePipeline(bus, None, clock, config, history)
    await pipeline.start()
    for _ in range(20):
        await asyncio.sleep(0)
    assert history.calls == 1  # the start warm-up waits for history, holding the series
    history.stored.append(forming)  # it closes: the bridge stores it, then publishes it
    clock.set_ns((forming.time + 300) * NS_PER_S)
    published = asyncio.create_task(bus.publish(bar_subject("F", "EURUSD", int(Timeframe.M5)), forming))
    for _ in range(20):
        await asyncio.sleep(0)
    history.gate.set()
    await published
    await pipeline.wait_warm()
    assert [v.time for v in sink.got] == [forming.time]
    assert sink.got == reference  # what an uninterrupted service published for it
    await pipeline.stop()
    await bus.close()


class _FlakyHistory(_GatedHistory):
    """History that fails while `down` is set."""

    def __init__(self, stored: Sequence[Bar]) -> None:
        super().__init__(stored)
        self.gate.set()
        self.down = False

    async def bars(self, feed: str, symbol: str, tf: Timeframe, from_s: int, to_s: int) -> list[Bar]:
        if self.down:
            raise ConnectionError("database service unreachable")
        return await super().bars(feed, symbol, tf, from_s, to_s)


@pytest.mark.parametrize("warmup_bars", [500, 60])  # more, and fewer, than the store holds
async def test_a_failed_catch_up_is_healed_by_a_fresh_replay_once_history_is_back(warmup_bars: int) -> None:
    bars = _walk(220)
    reference = {v.time: v for v in await _uninterrupted(bars)}
    clock = TestClock(start_ns=bars[200].time * NS_PER_S)  # started as bar 199 closed
    bus = MemoryBus()
    await bus.connect()
    sink = _Sink()
    await bus.subscribe(feature_pattern(), sink)
    history = _FlakyHistory(bars[:200])
    config = FeaturesConfig(warmup_timeframes=("M5",), warmup_bars=warmup_bars, warmup_retry_s=60)
    pipeline = FeaturePipeline(bus, None, clock, config, history)
    await pipeline.start()
    await pipeline.wait_warm()
    subject = bar_subject("F", "EURUSD", int(Timeframe.M5))
    history.stored += bars[200:205]  # closed and stored while this service was not yet listening
    history.down = True
    for bar in bars[205:207]:  # the catch-up fails: these are computed across the gap
        clock.set_ns((bar.time + 300) * NS_PER_S)
        history.stored.append(bar)
        await bus.publish(subject, bar)
    assert pipeline.status()["series"] == {"cold": 1}
    history.down = False
    for bar in bars[207:]:
        clock.set_ns((bar.time + 300) * NS_PER_S)
        history.stored.append(bar)
        await bus.publish(subject, bar)
    healed = [v for v in sink.got if v.time >= bars[207].time]
    assert [v.time for v in healed] == [b.time for b in bars[207:]]
    if warmup_bars >= 220:  # the replay covers every bar the uninterrupted service saw: bit for bit
        assert healed == [reference[b.time] for b in bars[207:]]
    else:  # the engine was replaced by a fresh replay of the last `warmup_bars`, not kept with its gap
        fresh = FeatureEngine(int(Timeframe.M5))
        for bar in bars[207 - warmup_bars : 207]:
            fresh.update(bar)
        rows = [fresh.update(bar) for bar in bars[207:]]
        assert [dict(zip(FEATURE_NAMES, r, strict=True)) for r in rows if r is not None] == [
            v.values for v in healed
        ]
    assert pipeline.status()["series"] == {"history": 1}
    await pipeline.stop()
    await bus.close()
