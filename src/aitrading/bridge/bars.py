"""Streaming bars (M1 … D1) built from accepted ticks exactly as `TickStore.aggregate_bars` builds them.

A bar is what MT5 builds: bid open/high/low/close in tick-time order, `tick_volume` = number of ticks,
`spread` = the smallest `ask - bid` of the bar in points (rounded half away from zero), `real_volume` = the
sum of the ticks' raw volumes. Its `time` is the open time in UTC epoch seconds, aligned to the timeframe
from the epoch (so D1 starts at 00:00 UTC and H4 at 00, 04, 08 … UTC). MT5 aligns D1 and H4 to the broker's
*server* time instead; our feed times are UTC, so a broker on UTC+2 sees its D1 bars start at 22:00 UTC
here. Bars exist only where ticks exist, as in MT5: an empty period has no bar.

How it works, O(1) per tick
---------------------------
Only the smallest timeframe (the *base*, M1 by default) is updated per tick. Every timeframe is a multiple
of the base aligned to the same epoch, so a base bar lies inside exactly one bar of every larger timeframe:
when a base bar closes it is merged into the forming bar of each larger timeframe (six merges a minute per
symbol). Ties follow the store's order (time, then arrival): the open is the earliest tick, the first to
arrive among equal times; the close the latest, the last to arrive.

When a bar closes (`BarUpdate`)
-------------------------------
- **By tick**: the first tick of a later period of the same symbol closes the forming bar (MT5 semantics).
- **By clock**: `close_due(now_ms)` closes bars whose period ended at `now_ms`, so a quiet market still
  publishes its last bar. The caller passes its clock minus a grace (see `IngestPipeline`), because ticks
  reach us a little after their feed time.
- **Late ticks**: a tick of a period that is already closed (the validator lets ticks go back in time by
  `backwards_tolerance_ms`; a clock close can precede the period's last ticks) updates that closed bar,
  which is emitted again with `correction=True`. Consumers treat a bar whose key (feed, symbol, timeframe,
  time) they have seen as a replacement, as `TickStore.write_bars` does. Closed bars are kept for such
  corrections while their end is within `late_ms` of the symbol's latest tick time.

Partial bars
------------
The builder sees only the ticks that arrived since it started, so the bars of the periods in which it
first saw a symbol may lack earlier ticks (the bridge restarted mid-bar), and a tick older than its memory
(`late_ms`) cannot be merged into a bar it forgot. Such updates carry `partial=True`: the pipeline rebuilds
them from the stored ticks with `aggregate_bars` instead of trusting them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.values import PRICE_DECIMALS

__all__ = ["ALL_TIMEFRAMES", "BarBuilder", "BarUpdate", "point_raw_of", "spread_points"]

ALL_TIMEFRAMES: tuple[Timeframe, ...] = tuple(Timeframe)

DigitsOf = Callable[[str, str], int | None]


def _no_digits(feed: str, symbol: str) -> int | None:
    return None


_POINTS: dict[int, int] = {d: 10 ** (PRICE_DECIMALS - d) for d in range(PRICE_DECIMALS + 1)}


def point_raw_of(digits: int | None) -> int | None:
    """Return a symbol's point as a raw price (10^-digits), or None when its digits are unknown."""
    return None if digits is None else _POINTS.get(digits)


def spread_points(spread_raw: int, point_raw: int) -> int:
    """Return `spread_raw` in points of `point_raw`, rounded half away from zero (as `aggregate_bars`)."""
    q, r = divmod(abs(spread_raw), point_raw)
    if 2 * r >= point_raw:
        q += 1
    return q if spread_raw >= 0 else -q


class BarUpdate(NamedTuple):
    """A bar that closed, or a correction of one; `partial` ones must be rebuilt from the stored ticks."""

    bar: Bar
    partial: bool = False
    correction: bool = False


