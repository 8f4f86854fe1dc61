"""Field parsers shared by the history formats: exact prices, wall-clock times, time zones, bad-row counts.

Prices go from text straight to raw integers (`aitrading.model.values`), never through a float. Times
become UTC epoch milliseconds; sub-millisecond digits are truncated (MT5 ticks carry milliseconds).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aitrading.common.errors import BadInputError
from aitrading.model.values import PRICE_DECIMALS, PRICE_SCALE, price_raw, volume_raw

__all__ = [
    "BadRow",
    "BadRows",
    "PriceCache",
    "ZoneConverter",
    "parse_epoch",
    "parse_price",
    "parse_volume",
    "parse_wall_time",
    "resolve_zone",
    "strptime_utc",
]

_MS_PER_DAY = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_PRICE_CACHE_SIZE = 1 << 16
_ZONE_BUCKET_MS = 900_000  # offsets are cached per quarter hour of wall time: zones change on those


class BadRow(Exception):
    """A row that cannot become a tick or bar; `reason` is what the import report counts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class BadRows:
    """Counts of bad rows by reason, with the first few line numbers of each for the report."""

    keep: int = 5
    counts: Counter[str] = field(default_factory=Counter)
    lines: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, line: int) -> None:
        """Count one bad row."""
        self.counts[reason] += 1
        kept = self.lines.setdefault(reason, [])
        if len(kept) < self.keep:
            kept.append(line)

    @property
    def total(self) -> int:
        return self.counts.total()


def _exact(text: str, scale: int, decimals: int) -> int:
    whole, _, frac = text.partition(".")
    if (
        whole.isascii()
        and whole.isdigit()
        and (not frac or (frac.isascii() and frac.isdigit() and len(frac) <= decimals))
    ):
        return int(whole) * scale + (int(frac.ljust(decimals, "0")) if frac else 0)
    raise ValueError(text)


def parse_price(text: str) -> int:
    """Return the raw price of a decimal string such as `1.10274`; raise `BadRow` if it is none.

    The fast path covers plain decimals; anything else (`1e-5`, a sign) goes through `Decimal`, exactly.
    """
    try:
        return _exact(text, PRICE_SCALE, PRICE_DECIMALS)
    except ValueError:
        pass
    text = text.strip()
    if not text:
        raise BadRow("missing_field")
    try:
        return price_raw(text)
    except (ValueError, TypeError):
        raise BadRow("bad_price") from None


def parse_volume(text: str) -> int:
    """Return the raw volume (1e-8 lots) of a decimal string; an empty cell is zero."""
    text = text.strip()
    if not text:
        return 0
    try:
        return volume_raw(text)
    except (ValueError, TypeError):
        raise BadRow("bad_volume") from None


# Dates Y-M-D (any of - . / or nothing between) or D.M.Y; times H:M:S with optional fraction, with or
# without colons (HistData's HHMMSSmmm); an optional offset (Z, +02:00, GMT+0200, UTC).
_WALL_TIME = re.compile(
    r"\s*(?:(?P<y>\d{4})[-./]?(?P<mo>\d{2})[-./]?(?P<d>\d{2})|(?P<d2>\d{2})[-./](?P<mo2>\d{2})[-./](?P<y2>\d{4}))"
    r"(?:(?:[ T]+|,)(?P<h>\d{1,2}):?(?P<mi>\d{2})(?::?(?P<s>\d{2})(?:[.,:]?(?P<f>\d{1,9}))?)?)?"
    r"\s*(?P<z>Z|(?:GMT|UTC)?\s*(?P<sign>[+-])(?P<zh>\d{2}):?(?P<zm>\d{2})|GMT|UTC)?\s*$"
)


_days_cache: dict[tuple[str, str, str], int] = {}


def _days(y: str, mo: str, d: str) -> int:
    try:
        days = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise BadRow("unparsable_time") from None
    if len(_days_cache) < 1 << 16:
        _days_cache[y, mo, d] = days
    return days


def parse_wall_time(text: str) -> tuple[int, int | None]:
    """Return (wall-clock ms since 1970-01-01, the text's own UTC offset in ms or None).

    Reads `2020-01-30 15:28:09.820+00:00`, `2020.01.30 15:28:09.820`, `20200130 152809820`, `30.01.2020
    15:28:09.820 GMT+0200` and the like; raises `BadRow('unparsable_time')` otherwise.
    """
    m = _WALL_TIME.match(text)
    if m is None:
        raise BadRow("unparsable_time")
    y, mo, d, d2, mo2, y2, h, mi, s, f, z, sign, zh, zm = m.groups()
    if y is None:
        y, mo, d = y2, mo2, d2
    days = _days_cache.get((y, mo, d))
    if days is None:
        days = _days(y, mo, d)
    ms = days * _MS_PER_DAY
    if h is not None:
        hh, mm, ss = int(h), int(mi), int(s) if s else 0
        if hh > 23 or mm > 59 or ss > 59:
            raise BadRow("unparsable_time")
        ms += ((hh * 60 + mm) * 60 + ss) * 1000
        if f:
            ms += int(f[:3].ljust(3, "0"))
    if z is None:
        return ms, None
    if sign is None:
        return ms, 0
    minutes = int(zh) * 60 + int(zm)
    return ms, (minutes if sign == "+" else -minutes) * 60_000


