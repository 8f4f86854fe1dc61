"""Known market data for the database-service tests, and an independent (pandas) bar builder."""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the environment

from aitrading.model.market import Bar, Tick, Timeframe

SECRET = "a-test-secret-of-enough-length-for-dbservice"
FEED = "demo"
T0_MS = 1_704_153_600_000  # 2024-01-02T00:00:00Z, a Tuesday
HOUR_MS = 3_600_000
WIDE_FROM = "2024-01-01T00:00:00Z"
WIDE_TO = "2024-01-10T00:00:00Z"


def eurusd_ticks() -> list[Tick]:
    """EURUSD over two sessions a day apart: bursts sharing a millisecond, quiet gaps, odd prices.

    Prices are on the 5-digit grid except a few with a sixth decimal, which must come back unrounded.
    """
    rng = random.Random(20240102)
    ticks: list[Tick] = []
    bid = 1_085_000_000
    for session_start in (T0_MS, T0_MS + 26 * HOUR_MS):
        t = session_start + 137
        while t < session_start + 3 * HOUR_MS:
            burst = 5 if rng.random() < 0.05 else 1  # several ticks stamped the same millisecond
            for _ in range(burst):
                bid += rng.choice((-3, -2, -1, 0, 1, 2, 3)) * 10_000
                odd = 5_000 if rng.random() < 0.02 else 0  # a price finer than the symbol's digits
                spread = rng.choice((2, 5, 7, 10, 15)) * 1_000  # fractional points: 0.2 .. 1.5
                ticks.append(
                    Tick(
                        feed=FEED,
                        symbol="EURUSD",
                        time_msc=t,
                        bid=bid + odd,
                        ask=bid + odd + 60_000 + spread,
                        volume=rng.choice((0, 1_000_000, 123_456_789)),
                        flags=6,
                    )
                )
            t += rng.choice((1, 40, 250, 1_000, 7_000, 95_000))
    return ticks


def other_ticks() -> list[Tick]:
    """A few ticks of other series: yen (3 digits), gold (2), an unknown symbol, another feed."""
    return [
        Tick(feed=FEED, symbol="USDJPY", time_msc=T0_MS + 10, bid=150_123_000_000, ask=150_135_000_000),
        Tick(feed=FEED, symbol="XAUUSD", time_msc=T0_MS + 20, bid=2_350_100_000_000, ask=2_350_350_000_000),
        Tick(
            feed=FEED,
            symbol="CUSTOM",
            time_msc=T0_MS + 30,
            bid=9_007_199_254_740_993,  # 2**53 + 1: a float would say ...992
            ask=9_007_199_254_740_995,
            last=300_000_000,  # 0.3, which no float holds exactly
            volume=10_000_001,
        ),
        Tick(feed="other-feed", symbol="EURUSD", time_msc=T0_MS + 40, bid=1_090_000_000, ask=1_090_010_000),
    ]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expected_bars(
    ticks: Sequence[Tick], timeframe: Timeframe, digits: int, from_ms: int, to_ms: int
) -> list[dict[str, Any]]:
    """Bars opening in `[from_ms, to_ms)` built with pandas from whole periods, as exact Decimals.

    Independent of the store's SQL: group by period, first/last in list (written) order.
    """
    tf_s = timeframe.seconds
    frame = pd.DataFrame(
        {
            "time_msc": [t.time_msc for t in ticks],
            "bid": [t.bid for t in ticks],
            "spread": [t.ask - t.bid for t in ticks],
            "volume": [t.volume for t in ticks],
        }
    )
    frame["bar"] = frame["time_msc"] // (tf_s * 1000) * tf_s
    grouped = frame.groupby("bar", sort=True).agg(
        open=("bid", "first"),
        high=("bid", "max"),
        low=("bid", "min"),
        close=("bid", "last"),
        tick_volume=("bid", "size"),
        spread=("spread", "min"),
        real_volume=("volume", "sum"),
    )
    point = Decimal(10) ** (9 - digits)
    bars = []
    for bar_time, row in grouped.iterrows():
        if not from_ms <= int(bar_time) * 1000 < to_ms:
            continue
        bars.append(
            {
                "time_s": int(bar_time),
                **{k: Decimal(int(row[k])).scaleb(-9) for k in ("open", "high", "low", "close")},
                "tick_volume": int(row["tick_volume"]),
                "spread": int((Decimal(int(row["spread"])) / point).quantize(Decimal(1), ROUND_HALF_UP)),
                "real_volume": Decimal(int(row["real_volume"])).scaleb(-8),
            }
        )
    return bars


def as_exact(bar: dict[str, Any]) -> dict[str, Any]:
    """A response bar with its decimal strings as Decimals, in the shape of `expected_bars`."""
    return {
        "time_s": bar["time_s"],
        **{k: Decimal(str(bar[k])) for k in ("open", "high", "low", "close")},
        "tick_volume": bar["tick_volume"],
        "spread": bar["spread"],
        "real_volume": Decimal(str(bar["real_volume"])),
    }


def stored_bar(time_s: int, price: int, *, symbol: str = "EURUSD", tf: Timeframe = Timeframe.M1) -> Bar:
    """A stored bar with recognisable prices (far from the ticks' ~1.085)."""
    return Bar(
        feed=FEED,
        symbol=symbol,
        timeframe=int(tf),
        time=time_s,
        open=price,
        high=price + 50_000,
        low=price - 50_000,
        close=price + 10_000,
        tick_volume=42,
        spread=3,
        real_volume=500_000_000,
    )
