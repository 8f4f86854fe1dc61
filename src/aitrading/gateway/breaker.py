"""Circuit breakers and bulkheads: fail fast on a sick upstream, let no traffic class starve another.

A breaker per upstream is CLOSED while calls work. `failure_threshold` failures in a row OPEN it: calls are
refused at once (503 with `Retry-After`) for `reset_timeout_s`. Then it is HALF_OPEN and lets
`half_open_max_calls` trial calls through: a success closes it, a failure opens it again for another
`reset_timeout_s`. Time is the injected clock's monotonic counter, so tests step through it.

A bulkhead is a non-blocking concurrency limit: a call either gets a slot at once or is refused with the
reason (queueing behind a slow upstream is how the other traffic would starve).
"""

from __future__ import annotations

import enum
import math

from aitrading.common import metrics
from aitrading.common.clock import Clock

__all__ = ["Breaker", "BreakerState", "Bulkhead"]

_NS = 1_000_000_000

_STATE_GAUGE = metrics.gauge(
    "gateway_breaker_state",
    "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open",
    ("upstream",),
)
_TRANSITIONS = metrics.counter(
    "gateway_breaker_transitions", "Circuit breaker state changes per upstream", ("upstream", "to")
)
_IN_FLIGHT = metrics.gauge("gateway_bulkhead_in_flight", "Upstream calls in flight per bulkhead", ("pool",))
_REFUSED = metrics.counter("gateway_bulkhead_refused", "Calls refused by a full bulkhead", ("pool",))


class BreakerState(enum.StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


_GAUGE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class Breaker:
    """The circuit breaker of one upstream (single event loop: no locks needed)."""

    def __init__(
        self,
        upstream: str,
        clock: Clock,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 10.0,
        half_open_max_calls: int = 1,
    ) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1 or reset_timeout_s <= 0:
            raise ValueError("failure_threshold and half_open_max_calls must be >= 1, reset_timeout_s > 0")
        self.upstream = upstream
        self._clock = clock
        self._threshold = failure_threshold
        self._reset_ns = int(reset_timeout_s * _NS)
        self._half_open_max = half_open_max_calls
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at_ns = 0
        self._trials = 0
        self._gauge = _STATE_GAUGE.labels(upstream)
        self._gauge.set(0)

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose timeout has passed reads as half-open)."""
        if (
            self._state is BreakerState.OPEN
            and self._clock.monotonic_ns() - self._opened_at_ns >= self._reset_ns
        ):
            self._move(BreakerState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after_s(self) -> int:
        """Whole seconds until an open breaker lets a trial call through (at least 1)."""
        left_ns = self._reset_ns - (self._clock.monotonic_ns() - self._opened_at_ns)
        return max(1, math.ceil(left_ns / _NS))

    def allow(self) -> bool:
        """Tell whether a call may go to the upstream now; a True in half-open takes a trial slot."""
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        state = self.state
        if state is BreakerState.OPEN:
            return False
        if self._trials >= self._half_open_max:
            return False
        self._trials += 1
        return True

    def record_success(self) -> None:
        """Note a call that worked: close the breaker."""
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._trials = 0
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """Note a failed call: open the breaker at the threshold, or at once when half-open."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self._threshold
        ):
            self._open()

    def record_abandoned(self) -> None:
        """Note a call that ended without a verdict (the client went away): free its trial slot."""
        if self._state is BreakerState.HALF_OPEN and self._trials > 0:
            self._trials -= 1

    def _open(self) -> None:
        self._opened_at_ns = self._clock.monotonic_ns()
        self._trials = 0
        self._move(BreakerState.OPEN)

    def _move(self, to: BreakerState) -> None:
        if to is not self._state:
            self._state = to
            if to is BreakerState.HALF_OPEN:
                self._trials = 0
            self._gauge.set(_GAUGE_VALUE[to])
            _TRANSITIONS.labels(self.upstream, to.value).inc()

    def snapshot(self) -> dict[str, object]:
        """Return the breaker's state for `/api/v1/gateway/upstreams`."""
        state = self.state
        out: dict[str, object] = {"state": state.value, "consecutive_failures": self._failures}
        if state is BreakerState.OPEN:
            out["retry_after_s"] = self.retry_after_s()
        return out


class Bulkhead:
    """A non-blocking limit of concurrent upstream calls for one pool of traffic."""

    def __init__(self, pool: str, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.pool = pool
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._gauge = _IN_FLIGHT.labels(pool)
        self._refused = _REFUSED.labels(pool)
        self._gauge.set(0)

    def try_acquire(self) -> bool:
        """Take a slot if one is free; False (and counted) when the pool is full."""
        if self.in_flight >= self.max_in_flight:
            self._refused.inc()
            return False
        self.in_flight += 1
        self._gauge.inc()
        return True

    def release(self) -> None:
        """Give back a slot taken by `try_acquire`."""
        self.in_flight -= 1
        self._gauge.dec()

    def snapshot(self) -> dict[str, int]:
        return {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight}
