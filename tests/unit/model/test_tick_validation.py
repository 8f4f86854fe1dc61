import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.model.market import Tick
from aitrading.model.validation import TickValidator, ValidationPolicy
from aitrading.model.values import price_float, price_raw

NOW_MS = 1_700_000_000_000


def tick(bid: float = 1.1, ask: float = 1.1001, t: int = NOW_MS - 1000, **kw: object) -> Tick:
    fields: dict[str, object] = {
        "feed": "SIM",
        "symbol": "EURUSD",
        "time_msc": t,
        "bid": price_raw(bid),
        "ask": price_raw(ask),
    }
    fields.update(kw)
    return Tick(**fields)  # type: ignore[arg-type]


def validator(**policy: object) -> TickValidator:
    return TickValidator(lambda: NOW_MS, ValidationPolicy(**policy))  # type: ignore[arg-type]


def test_good_ticks_are_accepted_in_order() -> None:
    ticks = [tick(t=NOW_MS - 3), tick(t=NOW_MS - 2, bid=1.2, ask=1.2001)]
    ok, bad = validator().validate("SIM", ticks)
    assert ok == ticks
    assert not bad


def test_each_rule_rejects_with_its_reason() -> None:
    v = validator(allow_locked=False)
    ticks = [
        tick(bid=0.0),
        tick(bid=-1.0),
        tick(bid=1.2, ask=1.1),
        tick(bid=1.1, ask=1.1),
        tick(t=0),
        tick(t=NOW_MS + 3_600_000),
        tick(symbol=""),
        tick(feed="OTHER"),
        tick(volume=-1),
    ]
    ok, bad = v.validate("SIM", ticks)
    assert ok == []
    assert bad == {
        "non_positive_price": 2,
        "crossed_quote": 1,
        "locked_quote": 1,
        "bad_time": 1,
        "future_time": 1,
        "bad_symbol": 1,
        "feed_mismatch": 1,
        "negative_volume": 1,
    }


def test_exact_repeat_of_previous_tick_is_a_duplicate() -> None:
    v = validator()
    first = tick()
    ok, bad = v.validate("SIM", [first, first])
    assert ok == [first]
    assert bad == {"duplicate": 1}


def test_time_going_backwards_beyond_tolerance_is_rejected_within_it_accepted() -> None:
    v = validator(backwards_tolerance_ms=500)
    a = tick(t=NOW_MS - 1000)
    slightly_back = tick(t=NOW_MS - 1400, bid=1.10001)
    far_back = tick(t=NOW_MS - 5000, bid=1.10002)
    ok, bad = v.validate("SIM", [a, slightly_back, far_back])
    assert ok == [a, slightly_back]
    assert bad == {"time_backwards": 1}


def test_unknown_symbol_is_rejected_when_the_feed_lists_its_symbols() -> None:
    v = TickValidator(lambda: NOW_MS, known_symbols=lambda feed: frozenset({"GBPUSD"}))
    ok, bad = v.validate("SIM", [tick()])
    assert ok == []
    assert bad == {"unknown_symbol": 1}


# --- the spike filter ---------------------------------------------------------------------------------------


def walk(
    n: int, start: float = 1.1, t0: int = NOW_MS - 600_000, step_ms: int = 100, seed: int = 7
) -> list[Tick]:
    """A calm market: the mid moves by at most one pip a tick."""
    rng = random.Random(seed)
    out, bid = [], price_raw(start)
    for i in range(n):
        bid += rng.choice((-10_000, 0, 10_000))
        out.append(Tick(feed="SIM", symbol="EURUSD", time_msc=t0 + i * step_ms, bid=bid, ask=bid + 20_000))
    return out


def moved(tick: Tick, factor: float, dt_ms: int = 1) -> Tick:
    bid = round(tick.bid * factor)
    return Tick(feed="SIM", symbol="EURUSD", time_msc=tick.time_msc + dt_ms, bid=bid, ask=bid + 20_000)


def test_isolated_spike_is_rejected_and_does_not_move_the_reference() -> None:
    v = validator()
    calm = walk(100)
    ok, bad = v.validate("SIM", calm)
    assert ok == calm
    spike = moved(calm[-1], 1.02)  # 2 %: 200 bps, far beyond the 50 bps floor
    back = moved(calm[-1], 1.0, dt_ms=2)
    spike_again = moved(calm[-1], 1.02, dt_ms=3)
    ok, bad = v.validate("SIM", [spike, back, spike_again])
    assert ok == [back]
    assert bad == {"spike": 2}