def parse_epoch(text: str, unit: str = "auto") -> int:
    """Return UTC epoch milliseconds from an epoch number in `unit` (s, ms, us, ns, or auto by magnitude).

    Auto: below 1e11 the number is seconds (up to year 5138), below 1e14 milliseconds, below 1e17
    microseconds, else nanoseconds. Seconds may have a fraction.
    """
    text = text.strip()
    whole, _, frac = text.partition(".")
    if not (whole.isascii() and whole.isdigit()) or (frac and not (frac.isascii() and frac.isdigit())):
        raise BadRow("unparsable_time")
    value = int(whole)
    if unit == "auto":
        unit = "s" if value < 10**11 else "ms" if value < 10**14 else "us" if value < 10**17 else "ns"
    if unit == "s":
        return value * 1000 + (int(frac[:3].ljust(3, "0")) if frac else 0)
    return value // {"ms": 1, "us": 1_000, "ns": 1_000_000}[unit]


_FIXED_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


def resolve_zone(name: str) -> tzinfo:
    """Return the time zone named `name`: an IANA name (`Europe/Athens`, `Etc/GMT-2`), `UTC`, or a fixed
    offset such as `+02:00` or `UTC-5`; raise `BadInputError` naming the forms otherwise."""
    text = name.strip()
    if text.upper() in ("UTC", "GMT", "Z"):
        return UTC
    m = _FIXED_OFFSET.match(text)
    if m is not None:
        minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
        if minutes >= 24 * 60:
            raise BadInputError(f"time zone offset {name!r} is out of range")
        return timezone(timedelta(minutes=minutes if m.group(1) == "+" else -minutes))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInputError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Athens or Etc/GMT-2, or an offset "
            "such as +02:00"
        ) from None


class ZoneConverter:
    """Turns wall-clock milliseconds of one zone into UTC, fast, for time-ordered rows.

    In the hour a DST change repeats, the first pass gets the earlier offset; when a time would then go
    backwards, the row is taken as the second pass (fold=1), which is how a time-ordered export reads.
    """

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self._offsets: dict[int, tuple[int, int]] = {}
        self._prev_utc: int | None = None

    def _offsets_at(self, bucket: int) -> tuple[int, int]:
        wall = datetime(1970, 1, 1) + timedelta(milliseconds=bucket * _ZONE_BUCKET_MS)  # noqa: DTZ001 - wall time
        pair = []
        for fold in (0, 1):
            offset = wall.replace(tzinfo=self.zone, fold=fold).utcoffset() or timedelta(0)
            pair.append(offset // timedelta(milliseconds=1))
        return pair[0], pair[1]

    def to_utc(self, wall_ms: int, offset_ms: int | None = None) -> int:
        """Return UTC epoch milliseconds of a wall-clock time; an offset from the text wins over the zone."""
        if offset_ms is not None:
            return wall_ms - offset_ms
        offsets = self._offsets.get(wall_ms // _ZONE_BUCKET_MS)
        if offsets is None:
            offsets = self._offsets[wall_ms // _ZONE_BUCKET_MS] = self._offsets_at(wall_ms // _ZONE_BUCKET_MS)
        utc = wall_ms - offsets[0]
        if offsets[1] != offsets[0] and self._prev_utc is not None and utc < self._prev_utc:
            utc = wall_ms - offsets[1]
        self._prev_utc = utc
        return utc

    def parse(self, text: str) -> int:
        """Return UTC epoch milliseconds of a date-time text (see `parse_wall_time`)."""
        wall_ms, offset_ms = parse_wall_time(text)
        return self.to_utc(wall_ms, offset_ms)


class PriceCache(dict[str, int]):
    """Raw prices by their text: a file repeats a few thousand prices, so most rows parse nothing."""

    __slots__ = ()

    def __call__(self, text: str) -> int:
        raw = self.get(text)
        if raw is None:
            raw = parse_price(text)
            if len(self) < _PRICE_CACHE_SIZE:
                self[text] = raw
        return raw


_NAIVE_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - the wall-clock epoch of naive parsed times


def strptime_utc(text: str, fmt: str, converter: ZoneConverter) -> int:
    """Return UTC epoch milliseconds of `text` read with the `strptime` pattern `fmt`."""
    try:
        parsed = datetime.strptime(text.strip(), fmt)  # noqa: DTZ007 - the zone is applied just below
    except ValueError:
        raise BadRow("unparsable_time") from None
    if parsed.tzinfo is not None:
        offset = parsed.utcoffset() or timedelta(0)
        parsed = parsed.replace(tzinfo=None) - offset
        return (parsed - _NAIVE_EPOCH) // timedelta(milliseconds=1)
    return converter.to_utc((parsed - _NAIVE_EPOCH) // timedelta(milliseconds=1))
