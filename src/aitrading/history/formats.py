"""Streaming parsers of the tick files traders already have, yielding model `Tick`s one row at a time.

Formats (`TickFormat`):

- `mt5`: MT5's tick export. Tab-separated, header `<DATE> <TIME> <BID> <ASK> <LAST> <VOLUME> <FLAGS>`,
  `YYYY.MM.DD` and `HH:MM:SS.mmm` in **broker time** (so a zone is required), often UTF-16 LE with BOM. MT5
  writes only the sides that changed: an empty BID, ASK, LAST or VOLUME cell repeats the previous row's
  value (a row with nothing to repeat is `missing_price`). FLAGS are kept as MT5 wrote them.
- `histdata`: HistData ASCII ticks, no header: `YYYYMMDD HHMMSSmmm,bid,ask,volume` in EST **without DST**
  (fixed UTC−5) as HistData documents; the volume column is always 0 and is ignored.
- `dukascopy`: Dukascopy CSV. Columns are found by header name, so both `Gmt time,Ask,Bid,AskVolume,
  BidVolume` (Dukascopy's own export: `dd.mm.yyyy HH:MM:SS.fff`, **ask before bid**) and `timestamp,bid,ask`
  work; a `Local time` column with `GMT+0200` suffixes carries its own offset. Without a header the native
  order `time,ask,bid` is assumed. Dukascopy's volumes are quoted liquidity, not traded volume: ignored.
- `truefx`: `timestamp,bid,ask` with ISO times, or TrueFX's native headerless `EUR/USD,20200130
  15:28:09.820,1.10281,1.10285`; UTC. Rows of another pair than the first row's are `other_symbol`.
- `csv`: anything else, described by `CsvOptions` (columns by header name or 1-based number, a time
  format or epoch numbers, the zone).

Every format detects its separator (tab, semicolon or comma) from the first line; where the separator is
not a comma, a decimal comma in a price is read as a point. Vendor quotes (every format but `mt5`) carry
both sides on every row, so their ticks get MT5's `TICK_FLAG_BID | TICK_FLAG_ASK`; that constant also keeps
an exact repeat of a row equal to the tick before it, so the validator can see the `duplicate`.

A row that cannot be parsed is counted in `BadRows` by reason (`missing_field`, `unparsable_time`,
`bad_price`, `bad_volume`, `bad_flags`, `missing_price`, `other_symbol`) and skipped; nothing aborts the file.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo

from aitrading.common.errors import BadInputError
from aitrading.history._fields import (
    BadRow,
    BadRows,
    PriceCache,
    ZoneConverter,
    parse_epoch,
    parse_volume,
    parse_wall_time,
    resolve_zone,
    strptime_utc,
)
from aitrading.history._text import detect_separator
from aitrading.model.market import Tick

__all__ = ["DEFAULT_ZONES", "CsvOptions", "TickFormat", "TickParser", "header_names"]

_QUOTE_FLAGS = 2 | 4  # MT5's TICK_FLAG_BID | TICK_FLAG_ASK: both sides of a vendor quote are current
_EPOCH_UNITS = {"epoch_s": "s", "epoch_ms": "ms", "epoch_us": "us", "epoch_ns": "ns", "epoch": "auto"}
_TIME_NAMES = ("timestamp", "gmt time", "time", "datetime", "date time", "local time", "utc", "date")


class TickFormat(enum.StrEnum):
    """The tick file formats `aitrading import ticks` reads."""

    MT5 = "mt5"
    HISTDATA = "histdata"
    DUKASCOPY = "dukascopy"
    TRUEFX = "truefx"
    CSV = "csv"


DEFAULT_ZONES: dict[TickFormat, str | None] = {
    TickFormat.MT5: None,  # broker time: the user must say which zone
    TickFormat.HISTDATA: "-05:00",  # EST without DST, per HistData
    TickFormat.DUKASCOPY: "UTC",
    TickFormat.TRUEFX: "UTC",
    TickFormat.CSV: "UTC",
}


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How to read a generic CSV. Columns are header names or 1-based numbers; None finds them by name.

    `time_format` is `auto` (epoch numbers by magnitude, else date-time text), `epoch_s`, `epoch_ms`,
    `epoch_us`, `epoch_ns`, or a `strptime` pattern such as `%d/%m/%Y %H:%M:%S.%f`. `date_col` joins a
    separate date column in front of the time column.
    """

    time_col: str | None = None
    bid_col: str | None = None
    ask_col: str | None = None
    date_col: str | None = None
    time_format: str = "auto"


