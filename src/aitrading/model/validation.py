"""Per-tick validation. Every rejection has a reason that `/metrics` counts.

The validator keeps a little state per (feed, symbol): the last accepted tick, to refuse time going
backwards beyond a tolerance and exact repeats of the previous tick, and the spike filter's state.

The spike filter
----------------
A tick whose mid moves from the previous accepted mid by more than `max(k × volatility, floor)` (as an
absolute log-return) is rejected as `spike`. The volatility is an EWMA of the absolute log-returns of the
symbol's accepted mids, per tick (span `spike_ewma_ticks`); the floor (`spike_floor_bps`) keeps a calm
market's tiny volatility from flagging ordinary moves. The bound widens with the time since the last
accepted tick, `× sqrt(1 + gap / spike_gap_ms)`, because prices diffuse: after a quiet hour or a weekend a
jump is news, not noise. The EWMA starts at zero (the bound starts at the floor) and takes each accepted
return clipped to the bound, so no single print, even one let through, can blow the bound up. The first
`spike_warmup_ticks` ticks of a symbol are not checked (its first tick may itself be the bad one).

A rejected tick moves neither the reference mid nor the EWMA (they stay those of the accepted ticks), so
one bad print cannot widen the bound for the next. A genuine regime shift (a gap that stays)
is accepted on its `spike_confirm_ticks`-th consecutive tick that agrees with the ticks just before it
(each within the bound of the previous suspect): that tick is accepted and becomes the new reference,
the EWMA skipping the jump itself. The suspects before it stay rejected (they were counted already); a
normal tick in between clears them. So a shift costs `spike_confirm_ticks - 1` ticks, and a burst of
fewer bad prints that agree with each other is filtered.
"""

from __future__ import annotations

import math
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
    "spike",
)

_MAX_SYMBOL_LEN = 32


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """Tolerances of the validator (per bridge; per-feed policies come with the market-data issue)."""

    allow_locked: bool = True
    allow_crossed: bool = False
    backwards_tolerance_ms: int = 1_000
    future_tolerance_ms: int = 60_000
    spike_filter: bool = True
    spike_k: float = 25.0
    """Bound on a mid move, in multiples of the EWMA of absolute log-returns."""
    spike_floor_bps: float = 50.0
    """Smallest bound on a mid move, in basis points (log-return × 1e4)."""
    spike_ewma_ticks: int = 100
    """Span of the volatility EWMA, in ticks (alpha = 2 / (span + 1))."""
    spike_warmup_ticks: int = 20
    """Ticks of a symbol accepted without the spike check, to seed the EWMA."""
    spike_confirm_ticks: int = 3
    """Consecutive agreeing ticks at a new level after which the level is accepted (a regime shift)."""
    spike_gap_ms: int = 60_000
    """Time scale of the bound's widening after a silence: × sqrt(1 + gap / spike_gap_ms)."""


class _Symbol:
    """What the validator remembers of one (feed, symbol)."""

    __slots__ = ("ewma", "last", "mid", "mid_t", "n", "suspect_mid", "suspects")

    def __init__(self, tick: Tick) -> None:
        self.last = tick  # the accepted tick with the latest time
        self.mid = tick.bid + tick.ask  # twice the reference mid: ratios are all the filter needs
        self.mid_t = tick.time_msc
        self.ewma = 0.0
        self.n = 1  # accepted ticks
        self.suspect_mid = 0
        self.suspects = 0


class TickValidator:
    """Splits a batch into accepted ticks and rejection counts by reason."""

    def __init__(
        self,
        now_ms: Callable[[], int],
        policy: ValidationPolicy | None = None,
        known_symbols: Callable[[str], frozenset[str] | None] | None = None,
    ) -> None:
        self._now_ms = now_ms
        self._policy = policy = policy or ValidationPolicy()
        self._known = known_symbols
        self._state: dict[tuple[str, str], _Symbol] = {}
        self._spikes = policy.spike_filter
        self._k = policy.spike_k
        self._floor = policy.spike_floor_bps / 10_000
        self._alpha = 2.0 / (max(1, policy.spike_ewma_ticks) + 1)
        self._warmup = policy.spike_warmup_ticks
        self._confirm = max(1, policy.spike_confirm_ticks)
        self._gap_ms = max(1, policy.spike_gap_ms)

    def validate(self, feed: str, ticks: Sequence[Tick]) -> tuple[list[Tick], Counter[str]]:
        """Return the ticks to accept and a count of the rejected ones by reason."""
        accepted: list[Tick] = []
        rejected: Counter[str] = Counter()
        policy = self._policy
        horizon = self._now_ms() + policy.future_tolerance_ms
        known = self._known(feed) if self._known is not None else None
        state = self._state
        tolerance = policy.backwards_tolerance_ms
        spikes, k, floor, alpha = self._spikes, self._k, self._floor, self._alpha
        log = math.log
        for tick in ticks:
            reason = self._check(tick, feed, horizon, known, policy)
            if reason is None:
                key = (tick.feed, tick.symbol)
                sym = state.get(key)
                if sym is None:
                    state[key] = _Symbol(tick)
                    accepted.append(tick)
                    continue
                prev = sym.last
                t = tick.time_msc
                if t < prev.time_msc - tolerance:
                    reason = "time_backwards"
                elif tick == prev:
                    reason = "duplicate"
                else:
                    if spikes:  # inlined: this runs for every tick
                        mid = tick.bid + tick.ask
                        ret = abs(log(mid / sym.mid))
                        bound = k * sym.ewma
                        if bound < floor:  # noqa: PLR1730 - hot path: a compare beats a max() call
                            bound = floor
                        if ret > bound:
                            if not self._jump(sym, tick, mid, bound):
                                rejected["spike"] += 1
                                continue
                        else:
                            sym.ewma += alpha * (ret - sym.ewma)
                            sym.n += 1
                            sym.mid = mid
                            sym.mid_t = t
                            sym.suspects = 0
                    if t >= prev.time_msc:
                        sym.last = tick
                    accepted.append(tick)
                    continue
            rejected[reason] += 1
        return accepted, rejected

    def _jump(self, sym: _Symbol, tick: Tick, mid: int, bound: float) -> bool:
        """Judge a move beyond the bound; return True to accept it as the new reference.

        Accepted: any move while the symbol warms up (the EWMA takes it clipped to the bound, so one bad
        print cannot blow the bound up), a move within the bound widened by the silence before it, or the
        `spike_confirm_ticks`-th consecutive suspect that agrees with the one before it (a regime shift);
        the last two do not feed the EWMA. Anything else is a spike.
        """
        if sym.n < self._warmup:
            sym.ewma += self._alpha * (bound - sym.ewma)
        else:
            ret = abs(math.log(mid / sym.mid))
            gap = tick.time_msc - sym.mid_t
            if gap <= 0 or ret > bound * math.sqrt(1.0 + gap / self._gap_ms):
                if sym.suspects and abs(math.log(mid / sym.suspect_mid)) <= bound:
                    sym.suspects += 1
                else:
                    sym.suspects = 1
                sym.suspect_mid = mid
                if sym.suspects < self._confirm:
                    return False
        sym.n += 1
        sym.mid = mid
        sym.mid_t = tick.time_msc
        sym.suspects = 0
        return True

    @staticmethod
    def _check(
        tick: Tick, feed: str, horizon: int, known: frozenset[str] | None, policy: ValidationPolicy
    ) -> str | None:
        if tick.feed != feed or not feed:  # an empty feed has no subject (md.tick.<feed>.<symbol>)
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
