"""Per-tick validation. Every rejection has a reason that `/metrics` counts.

The validator keeps a little state per (feed, symbol): the last accepted tick, to refuse time going
backwards beyond a tolerance and exact repeats of the previous tick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aitrading.model.market import Tick

__all__ = ["REJECT_REASONS", "TickValidator", "ValidationPolicy"]

REJECT_REASONS = (
    "feed_mismatch",
    "unknown_symbol",
    "bad_symbol",
    "non_positive_price",
    "crossed_quote",
    "locked_quote",
    "bad_time",
    "future_time",
    "time_backwards",
    "duplicate",
    "negative_volume",
)

_MAX_SYMBOL_LEN = 32


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """Tolerances of the validator (per bridge; per-feed policies come with the market-data issue)."""

    allow_locked: bool = True
    allow_crossed: bool = False
    backwards_tolerance_ms: int = 1_000
    future_tolerance_ms: int = 60_000


class TickValidator:
    """Splits a batch into accepted ticks and rejection counts by reason."""

    def __init__(
        self,
        now_ms: Callable[[], int],
        policy: ValidationPolicy | None = None,
        known_symbols: Callable[[str], frozenset[str] | None] | None = None,
    ) -> None:
        self._now_ms = now_ms
        self._policy = policy or ValidationPolicy()
        self._known = known_symbols
        self._last: dict[tuple[str, str], Tick] = {}

    def validate(self, feed: str, ticks: Sequence[Tick]) -> tuple[list[Tick], Counter[str]]:
        """Return the ticks to accept and a count of the rejected ones by reason."""
        accepted: list[Tick] = []
        rejected: Counter[str] = Counter()
        policy = self._policy
        horizon = self._now_ms() + policy.future_tolerance_ms
        known = self._known(feed) if self._known is not None else None
        last = self._last
        for tick in ticks:
            reason = self._check(tick, feed, horizon, known, policy)
            if reason is None:
                key = (tick.feed, tick.symbol)
                prev = last.get(key)
                if prev is not None:
                    if tick.time_msc < prev.time_msc - policy.backwards_tolerance_ms:
                        reason = "time_backwards"
                    elif tick == prev:
                        reason = "duplicate"
                if reason is None:
                    if prev is None or tick.time_msc >= prev.time_msc:
                        last[key] = tick
                    accepted.append(tick)
                    continue
            rejected[reason] += 1
        return accepted, rejected

    @staticmethod
    def _check(
        tick: Tick, feed: str, horizon: int, known: frozenset[str] | None, policy: ValidationPolicy
    ) -> str | None:
        if tick.feed != feed:
            return "feed_mismatch"
        if not tick.symbol or len(tick.symbol) > _MAX_SYMBOL_LEN or not tick.symbol.isprintable():
            return "bad_symbol"
        if known is not None and tick.symbol not in known:
            return "unknown_symbol"
        if tick.bid <= 0 or tick.ask <= 0 or tick.last < 0:
            return "non_positive_price"
        if tick.bid > tick.ask and not policy.allow_crossed:
            return "crossed_quote"
        if tick.bid == tick.ask and not policy.allow_locked:
            return "locked_quote"
        if tick.volume < 0:
            return "negative_volume"
        if tick.time_msc <= 0:
            return "bad_time"
        if tick.time_msc > horizon:
            return "future_time"
        return None
