"""Small helpers shared by the agent's modules."""

from __future__ import annotations

import random
from collections import deque
from datetime import UTC, datetime, timedelta

from aitrading.common.clock import Clock

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_S = 1_000_000_000


def ms_datetime(ms: int) -> datetime:
    """Return the aware UTC datetime of epoch milliseconds `ms`, exactly (no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Return the delay before retry `attempt` (0-based): exponential, capped, with full jitter.

    Full jitter (a uniform draw in [0, min(cap, base·2^attempt)]) keeps a fleet of agents that lost the
    bridge at the same moment from reconnecting in lockstep.
    """
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return rng.uniform(0.0, ceiling)


class RateMeter:
    """Events per second over a sliding window of whole seconds, on an injected clock."""

    def __init__(self, clock: Clock, window_s: int = 5) -> None:
        self._clock = clock
        self._window = window_s
        self._buckets: deque[tuple[int, int]] = deque()  # (second, count), oldest first
        self.total = 0

    def add(self, n: int) -> None:
        """Count `n` events now."""
        self.total += n
        second = self._clock.monotonic_ns() // _NS_PER_S
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1] = (second, self._buckets[-1][1] + n)
        else:
            self._buckets.append((second, n))
        self._trim(second)

    def rate(self) -> float:
        """Return events per second over the last complete window."""
        second = self._clock.monotonic_ns() // _NS_PER_S
        self._trim(second)
        return sum(n for s, n in self._buckets if s < second) / self._window

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] < second - self._window:
            self._buckets.popleft()