class _Acc:
    """One bar being accumulated: raw prices, the min raw spread, tick times of the open and the close."""

    __slots__ = (
        "close",
        "close_t",
        "count",
        "emitted",
        "end",
        "high",
        "low",
        "open",
        "open_t",
        "spread",
        "start",
        "volume",
    )

    def __init__(self, start: int, end: int, tick: Tick) -> None:
        self.start = start
        self.end = end
        self.open = self.high = self.low = self.close = tick.bid
        self.open_t = self.close_t = tick.time_msc
        self.count = 1
        self.spread = tick.ask - tick.bid
        self.volume = tick.volume
        self.emitted = False

    def add(self, tick: Tick) -> None:
        t = tick.time_msc
        bid = tick.bid
        if t >= self.close_t:
            self.close = bid
            self.close_t = t
        elif t < self.open_t:
            self.open = bid
            self.open_t = t
        if bid > self.high:
            self.high = bid
        elif bid < self.low:
            self.low = bid
        spread = tick.ask - bid
        self.spread = min(self.spread, spread)
        self.count += 1
        self.volume += tick.volume

    def merge(self, other: _Acc) -> None:
        """Fold in a bar of disjoint ticks (a closed base bar of this bar's period)."""
        # Plain compares, not min()/max(): an illiquid symbol closes a bar, so merges, on every tick.
        if other.open_t < self.open_t:
            self.open = other.open
            self.open_t = other.open_t
        if other.close_t >= self.close_t:
            self.close = other.close
            self.close_t = other.close_t
        self.high = other.high if other.high > self.high else self.high
        self.low = other.low if other.low < self.low else self.low
        self.spread = other.spread if other.spread < self.spread else self.spread
        self.count += other.count
        self.volume += other.volume

    def copy(self, start: int, end: int) -> _Acc:
        acc = _Acc.__new__(_Acc)
        acc.start = start
        acc.end = end
        acc.open, acc.high, acc.low, acc.close = self.open, self.high, self.low, self.close
        acc.open_t, acc.close_t = self.open_t, self.close_t
        acc.count, acc.spread, acc.volume = self.count, self.spread, self.volume
        acc.emitted = False
        return acc


class _Frame:
    """One timeframe of one symbol: its forming bar (larger timeframes only), recent closed bars."""

    __slots__ = ("closed", "cur", "first_end", "ms", "tf")

    def __init__(self, tf: Timeframe, first_t: int) -> None:
        self.tf = int(tf)
        self.ms = tf.seconds * 1000
        self.cur: _Acc | None = None  # for the base frame the forming bar lives on the series
        self.closed: dict[int, _Acc] = {}
        # Bars starting before this end may hold ticks from before we first saw the symbol.
        self.first_end = first_t - first_t % self.ms + self.ms


class _Series:
    __slots__ = ("base", "cur", "feed", "highs", "latest_start", "max_t", "symbol")

    def __init__(self, feed: str, symbol: str, timeframes: Sequence[Timeframe], first_t: int) -> None:
        self.feed = feed
        self.symbol = symbol
        self.base = _Frame(timeframes[0], first_t)
        self.highs = [_Frame(tf, first_t) for tf in timeframes[1:]]
        self.cur: _Acc | None = None  # the forming base bar
        self.latest_start = -1  # start of the latest base bar ever opened
        self.max_t = 0  # latest tick time seen (lags while the forming bar's close_t is ahead)


