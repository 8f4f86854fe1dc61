"""A streaming parser of MT5's bar export, yielding model `Bar`s one row at a time.

MT5 exports bars tab-separated with the header `<DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE> <TICKVOL> <VOL>
<SPREAD>` (D1 and longer have no `<TIME>`), in **broker time**, so the zone is required. A bar's `time`
becomes its true UTC open time: with a broker at UTC+2, the D1 bar of 2020-01-30 opens 2020-01-29 22:00
UTC. D1 and H4 bars therefore keep the broker's day boundaries instead of falling on the UTC grid the
platform's own aggregation uses; that is what the broker's bars were. `<SPREAD>` is in points already;
`<VOL>` (real volume) becomes raw 1e-8 units like a tick's volume. A bar whose broker time is not on the
timeframe's grid (say an M1 file imported as H1) is refused as `misaligned_time`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import tzinfo

from aitrading.common.errors import BadInputError
from aitrading.history._fields import (
    BadRow,
    BadRows,
    ZoneConverter,
    parse_price,
    parse_volume,
    parse_wall_time,
    resolve_zone,
)
from aitrading.history._text import detect_separator
from aitrading.history.formats import header_names
from aitrading.model.market import Bar, Timeframe

__all__ = ["BarParser", "check_bar"]

_COLUMNS = ("date", "time", "open", "high", "low", "close", "tickvol", "vol", "spread")


def check_bar(bar: Bar) -> str | None:
    """Return why a bar is not a bar (`non_positive_price`, `bad_ohlc`, `negative_volume`), or None."""
    if min(bar.open, bar.high, bar.low, bar.close) <= 0:
        return "non_positive_price"
    if bar.low > min(bar.open, bar.close) or bar.high < max(bar.open, bar.close):
        return "bad_ohlc"
    if bar.tick_volume < 0 or bar.real_volume < 0:
        return "negative_volume"
    return None


def _int(text: str, reason: str) -> int:
    text = text.strip()
    if not text:
        return 0
    if text.lstrip("-").isdigit() and text.isascii():
        return int(text)
    raise BadRow(reason)


class BarParser:
    """Turns the numbered lines of an MT5 bar export into `(line number, Bar)`; bad rows go to `bad`."""

    def __init__(
        self,
        *,
        feed: str,
        symbol: str,
        timeframe: Timeframe,
        zone: tzinfo | str | None,
        bad: BadRows | None = None,
    ) -> None:
        if zone is None:
            raise BadInputError("MT5 exports are in broker time: pass --tz, e.g. --tz Etc/GMT-2")
        self.feed = feed
        self.symbol = symbol
        self.timeframe = timeframe
        self.zone = resolve_zone(zone) if isinstance(zone, str) else zone
        self.bad = bad if bad is not None else BadRows()

    def bars(self, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, Bar]]:
        """Yield `(line number, bar)` for every parsable row; count the others in `self.bad`."""
        it = iter(lines)
        head = next(((n, line) for n, line in it if line.strip()), None)
        if head is None:
            return
        number, first = head
        sep = detect_separator(first)
        names = header_names(first.split(sep))
        if first.lstrip("\ufeff").strip().startswith("<"):
            missing = [c for c in _COLUMNS if c not in names and c != "time"]
            if missing:
                wanted = " ".join(f"<{c.upper()}>" for c in missing)
                raise BadInputError(f"MT5 bar export: the header lacks {wanted}")
            cols = {c: names.index(c) for c in _COLUMNS if c in names}
            rows: Iterable[tuple[int, str]] = it
        else:
            present = _COLUMNS if len(names) >= len(_COLUMNS) else tuple(c for c in _COLUMNS if c != "time")
            cols = {c: i for i, c in enumerate(present)}
            rows = itertools.chain([(number, first)], it)
        yield from self._rows(rows, sep, cols)

    def _rows(
        self, rows: Iterable[tuple[int, str]], sep: str, cols: dict[str, int]
    ) -> Iterator[tuple[int, Bar]]:
        converter = ZoneConverter(self.zone)
        width = max(cols.values()) + 1
        d_i, t_i = cols["date"], cols.get("time")
        o_i, h_i, l_i, c_i = cols["open"], cols["high"], cols["low"], cols["close"]
        tv_i, v_i, s_i = cols["tickvol"], cols["vol"], cols["spread"]
        feed, symbol, tf = self.feed, self.symbol, int(self.timeframe)
        span_ms = self.timeframe.seconds * 1000
        for number, line in rows:
            fields = line.split(sep)
            if len(fields) < width:
                if line.strip():
                    self.bad.add("missing_field", number)
                continue
            try:
                text = fields[d_i] if t_i is None else f"{fields[d_i]} {fields[t_i]}"
                wall_ms, offset_ms = parse_wall_time(text)
                if wall_ms % span_ms:
                    raise BadRow("misaligned_time")  # not on the timeframe's grid: a wrong --timeframe?
                time_ms = converter.to_utc(wall_ms, offset_ms)
                bar = Bar(
                    feed=feed,
                    symbol=symbol,
                    timeframe=tf,
                    time=time_ms // 1000,
                    open=parse_price(fields[o_i]),
                    high=parse_price(fields[h_i]),
                    low=parse_price(fields[l_i]),
                    close=parse_price(fields[c_i]),
                    tick_volume=_int(fields[tv_i], "bad_volume"),
                    spread=_int(fields[s_i], "bad_spread"),
                    real_volume=parse_volume(fields[v_i]),
                )
            except BadRow as exc:
                self.bad.add(exc.reason, number)
                continue
            yield number, bar
