"""Where the simulated terminal's ticks come from: a seeded synthetic feed, or replayed history.

A `TickSource` releases ticks as simulated time passes: `advance(until_ms, specs)` returns, per symbol and
oldest first, every tick with `time_msc <= until_ms` that it has not released before. Once a tick at some
millisecond is released, no later call releases another tick at or before it, which is what lets a poller
that resumes from the last `time_msc` it saw lose nothing.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from aitrading.common.errors import BadInputError, ConfigError
from aitrading.model.market import Tick
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_DECIMALS
from aitrading.mt5 import constants as c
from aitrading.mt5.sim.market_hours import is_open, next_change_ms, next_open_ms, session_at
from aitrading.mt5.specs import DEFAULT_PROFILES, SyntheticProfile

__all__ = ["ReplayTickSource", "SyntheticTickSource", "TickSource"]

_TRADING_YEAR_S = 260 * 86_400  # volatility is annualised over trading days, as FX desks quote it
_WEEKEND_GAP_S = 2 * 3_600  # the Sunday open moves as much as ~2 trading hours: the weekend's news
_US_PER_MS = 1_000
_US_PER_S = 1_000_000


@runtime_checkable
class TickSource(Protocol):
    """Ticks released in time order as the simulated clock passes them."""

    @property
    def start_ms(self) -> int | None:
        """Return the earliest time this source may release a tick at, if known."""
        ...

    def advance(self, until_ms: int, specs: Mapping[str, SymbolSpec]) -> dict[str, list[Tick]]:
        """Release the ticks of `specs`' symbols with `time_msc <= until_ms` not released before."""
        ...


