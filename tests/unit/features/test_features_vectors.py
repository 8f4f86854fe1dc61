"""Feature vectors: one code path for training and live, values checked against independent maths."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import numpy as np
import pytest

from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.bus import Bus
from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.common.config import FeaturesConfig, load_config
from aitrading.common.errors import ConfigError
from aitrading.features.indicators import batch
from aitrading.features.messages import FeatureVector, feature_pattern, feature_subject
from aitrading.features.service import FeaturesService
from aitrading.features.vectors import FEATURE_NAMES, FEATURE_SET_VERSION, FeatureEngine, compute_batch
from aitrading.ml.data import load_bars_csv
from aitrading.model.ids import bar_subject, tick_subject
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.storage.cache import MemoryCache

SECRET = "a-test-secret-of-enough-length-for-features"


@pytest.fixture
def eurusd_h1(shared_data: Path) -> list[Bar]:
    path = shared_data / "backtestingpy_EURUSD_H1_2017-2018.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return load_bars_csv(path, symbol="EURUSD", timeframe=Timeframe.H1, feed="Test-Feed")


def _walk(n: int, *, start: int = 1_700_000_400, seed: int = 3) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 0.001, n))
    bars = []
    for i, c in enumerate(close):
        o = c - rng.normal(0, 0.0005)
        hi, lo = max(o, c) + abs(rng.normal(0, 0.0004)), min(o, c) - abs(rng.normal(0, 0.0004))
        bars.append(
            Bar(
                feed="F",
                symbol="EURUSD",
                timeframe=int(Timeframe.M5),
                time=start + 300 * i,
                open=round(o * PRICE_SCALE),
                high=round(hi * PRICE_SCALE),
                low=round(lo * PRICE_SCALE),
                close=round(c * PRICE_SCALE),
                tick_volume=int(rng.integers(1, 500)),
                spread=int(rng.integers(0, 20)),
            )
        )
    return bars


class _Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, FeatureVector]] = []

    async def __call__(self, subject: str, msg: Message) -> None:
        assert isinstance(msg, FeatureVector)
        self.got.append((subject, msg))


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    b = MemoryBus()
    await b.connect()
    yield b
    await b.close()


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


async def _service(bus: Bus, tokens: TokenService, cache: MemoryCache, **cfg: object) -> FeaturesService:
    service = FeaturesService(
        {},
        bus=bus,
        cache=cache,
        clock=TestClock(),
        authenticate=principal_dependency(tokens),
        config=FeaturesConfig(**cfg),  # type: ignore[arg-type]
    )
    await service.start()
    return service


async def test_vectors_streamed_through_the_service_equal_the_batch_training_rows(
    eurusd_h1: list[Bar], bus: Bus, tokens: TokenService
) -> None:
    sink = _Sink()
    await bus.subscribe(feature_pattern(), sink)
    service = await _service(bus, tokens, MemoryCache())
    try:
        for bar in eurusd_h1:
            await bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)
    finally:
        await service.stop()

    frame = compute_batch(eurusd_h1, Timeframe.H1)
    ready = np.flatnonzero(np.isfinite(frame.values).all(axis=1))
    assert len(sink.got) == ready.size > 4900
    for (subject, vector), i in zip(sink.got, ready, strict=True):
        assert subject == "feat.Test-Feed.EURUSD.H1"
        assert vector.time == int(frame.times[i])
        assert vector.feature_set == FEATURE_SET_VERSION
        assert list(vector.values) == list(FEATURE_NAMES)
        assert tuple(vector.values.values()) == tuple(frame.values[i])  # bit for bit: no skew


def test_indicator_features_equal_the_vectorised_batch_indicators(eurusd_h1: list[Bar]) -> None:
    frame = compute_batch(eurusd_h1, Timeframe.H1)
    high = np.array([b.high for b in eurusd_h1]) / PRICE_SCALE
    low = np.array([b.low for b in eurusd_h1]) / PRICE_SCALE
    close = np.array([b.close for b in eurusd_h1]) / PRICE_SCALE
    col = {n: frame.values[:, j] for j, n in enumerate(FEATURE_NAMES)}
    ok = np.isfinite(frame.values).all(axis=1)
    upper, middle, lower = batch.BBANDS(close, 20, 2.0, 2.0, 0)
    _, _, hist = batch.MACD(close, 12, 26, 9)
    slowk, slowd = batch.STOCH(high, low, close, 14, 3, 0, 3, 0)
    expected = {
        "rsi_14": batch.RSI(close, 14) / 100,
        "atr_14": batch.ATR(high, low, close, 14) / close,
        "macd_hist": hist / close,
        "bb_width": (upper - lower) / middle,
        "bb_pctb": (close - lower) / (upper - lower),
        "stoch_k": slowk / 100,
        "stoch_d": slowd / 100,
        "adx_14": batch.ADX(high, low, close, 14) / 100,
        "di_diff": (batch.PLUS_DI(high, low, close, 14) - batch.MINUS_DI(high, low, close, 14)) / 100,
        "dist_sma_20": close / batch.SMA(close, 20) - 1,
        "dist_ema_50": close / batch.EMA(close, 50) - 1,
        "ret_1": np.r_[np.nan, np.log(close[1:] / close[:-1])],
        "ret_12": np.r_[[np.nan] * 12, np.log(close[12:] / close[:-12])],
        "range_1": (high - low) / close,
    }
    for name, want in expected.items():
        np.testing.assert_allclose(col[name][ok], want[ok], rtol=1e-9, atol=1e-12, err_msg=name)
    rets = np.r_[np.nan, np.log(close[1:] / close[:-1])]
    vol = np.array([np.std(rets[i - 19 : i + 1]) if i >= 20 else np.nan for i in range(len(close))])
    np.testing.assert_allclose(col["vol_20"][ok], vol[ok], rtol=1e-9)


def test_time_and_session_features_describe_the_bar_close_in_utc() -> None:
    bars = _walk(60, start=1_700_000_400)  # 2023-11-14 22:20 UTC, a Tuesday; M5 bars
    engine = FeatureEngine(Timeframe.M5)
    rows = [engine.update(b) for b in bars]
    last = dict(zip(FEATURE_NAMES, rows[-1] or (), strict=True))
    close_s = bars[-1].time + 300  # 2023-11-15 03:20 UTC, a Wednesday
    hour = 3 + 20 / 60
    assert last["hour_sin"] == pytest.approx(math.sin(2 * math.pi * hour / 24))
    assert last["hour_cos"] == pytest.approx(math.cos(2 * math.pi * hour / 24))
    assert last["dow_sin"] == pytest.approx(math.sin(2 * math.pi * 2 / 7))  # Monday = 0
    assert (last["session_asia"], last["session_london"], last["session_ny"]) == (1.0, 0.0, 0.0)
    assert close_s % 86400 == 3 * 3600 + 1200
    assert last["spread_points"] == float(bars[-1].spread)


def test_engine_warms_up_then_ignores_redelivered_and_older_bars() -> None:
    bars = _walk(80)
    engine = FeatureEngine(Timeframe.M5)
    rows = [engine.update(b) for b in bars[:60]]
    first = next(i for i, r in enumerate(rows) if r is not None)
    assert first == 49  # EMA 50 is the longest warm-up
    assert all(r is not None for r in rows[first:])
    assert engine.update(bars[59]) is None  # redelivered
    assert engine.update(bars[10]) is None  # older
    resumed = [engine.update(b) for b in bars[60:]]
    full = compute_batch(bars, Timeframe.M5)
    assert tuple(full.values[79]) == resumed[-1]


def test_batch_refuses_unsorted_bars() -> None:
    bars = _walk(10)
    with pytest.raises(ValueError, match="sorted"):
        compute_batch([bars[1], bars[0]], Timeframe.M5)


async def test_latest_vector_is_cached_and_read_back_only_with_a_valid_token(
    bus: Bus, tokens: TokenService
) -> None:
    cache = MemoryCache()
    service = await _service(bus, tokens, cache)
    bars = _walk(70)
    try:
        for bar in bars:
            await bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://features") as client:
            auth = {"authorization": f"Bearer {tokens.issue('svc:reader', tenant='t1')}"}
            assert (await client.get("/api/v1/F/EURUSD/M5")).status_code == 401
            forged = TokenService("another-secret-entirely-of-32-bytes+").issue("x")
            bad = await client.get("/api/v1/F/EURUSD/M5", headers={"authorization": f"Bearer {forged}"})
            assert bad.status_code == 401
            ok = await client.get("/api/v1/F/EURUSD/m5", headers=auth)
            assert ok.status_code == 200
            body = ok.json()
            want = compute_batch(bars, Timeframe.M5)
            assert body["time"] == bars[-1].time
            assert body["ts_ms"] == (bars[-1].time + 300) * 1000
            assert tuple(body["values"].values()) == tuple(want.values[-1])
            missing = await client.get("/api/v1/F/GBPUSD/M5", headers=auth)
            assert missing.status_code == 404
            assert "GBPUSD" in missing.json()["detail"]
            wrong = await client.get("/api/v1/F/EURUSD/M7", headers=auth)
            assert wrong.status_code == 400
            assert "unknown timeframe" in wrong.json()["detail"]
    finally:
        await service.stop()


async def test_tick_vectors_are_published_only_for_configured_symbols(bus: Bus, tokens: TokenService) -> None:
    sink = _Sink()
    await bus.subscribe(feature_subject("F", "EURUSD", "TICK"), sink)
    await bus.subscribe(feature_subject("F", "GBPUSD", "TICK"), sink)
    service = await _service(
        bus, tokens, MemoryCache(), tick_symbols=frozenset({"EURUSD"}), tick_timeframe="M5"
    )
    bars = _walk(60)
    last = bars[-1]
    close_ms = (last.time + 300) * 1000
    bid, ask = last.close, last.close + 12_000  # 1.2 pips
    try:
        await bus.publish(
            tick_subject("F", "EURUSD"), Tick(feed="F", symbol="EURUSD", time_msc=1, bid=bid, ask=ask)
        )
        assert sink.got == []  # not warmed up yet
        for bar in bars:
            await bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)
        tick = Tick(feed="F", symbol="EURUSD", time_msc=close_ms + 2500, bid=bid, ask=ask)
        await bus.publish(tick_subject("F", "EURUSD"), tick)
        await bus.publish(
            tick_subject("F", "GBPUSD"), Tick(feed="F", symbol="GBPUSD", time_msc=1, bid=bid, ask=ask)
        )
    finally:
        await service.stop()
    assert len(sink.got) == 1
    subject, vector = sink.got[0]
    assert subject == "feat.F.EURUSD.TICK"
    mid = (bid + ask) / 2 / PRICE_SCALE
    assert vector.values["tick_spread_bps"] == pytest.approx(12_000 / PRICE_SCALE / mid * 1e4)
    assert vector.values["tick_ret"] == pytest.approx(math.log(mid / (last.close / PRICE_SCALE)))
    assert vector.values["tick_age_s"] == 2.5
    bar_row = compute_batch(bars, Timeframe.M5).row(len(bars) - 1)
    assert {k: vector.values[k] for k in FEATURE_NAMES} == bar_row


def test_tick_symbols_are_configured_in_the_platform_config_as_a_list_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AITRADING_FEATURES__TICK_SYMBOLS", '["EURUSD", "GBPUSD.r"]')
    monkeypatch.setenv("AITRADING_FEATURES__TICK_TIMEFRAME", "m5")
    cfg = load_config().features
    assert cfg.tick_symbols == frozenset({"EURUSD", "GBPUSD.r"})
    assert cfg.tick_timeframe == "M5"
    assert FeaturesConfig(tick_symbols="EURUSD, GBPUSD.r,").tick_symbols == frozenset({"EURUSD", "GBPUSD.r"})  # type: ignore[arg-type]
    monkeypatch.setenv("AITRADING_FEATURES__TICK_TIMEFRAME", "M7")
    with pytest.raises(ConfigError, match="unknown timeframe 'M7'"):
        load_config()


async def test_a_bar_with_inconsistent_prices_is_dropped_and_the_series_goes_on(
    bus: Bus, tokens: TokenService
) -> None:
    sink = _Sink()
    await bus.subscribe(feature_pattern(), sink)
    service = await _service(bus, tokens, MemoryCache())
    bars = _walk(60)
    broken = msgspec.structs.replace(bars[55], low=bars[55].high + 1)
    with pytest.raises(ValueError, match="inconsistent prices"):
        FeatureEngine(Timeframe.M5).update(broken)
    try:
        for bar in [*bars[:55], broken, *bars[55:]]:
            await bus.publish(bar_subject(bar.feed, bar.symbol, bar.timeframe), bar)
    finally:
        await service.stop()
    want = compute_batch(bars, Timeframe.M5)
    assert [v.time for _, v in sink.got] == [b.time for b in bars[49:]]
    assert tuple(sink.got[-1][1].values.values()) == tuple(want.values[-1])