def test_rejected_spikes_do_not_poison_the_volatility_estimate() -> None:
    v = validator(spike_confirm_ticks=1_000)
    calm = walk(100)
    v.validate("SIM", calm)
    # a storm of wild prints: if they fed the EWMA, k × volatility would soon swallow a 1 % move
    storm = [moved(calm[-1], 1.5 if i % 2 else 0.6, dt_ms=i + 1) for i in range(200)]
    ok, bad = v.validate("SIM", storm)
    assert ok == []
    assert bad == {"spike": 200}
    ok, bad = v.validate("SIM", [moved(calm[-1], 1.01, dt_ms=300)])
    assert bad == {"spike": 1}


def test_spike_filter_does_not_check_the_first_ticks_of_a_symbol_and_they_cannot_blow_the_bound_up() -> None:
    v = validator(spike_warmup_ticks=5)
    first = walk(5)
    first[2] = moved(first[1], 1.05)  # a 5 % bad print while warming up, and back
    ok, bad = v.validate("SIM", first)
    assert ok == first
    after = walk(100, start=price_float(first[-1].bid), t0=first[-1].time_msc + 100)
    assert v.validate("SIM", after) == (after, Counter())
    _, bad = v.validate("SIM", [moved(after[-1], 1.05)])
    assert bad == {"spike": 1}


def test_regime_shift_is_accepted_once_consecutive_ticks_agree_on_the_new_level() -> None:
    v = validator()  # spike_confirm_ticks=3
    calm = walk(100)
    v.validate("SIM", calm)
    new_level = walk(20, start=price_float(calm[-1].bid) * 1.03, t0=calm[-1].time_msc + 1, step_ms=10, seed=8)
    ok, bad = v.validate("SIM", new_level)
    assert bad == {"spike": 2}
    assert ok == new_level[2:]  # the third agreeing tick is accepted and everything after it


def test_spikes_that_disagree_with_each_other_never_confirm_a_new_level() -> None:
    v = validator()
    calm = walk(100)
    v.validate("SIM", calm)
    prints = [moved(calm[-1], f, dt_ms=i + 1) for i, f in enumerate((1.03, 0.96, 1.06, 0.93, 1.03, 0.96))]
    ok, bad = v.validate("SIM", prints)
    assert ok == []
    assert bad == {"spike": 6}


def test_a_normal_tick_between_suspects_clears_them() -> None:
    v = validator()
    calm = walk(100)
    v.validate("SIM", calm)
    last = calm[-1]
    seq = [moved(last, 1.03, 1), moved(last, 1.03, 2), moved(last, 1.0, 3), moved(last, 1.03, 4)]
    ok, bad = v.validate("SIM", seq)
    assert ok == [seq[2]]
    assert bad == {"spike": 3}


def test_a_gap_after_a_weekend_is_accepted_at_once_the_same_gap_a_millisecond_later_is_not() -> None:
    calm = walk(100, t0=NOW_MS - 3 * 86_400_000)
    v = validator()
    v.validate("SIM", calm)
    monday = moved(calm[-1], 1.01, dt_ms=2 * 86_400_000)  # 100 bps after two days of silence
    assert v.validate("SIM", [monday]) == ([monday], Counter())
    v = validator()
    v.validate("SIM", calm)
    _, bad = v.validate("SIM", [moved(calm[-1], 1.01, dt_ms=1)])
    assert bad == {"spike": 1}


def test_volatile_symbol_widens_its_bound_beyond_the_floor() -> None:
    rng = random.Random(3)
    bid = price_raw(30_000.0)
    ticks = []
    for i in range(300):  # crypto-like: 10-30 bps a tick
        bid = round(bid * (1 + rng.choice((-1, 1)) * rng.uniform(0.001, 0.003)))
        ticks.append(Tick(feed="SIM", symbol="BTCUSD", time_msc=NOW_MS - 10_000 + i, bid=bid, ask=bid + 1))
    _, bad = validator().validate("SIM", ticks)
    assert bad == Counter()
    big = Tick(
        feed="SIM",
        symbol="BTCUSD",
        time_msc=NOW_MS - 9_000,
        bid=round(bid * 1.008),
        ask=round(bid * 1.008) + 1,
    )
    assert validator(spike_floor_bps=50.0).validate("SIM", [*ticks, big])[1] == Counter()  # 80 bps < 25 × σ