@dataclass(frozen=True, slots=True)
class _Layout:
    time: int
    bid: int
    ask: int
    date: int | None = None
    last: int | None = None
    volume: int | None = None
    flags: int | None = None
    pair: int | None = None
    header: bool = False

    @property
    def width(self) -> int:
        return 1 + max(i for i in (self.time, self.bid, self.ask, self.date, self.pair) if i is not None)


def header_names(fields: Sequence[str]) -> list[str]:
    """Return header cells normalised for lookup: lower case, without `<>`, quotes or spaces around."""
    return [f.strip().strip("\ufeff\"'").strip("<>").strip().lower() for f in fields]


def _find(names: list[str], wanted: Iterable[str]) -> int | None:
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


def _column(ref: str, names: list[str] | None, what: str) -> int:
    """Resolve a `--*-col` value: a 1-based column number or a header name."""
    text = ref.strip()
    if text.isdigit() and int(text) >= 1:
        return int(text) - 1
    if names is None:
        raise BadInputError(f"--{what}-col {ref!r} names a column, but the file has no header line")
    index = _find(names, [text.lower()])
    if index is None:
        raise BadInputError(f"--{what}-col {ref!r} is not in the header ({', '.join(names)})")
    return index


def _is_time(cell: str) -> bool:
    try:
        parse_wall_time(cell)
    except BadRow:
        try:
            parse_epoch(cell)
        except BadRow:
            return False
    return True


def _looks_like_data(cells: Sequence[str]) -> bool:
    """True if one of a first line's first two cells is a time: then it is data, not a header."""
    return any(_is_time(cell) for cell in cells[:2])