class BarBuilder:
    """Builds bars of several timeframes from a stream of accepted ticks.

    `digits_of(feed, symbol)` gives the symbol's digits (the bridge's `SymbolRegistry.digits`, announced by
    the agent), read when a bar is emitted; if unknown the bar's spread is 0. `late_ms` is how far behind a
    symbol's latest tick a tick may still arrive (the validator's `backwards_tolerance_ms`).
    """

    def __init__(
        self,
        timeframes: Iterable[Timeframe] = ALL_TIMEFRAMES,
        digits_of: DigitsOf = _no_digits,
        *,
        late_ms: int = 1_000,
    ) -> None:
        tfs = sorted({Timeframe(tf) for tf in timeframes}, key=lambda tf: tf.seconds)
        if not tfs:
            raise ValueError("a bar builder needs at least one timeframe")
        self.timeframes: tuple[Timeframe, ...] = tuple(tfs)
        self._base_ms = tfs[0].seconds * 1000
        self._digits_of = digits_of
        self._late_ms = max(0, late_ms)
        self._series: dict[str, dict[str, _Series]] = {}

    def digits(self, feed: str, symbol: str) -> int | None:
        """Return the digits of `symbol` on `feed` as `digits_of` reports them (None if unknown)."""
        return self._digits_of(feed, symbol)

    # -- ticks ----------------------------------------------------------------------------------------------

    def add(self, tick: Tick) -> list[BarUpdate]:
        """Take one accepted tick; return the bars it closed or corrected."""
        return self.add_many((tick,))

    def add_many(self, ticks: Iterable[Tick]) -> list[BarUpdate]:
        """Take accepted ticks in arrival order; return the bars they closed or corrected, in order."""
        out: list[BarUpdate] = []
        feeds = self._series
        feed: str | None = None
        table: dict[str, _Series] = {}
        for tick in ticks:
            if tick.feed != feed:
                feed = tick.feed
                table = feeds.setdefault(feed, {})
            s = table.get(tick.symbol)
            if s is not None:
                acc = s.cur
                # The hot path: a tick of the forming base bar (inlined `_Acc.add`).
                if acc is not None and acc.start <= (t := tick.time_msc) < acc.end:
                    bid = tick.bid
                    if t >= acc.close_t:
                        acc.close = bid
                        acc.close_t = t
                    elif t < acc.open_t:
                        acc.open = bid
                        acc.open_t = t
                    if bid > acc.high:
                        acc.high = bid
                    elif bid < acc.low:
                        acc.low = bid
                    spread = tick.ask - bid
                    if spread < acc.spread:  # noqa: PLR1730 - hot path: a compare beats a min() call
                        acc.spread = spread
                    acc.count += 1
                    acc.volume += tick.volume
                    continue
            else:
                s = table[tick.symbol] = _Series(tick.feed, tick.symbol, self.timeframes, tick.time_msc)
            self._route(s, tick, out)
        return out

    def _route(self, s: _Series, tick: Tick, out: list[BarUpdate]) -> None:
        t = tick.time_msc
        cur = s.cur
        if cur is not None and cur.close_t > s.max_t:
            s.max_t = cur.close_t
        start = t - t % self._base_ms
        if start > s.latest_start:  # a later period: close what it ends, open a new base bar
            if cur is not None:
                self._close_base(s, cur, out)
            for h in s.highs:
                if h.cur is not None and t - t % h.ms > h.cur.start:
                    self._close(s, h, h.cur, out)
            s.cur = _Acc(start, start + self._base_ms, tick)
            s.latest_start = start
            s.max_t = max(s.max_t, t)
            self._prune(s)
        else:
            self._late(s, tick, start, out)

    def _late(self, s: _Series, tick: Tick, start: int, out: list[BarUpdate]) -> None:
        """A tick of a base period whose bar is closed (or was never opened: a gap before the forming bar)."""
        t = tick.time_msc
        s.max_t = max(s.max_t, t)  # a tick of a period the clock closed may be the latest
        horizon = s.max_t - self._late_ms
        base = s.base
        acc = base.closed.get(start)
        if acc is not None:
            acc.add(tick)
            self._emit(s, base, acc, out)
        elif start + base.ms > horizon:
            acc = base.closed[start] = _Acc(start, start + base.ms, tick)
            self._emit(s, base, acc, out)
        else:
            self._emit(s, base, _Acc(start, start + base.ms, tick), out, partial=True)
        # The tick's base bar is already merged (or never will be): apply the tick to larger bars directly.
        cur = s.cur
        for h in s.highs:
            hstart = t - t % h.ms
            hcur = h.cur
            if hcur is not None and hcur.start == hstart:
                hcur.add(tick)
            elif hcur is None and cur is not None and hstart == cur.start - cur.start % h.ms:
                h.cur = _Acc(hstart, hstart + h.ms, tick)  # forming, nothing merged into it yet
            elif (acc := h.closed.get(hstart)) is not None:
                acc.add(tick)
                self._emit(s, h, acc, out)
            elif hstart + h.ms > horizon:
                acc = h.closed[hstart] = _Acc(hstart, hstart + h.ms, tick)
                self._emit(s, h, acc, out)
            else:
                self._emit(s, h, _Acc(hstart, hstart + h.ms, tick), out, partial=True)

    # -- the clock ------------------------------------------------------------------------------------------

    def close_due(self, now_ms: int) -> list[BarUpdate]:
        """Close the forming bars whose period ended at `now_ms` (epoch ms); return them."""
        out: list[BarUpdate] = []
        for table in self._series.values():
            for s in table.values():
                cur = s.cur
                if cur is not None and cur.end <= now_ms:
                    s.max_t = max(s.max_t, cur.close_t)
                    self._close_base(s, cur, out)
                for h in s.highs:
                    if h.cur is not None and h.cur.end <= now_ms:
                        self._close(s, h, h.cur, out)
        return out

    # -- inspection -----------------------------------------------------------------------------------------

    def forming(self, feed: str, symbol: str) -> list[Bar]:
        """Return the forming (not yet closed) bars of a symbol, smallest timeframe first."""
        s = self._series.get(feed, {}).get(symbol)
        if s is None:
            return []
        bars: list[Bar] = []
        cur = s.cur
        if cur is not None:
            bars.append(self._bar(s, s.base, cur))
        for h in s.highs:
            acc = h.cur
            if cur is not None:  # the forming base bar is not merged yet
                start = cur.start - cur.start % h.ms
                acc = cur.copy(start, start + h.ms) if acc is None else _merged(acc, cur)
            if acc is not None:
                bars.append(self._bar(s, h, acc))
        return bars

    # -- internals ------------------------------------------------------------------------------------------

    def _close_base(self, s: _Series, acc: _Acc, out: list[BarUpdate]) -> None:
        s.cur = None
        self._close(s, s.base, acc, out)
        for h in s.highs:
            hstart = acc.start - acc.start % h.ms
            hcur = h.cur
            if hcur is not None and hcur.start != hstart:  # cannot happen: closed when its period ended
                self._close(s, h, hcur, out)
                hcur = None
            if hcur is None:
                h.cur = acc.copy(hstart, hstart + h.ms)
            else:
                hcur.merge(acc)

    def _close(self, s: _Series, frame: _Frame, acc: _Acc, out: list[BarUpdate]) -> None:
        if frame is not s.base:
            frame.cur = None
        frame.closed[acc.start] = acc
        self._emit(s, frame, acc, out)

    def _prune(self, s: _Series) -> None:
        horizon = s.max_t - self._late_ms
        for frame in (s.base, *s.highs):
            closed = frame.closed
            # Bars mostly close in time order, so the first is the oldest: look further only if it expired.
            if closed and next(iter(closed.values())).end <= horizon:
                for start in [k for k, acc in closed.items() if acc.end <= horizon]:
                    del closed[start]

    def _emit(
        self, s: _Series, frame: _Frame, acc: _Acc, out: list[BarUpdate], *, partial: bool = False
    ) -> None:
        correction = acc.emitted
        acc.emitted = True
        partial = partial or acc.start < frame.first_end
        out.append(BarUpdate(self._bar(s, frame, acc), partial, correction))

    def _bar(self, s: _Series, frame: _Frame, acc: _Acc) -> Bar:
        point = point_raw_of(self._digits_of(s.feed, s.symbol))
        return Bar(
            feed=s.feed,
            symbol=s.symbol,
            timeframe=frame.tf,
            time=acc.start // 1000,
            open=acc.open,
            high=acc.high,
            low=acc.low,
            close=acc.close,
            tick_volume=acc.count,
            spread=0 if point is None else spread_points(acc.spread, point),
            real_volume=acc.volume,
        )


def _merged(a: _Acc, b: _Acc) -> _Acc:
    out = a.copy(a.start, a.end)
    out.merge(b)
    return out