def test_spike_filter_can_be_turned_off() -> None:
    v = validator(spike_filter=False)
    calm = walk(100)
    wild = moved(calm[-1], 2.0)
    assert v.validate("SIM", [*calm, wild]) == ([*calm, wild], Counter())


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(st.integers(-40, 40), min_size=30, max_size=200),
    spike_at=st.integers(25, 29),
    factor=st.sampled_from([0.9, 0.97, 1.02, 1.1, 3.0]),
)
def test_one_outlier_in_any_calm_walk_is_the_only_tick_rejected(
    steps: list[int], spike_at: int, factor: float
) -> None:
    bid = price_raw(1.1)
    ticks = []
    for i, step in enumerate(steps):  # at most 0.4 pip a tick: far inside the floor
        bid += step * 100
        ticks.append(
            Tick(feed="SIM", symbol="EURUSD", time_msc=NOW_MS - 10_000 + i, bid=bid, ask=bid + 20_000)
        )
    outlier = moved(ticks[spike_at - 1], factor, dt_ms=0)
    outlier = Tick(
        feed="SIM", symbol="EURUSD", time_msc=outlier.time_msc, bid=outlier.bid, ask=outlier.ask, volume=1
    )
    stream = [*ticks[:spike_at], outlier, *ticks[spike_at:]]
    ok, bad = validator().validate("SIM", stream)
    assert bad == {"spike": 1}
    assert ok == ticks


# --- real market data: zero spikes --------------------------------------------------------------------------

REAL_TICKS = [
    # (file, symbol, hours to add to reach UTC)
    ("truefx_AUDUSD_ticks_20200130-31.csv.gz", "AUDUSD", 0),
    ("truefx_USDJPY_ticks_20130101.csv", "USDJPY", 0),
    ("dukascopy_EURUSD_ticks_20190101.csv", "EURUSD", 0),
    ("dukascopy_USDJPY_ticks_20190101.csv", "USDJPY", 0),
    ("histdata_EURUSD_T_20200130-31.csv.gz", "EURUSD", 5),  # EST without DST
    ("histdata_EURUSD_T_20200101_sample.csv", "EURUSD", 5),
]


def read_ticks(path: Path, symbol: str, hours: int) -> list[Tick]:
    if path.name.startswith("histdata"):
        df = pd.read_csv(
            path, header=None, names=["timestamp", "bid", "ask", "volume"], dtype={"timestamp": str}
        )
        times = pd.to_datetime(df["timestamp"], format="%Y%m%d %H%M%S%f") + pd.Timedelta(hours=hours)
    else:
        df = pd.read_csv(path)
        times = pd.to_datetime(df["timestamp"], format="ISO8601", utc=True).dt.tz_localize(None)
    ms = (times - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
    return [
        Tick(feed="REAL", symbol=symbol, time_msc=int(t), bid=price_raw(float(b)), ask=price_raw(float(a)))
        for t, b, a in zip(ms, df["bid"], df["ask"], strict=True)
    ]


@pytest.mark.parametrize(("name", "symbol", "hours"), REAL_TICKS)
def test_real_tick_samples_have_no_spike_rejections(
    shared_data: Path, name: str, symbol: str, hours: int
) -> None:
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{name} is not in the shared data")
    ticks = read_ticks(path, symbol, hours)
    v = TickValidator(lambda: ticks[-1].time_msc + 1_000)
    accepted = 0
    rejected: Counter[str] = Counter()
    for i in range(0, len(ticks), 2_000):  # agent-sized batches
        ok, bad = v.validate("REAL", ticks[i : i + 2_000])
        accepted += len(ok)
        rejected += bad
    assert rejected["spike"] == 0
    assert set(rejected) <= {"duplicate"}
    assert accepted + rejected.total() == len(ticks)


def test_synthetic_spikes_in_real_data_are_caught(shared_data: Path) -> None:
    path = shared_data / "truefx_AUDUSD_ticks_20200130-31.csv.gz"
    if not path.exists():
        pytest.skip("truefx_AUDUSD_ticks_20200130-31.csv.gz is not in the shared data")
    ticks = read_ticks(path, "AUDUSD", 0)[:20_000]
    rng = random.Random(5)
    spiked = list(ticks)
    places = sorted(rng.sample(range(100, len(ticks)), 25), reverse=True)
    for at in places:  # bad prints of ±1-5 % between two real ticks, at the same millisecond
        prev = ticks[at - 1]
        f = 1 + rng.choice((-1, 1)) * rng.uniform(0.01, 0.05)
        bid = round(prev.bid * f)
        spiked.insert(
            at, Tick(feed="REAL", symbol="AUDUSD", time_msc=prev.time_msc, bid=bid, ask=bid + 30_000)
        )
    v = TickValidator(lambda: ticks[-1].time_msc + 1_000)
    ok, bad = v.validate("REAL", spiked)
    assert bad["spike"] == 25
    assert len(ok) + bad["duplicate"] == len(ticks)


def test_ticks_of_an_empty_feed_are_rejected_as_feed_mismatch() -> None:
    ok, bad = validator().validate("", [tick(feed="")])
    assert ok == []
    assert bad == {"feed_mismatch": 1}