class _Walk:
    """The synthetic price path of one symbol: Poisson tick arrivals over a geometric random walk."""

    __slots__ = (
        "_change_us",
        "_elapsed_us",
        "_log_mid",
        "_rate",
        "_reopened",
        "_rng",
        "_spread",
        "_t_us",
        "always_open",
        "ask_pts",
        "bid_pts",
        "feed",
        "pending",
        "point_raw",
        "profile",
        "rate_factor",
        "scale",
        "spec",
    )

    def __init__(
        self,
        spec: SymbolSpec,
        profile: SyntheticProfile,
        seed: int,
        start_ms: int,
        feed: str,
        *,
        always_open: bool = False,
        rate_factor: float = 1.0,
    ) -> None:
        self.always_open = always_open
        self.rate_factor = rate_factor
        self.spec = spec
        self.profile = profile
        self.feed = feed
        self.scale = 10**spec.digits
        self.point_raw = 10 ** (PRICE_DECIMALS - spec.digits)
        digest = hashlib.sha256(f"{seed}/{spec.name}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        self._t_us = start_ms * _US_PER_MS
        self._log_mid = math.log(float(profile.start_price))
        self._elapsed_us = 0
        self._reopened = False
        self._rate = 0.0
        self._spread = 0.0
        self._change_us = 0  # forces a session look-up before the first tick
        self.bid_pts = 0
        self.ask_pts = 0
        self.pending: Tick | None = None

    def _enter_session(self) -> None:
        """Skip a closed market and look up the session in force at the current time."""
        t_ms = self._t_us // _US_PER_MS
        if not self.always_open and not is_open(t_ms):
            t_ms = next_open_ms(t_ms)
            self._t_us = t_ms * _US_PER_MS
            self._reopened = True
        session = session_at(t_ms)
        self._rate = self.profile.tick_rate * session.rate_factor * self.rate_factor
        self._spread = self.spec.typical_spread * session.spread_factor
        self._change_us = next_change_ms(t_ms) * _US_PER_MS

    def next_tick(self) -> Tick:
        """Generate the next tick: its arrival, the price move since the last one, and its spread."""
        rng = self._rng
        variance_per_s = self.profile.annual_vol**2 / _TRADING_YEAR_S
        while True:
            if self._t_us >= self._change_us:
                self._enter_session()
            t_us = self._t_us
            gap_us = int(rng.expovariate(self._rate) * _US_PER_S)
            if t_us + gap_us >= self._change_us:
                # Arrivals are memoryless, so restarting the draw at a session change is exact.
                self._elapsed_us += self._change_us - t_us
                self._t_us = self._change_us
                continue
            t_us += gap_us
            self._t_us = t_us
            dt_s = (self._elapsed_us + gap_us) / _US_PER_S
            if self._reopened:
                dt_s += _WEEKEND_GAP_S
                self._reopened = False
            self._elapsed_us = 0
            variance = variance_per_s * dt_s
            self._log_mid += math.sqrt(variance) * rng.gauss(0.0, 1.0) - variance / 2
            jitter = min(2.5, max(0.7, math.exp(0.25 * rng.gauss(0.0, 1.0))))
            spread = max(1, round(self._spread * jitter))
            bid = round(math.exp(self._log_mid) * self.scale - spread / 2)
            ask = bid + spread
            flags = (c.TICK_FLAG_BID if bid != self.bid_pts else 0) | (
                c.TICK_FLAG_ASK if ask != self.ask_pts else 0
            )
            if not flags:
                continue  # a terminal sends no tick when neither price changed
            self.bid_pts, self.ask_pts = bid, ask
            return Tick(
                feed=self.feed,
                symbol=self.spec.name,
                time_msc=t_us // _US_PER_MS,
                bid=bid * self.point_raw,
                ask=ask * self.point_raw,
                flags=flags,
            )


class SyntheticTickSource:
    """A deterministic synthetic market: the same seed and start give the same ticks, however polled.

    Each symbol follows a geometric random walk with its profile's annualised volatility. Ticks arrive as a
    Poisson process whose rate follows the session (thin in Asia, busiest in the London/New York overlap),
    spreads widen in Asia and most around the 21:00-22:00 UTC rollover, nothing trades from Friday 22:00
    to Sunday 22:00 UTC, and prices sit on the symbol's digits with bid < ask.

    `start_ms` is where the walks begin; when None they begin at the first `advance`, `warmup_s` earlier,
    so a terminal has that much history the moment it starts. `profiles` defaults to `DEFAULT_PROFILES`.
    `always_open` trades around the clock with no weekend (for demos and CI on any day); `rate_factor`
    multiplies every session's tick rate.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        start_ms: int | None = None,
        warmup_s: float = 0.0,
        profiles: Mapping[str, SyntheticProfile] | None = None,
        feed: str = "SIM",
        always_open: bool = False,
        rate_factor: float = 1.0,
    ) -> None:
        if warmup_s < 0:
            raise ConfigError(f"warmup_s must be >= 0, got {warmup_s}")
        if not 0 < rate_factor <= 1000:
            raise ConfigError(f"rate_factor must be in (0, 1000], got {rate_factor}")
        self.always_open = always_open
        self.rate_factor = rate_factor
        self.seed = seed
        self.feed = feed
        self._start_ms = start_ms
        self._warmup_ms = round(warmup_s * 1000)
        self._profiles = DEFAULT_PROFILES if profiles is None else profiles
        self._walks: dict[str, _Walk] = {}

    @property
    def start_ms(self) -> int | None:
        return self._start_ms

    def advance(self, until_ms: int, specs: Mapping[str, SymbolSpec]) -> dict[str, list[Tick]]:
        if self._start_ms is None:
            self._start_ms = until_ms - self._warmup_ms
        released: dict[str, list[Tick]] = {}
        for name, spec in specs.items():
            walk = self._walks.get(name)
            if walk is None:
                walk = self._walks[name] = _Walk(
                    spec,
                    self._profile(name),
                    self.seed,
                    self._start_ms,
                    self.feed,
                    always_open=self.always_open,
                    rate_factor=self.rate_factor,
                )
            ticks: list[Tick] = []
            while True:
                tick = walk.pending if walk.pending is not None else walk.next_tick()
                if tick.time_msc > until_ms:
                    walk.pending = tick
                    break
                walk.pending = None
                ticks.append(tick)
            if ticks:
                released[name] = ticks
        return released

    def _profile(self, name: str) -> SyntheticProfile:
        try:
            return self._profiles[name]
        except KeyError:
            raise ConfigError(
                f"the synthetic feed has no profile for {name!r}: "
                f"pass profiles={{{name!r}: SyntheticProfile(...), ...}}"
            ) from None


class ReplayTickSource:
    """Replay recorded ticks, releasing each once the simulated clock reaches its `time_msc`.

    `ticks` may be a lazy iterable (a file being parsed) but must be in time order across all symbols;
    an earlier tick after a later one raises `BadInputError`. Ticks of symbols the terminal does not list
    are skipped and counted in `skipped`.
    """

    def __init__(self, ticks: Iterable[Tick]) -> None:
        self._iter = iter(ticks)
        self._next: Tick | None = next(self._iter, None)
        self._first_ms = None if self._next is None else self._next.time_msc
        self._last_ms: int | None = None
        self.skipped = 0

    @property
    def start_ms(self) -> int | None:
        return self._first_ms

    def advance(self, until_ms: int, specs: Mapping[str, SymbolSpec]) -> dict[str, list[Tick]]:
        released: dict[str, list[Tick]] = {}
        while self._next is not None and self._next.time_msc <= until_ms:
            tick = self._next
            if self._last_ms is not None and tick.time_msc < self._last_ms:
                raise BadInputError(
                    f"replayed ticks must be in time order: {tick.symbol} at {tick.time_msc} ms "
                    f"comes after a tick at {self._last_ms} ms"
                )
            self._last_ms = tick.time_msc
            if tick.symbol in specs:
                released.setdefault(tick.symbol, []).append(tick)
            else:
                self.skipped += 1
            self._next = next(self._iter, None)
        return released