class TickParser:
    """Turns the numbered lines of one file of `fmt` into `(line number, Tick)`; bad rows go to `bad`."""

    def __init__(
        self,
        fmt: TickFormat | str,
        *,
        feed: str,
        symbol: str,
        zone: tzinfo | str | None = None,
        options: CsvOptions | None = None,
        bad: BadRows | None = None,
    ) -> None:
        self.format = TickFormat(fmt)
        self.feed = feed
        self.symbol = symbol
        zone = zone if zone is not None else DEFAULT_ZONES[self.format]
        if zone is None:
            raise BadInputError("MT5 exports are in broker time: pass --tz, e.g. --tz Etc/GMT-2")
        self.zone = resolve_zone(zone) if isinstance(zone, str) else zone
        self.options = options or CsvOptions()
        self.bad = bad if bad is not None else BadRows()
        self.separator = ""
        self._to_utc = self._time_parser()

    def ticks(self, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, Tick]]:
        """Yield `(line number, tick)` for every good row; count the others in `self.bad`."""
        it = iter(lines)
        head = next(((n, line) for n, line in it if line.strip()), None)
        if head is None:
            return
        number, first = head
        self.separator = sep = detect_separator(first)
        layout = self._layout(first.split(sep))
        rows = it if layout.header else itertools.chain([(number, first)], it)
        if self.format is TickFormat.MT5:
            yield from self._mt5_rows(rows, sep, layout)
        else:
            yield from self._quote_rows(rows, sep, layout)

    # -- layouts ----------------------------------------------------------------------------------------

    def _layout(self, first: list[str]) -> _Layout:
        names = header_names(first)
        fmt = self.format
        if fmt is TickFormat.MT5:
            if not names[0].startswith("date") and not first[0].strip().startswith("<"):
                return _Layout(time=1, date=0, bid=2, ask=3, last=4, volume=5, flags=6)
            return _Layout(
                date=_find(names, ["date"]),
                time=self._need(names, ["time"], "<TIME>"),
                bid=self._need(names, ["bid"], "<BID>"),
                ask=self._need(names, ["ask"], "<ASK>"),
                last=_find(names, ["last"]),
                volume=_find(names, ["volume"]),
                flags=_find(names, ["flags"]),
                header=True,
            )
        if fmt is TickFormat.HISTDATA:
            return _Layout(time=0, bid=1, ask=2)
        if fmt is TickFormat.TRUEFX and len(first) >= 4 and not _is_time(first[0]) and _is_time(first[1]):
            return _Layout(pair=0, time=1, bid=2, ask=3)  # TrueFX's own files: EUR/USD,time,bid,ask
        if fmt is TickFormat.CSV:
            return self._csv_layout(first, names)
        if _looks_like_data(first):
            if fmt is TickFormat.DUKASCOPY:
                return _Layout(time=0, ask=1, bid=2)  # Dukascopy's own order: ask before bid
            return _Layout(time=0, bid=1, ask=2)
        return self._named_layout(names)

    def _named_layout(self, names: list[str]) -> _Layout:
        date, time = self._time_columns(names)
        return _Layout(
            date=date,
            time=time,
            bid=self._need(names, ["bid"], "bid"),
            ask=self._need(names, ["ask"], "ask"),
            header=True,
        )

    def _time_columns(self, names: list[str]) -> tuple[int | None, int]:
        """Return (date, time) columns: separate `date` and `time` columns, else one time-like column."""
        date = _find(names, ["date"])
        time = _find(names, ["time"]) if date is not None else None
        if date is None or time is None:
            return None, self._need(names, _TIME_NAMES, "time")
        return date, time

    def _csv_layout(self, first: list[str], names: list[str]) -> _Layout:
        opts = self.options
        refs = {"time": opts.time_col, "bid": opts.bid_col, "ask": opts.ask_col, "date": opts.date_col}
        by_name = any(ref is not None and not ref.strip().isdigit() for ref in refs.values())
        header = by_name or not _looks_like_data(first)
        cols = names if header else None

        def column(key: str, wanted: Sequence[str], default: int) -> int:
            ref = refs[key]
            if ref is not None:
                return _column(ref, cols, key)
            return self._need(names, wanted, key) if header else default

        if header and opts.time_col is None and opts.date_col is None:
            date, time = self._time_columns(names)
        else:
            date = _column(opts.date_col, cols, "date") if opts.date_col is not None else None
            time = column("time", _TIME_NAMES, 0)
        bid, ask = column("bid", ["bid"], 1), column("ask", ["ask"], 2)
        return _Layout(time=time, date=date, bid=bid, ask=ask, header=header)

    def _need(self, names: list[str], wanted: Sequence[str], what: str) -> int:
        index = _find(names, wanted)
        if index is None:
            raise BadInputError(
                f"{self.format.value} file: no {what} column in the header ({', '.join(names)}); "
                "for other layouts use --format csv with --time-col/--bid-col/--ask-col"
            )
        return index

    # -- times ------------------------------------------------------------------------------------------

    def _time_parser(self) -> Callable[[str], int]:
        converter = ZoneConverter(self.zone)
        fmt = self.options.time_format.strip() if self.format is TickFormat.CSV else "auto"
        if fmt in _EPOCH_UNITS:
            unit = _EPOCH_UNITS[fmt]
            return lambda text: parse_epoch(text, unit)
        if "%" in fmt:
            return lambda text: strptime_utc(text, fmt, converter)
        if fmt != "auto":
            raise BadInputError(
                f"--time-format {fmt!r}: use auto, epoch_s, epoch_ms, epoch_us, epoch_ns "
                "or a strptime pattern such as %d.%m.%Y %H:%M:%S.%f"
            )
        if self.format is not TickFormat.CSV:
            return converter.parse

        def auto(text: str) -> int:
            stripped = text.strip()
            if stripped.replace(".", "", 1).isdigit():
                return parse_epoch(stripped)
            return converter.parse(text)

        return auto

    # -- rows -------------------------------------------------------------------------------------------

    def _quote_rows(
        self, rows: Iterable[tuple[int, str]], sep: str, layout: _Layout
    ) -> Iterator[tuple[int, Tick]]:
        to_utc, add, feed, symbol = self._to_utc, self.bad.add, self.feed, self.symbol
        t_i, d_i, b_i, a_i, p_i, width = (
            layout.time,
            layout.date,
            layout.bid,
            layout.ask,
            layout.pair,
            layout.width,
        )
        comma = sep != ","
        pair: str | None = None
        price = PriceCache()
        for number, line in rows:
            fields = line.split(sep)
            if len(fields) < width:
                if line.strip():
                    add("missing_field", number)
                continue
            try:
                time_msc = to_utc(fields[t_i] if d_i is None else f"{fields[d_i]} {fields[t_i]}")
                b, a = fields[b_i], fields[a_i]
                if comma:
                    b, a = b.replace(",", "."), a.replace(",", ".")
                bid, ask = price(b), price(a)
                if p_i is not None:
                    if pair is None:
                        pair = fields[p_i].strip()
                    elif fields[p_i].strip() != pair:
                        raise BadRow("other_symbol")
            except BadRow as exc:
                add(exc.reason, number)
                continue
            tick = Tick(feed=feed, symbol=symbol, time_msc=time_msc, bid=bid, ask=ask, flags=_QUOTE_FLAGS)
            yield number, tick

    def _mt5_rows(
        self, rows: Iterable[tuple[int, str]], sep: str, layout: _Layout
    ) -> Iterator[tuple[int, Tick]]:
        to_utc, add, feed, symbol = self._to_utc, self.bad.add, self.feed, self.symbol
        t_i, d_i, b_i, a_i, width = layout.time, layout.date, layout.bid, layout.ask, layout.width
        l_i, v_i, f_i = layout.last, layout.volume, layout.flags
        bid: int | None = None
        ask: int | None = None
        last = volume = 0
        price = PriceCache()
        for number, line in rows:
            fields = line.split(sep)
            if len(fields) < width:
                if line.strip():
                    add("missing_field", number)
                continue
            try:
                time_msc = to_utc(fields[t_i] if d_i is None else f"{fields[d_i]} {fields[t_i]}")
                b, a = fields[b_i].strip(), fields[a_i].strip()
                new_bid = price(b) if b else bid
                new_ask = price(a) if a else ask
                cell = fields[l_i].strip() if l_i is not None and l_i < len(fields) else ""
                new_last = price(cell) if cell else last
                cell = fields[v_i].strip() if v_i is not None and v_i < len(fields) else ""
                new_volume = parse_volume(cell) if cell else volume
                cell = fields[f_i].strip() if f_i is not None and f_i < len(fields) else ""
                flags = _flags(cell)
            except BadRow as exc:
                add(exc.reason, number)
                continue
            bid, ask, last, volume = new_bid, new_ask, new_last, new_volume
            if bid is None or ask is None:  # the side that did come is remembered for the next row
                add("missing_price", number)
                continue
            yield (
                number,
                Tick(
                    feed=feed,
                    symbol=symbol,
                    time_msc=time_msc,
                    bid=bid,
                    ask=ask,
                    last=last,
                    volume=volume,
                    flags=flags,
                ),
            )


def _flags(cell: str) -> int:
    if not cell:
        return 0
    if not (cell.isascii() and cell.isdigit()) or int(cell) >= 2**32:
        raise BadRow("bad_flags")
    return int(cell)
