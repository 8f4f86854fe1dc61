"""Market-data history over a `TickStore`, independent of HTTP: time parsing, cursors and paging.

Everything here raises `BadInputError` with a message for the caller when the request is wrong, and lets
the store's `TemporaryError` / `OperationalError` through; the HTTP layer (`api`) maps them to 4xx / 503.

Ranges and pages
----------------
- Times are UTC epoch milliseconds; ranges are half-open, `[from, to)`.
- A tick page continues after the last tick it returned (the store's keyset `TickCursor`).
- A bar is in a range when its open time is. Bars built from ticks are always whole bars: the ticks of
  `[open, open + timeframe)`, even when `to` falls inside the last one, so a bar does not change with the
  page size or the `to` of the request (stored bars behave the same way).
- `auto` merges stored bars with bars built from ticks: in each timeframe period a stored bar wins and a
  period without one is built from the ticks. Both are fetched from the same position with the page size
  plus one, which is enough: the first `limit + 1` of the union are among the first `limit + 1` of each.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from aitrading.common.errors import BadInputError
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.values import PRICE_DECIMALS, VOLUME_DECIMALS
from aitrading.mt5.specs import DEFAULT_SPECS
from aitrading.storage.ticks import TickCursor, TickStore, next_tick_cursor

__all__ = [
    "MAX_MS",
    "BarSource",
    "BarsPage",
    "TicksPage",
    "bars_page",
    "decimal_string",
    "decode_bar_cursor",
    "decode_tick_cursor",
    "encode_bar_cursor",
    "encode_tick_cursor",
    "iso_ms",
    "iso_s",
    "parse_time",
    "point_raw_of",
    "symbol_digits",
    "ticks_page",
    "volume_string",
]

BarSource = Literal["auto", "stored", "ticks"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MAX_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z in epoch milliseconds: the latest time the API accepts (and the default `to`)."""
_EPOCH_MS = re.compile(r"[0-9]{1,30}")
_CURSOR_PART = re.compile(r"0|[1-9][0-9]{0,19}")
_WINDOW_GROWTH_CAP = 8  # a window spans at most 8x the bars still wanted (see `_bars_from_ticks`)


# -- values -------------------------------------------------------------------------------------------------


def parse_time(text: str, what: str) -> int:
    """Return epoch milliseconds of `text`: ISO-8601 (naive means UTC) or an integer of epoch ms.

    A time finer than a millisecond rounds up, which keeps `[from, to)` exact for millisecond ticks.
    """
    value = text.strip()
    if _EPOCH_MS.fullmatch(value):
        ms = int(value)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise BadInputError(
                f"{what} {text!r} is neither ISO-8601 (e.g. 2024-01-02T03:04:05Z) nor epoch milliseconds"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = -((_EPOCH - moment) // _MS)  # exact integer ceiling, no float on the way
    if not 0 <= ms <= MAX_MS:
        raise BadInputError(f"{what} {text!r} is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59.999Z")
    return ms


@functools.lru_cache(maxsize=4096)  # ticks of a page share seconds; formatting a datetime is the cost
def _iso_second(seconds: int) -> str:
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}"


def iso_ms(ms: int) -> str:
    """Return `ms` as ISO-8601 UTC with milliseconds, e.g. `2024-01-02T03:04:05.250Z`."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


def iso_s(seconds: int) -> str:
    """Return epoch `seconds` as ISO-8601 UTC, e.g. `2024-01-02T03:04:00Z`."""
    return f"{_iso_second(seconds)}Z"


def decimal_string(raw: int, decimals: int = PRICE_DECIMALS, min_places: int = 0) -> str:
    """Return the exact decimal text of a raw integer of 10^-`decimals`, never rounded, never exponent.

    Trailing zeros are kept up to `min_places` (a symbol's digits: `1.08500`), and dropped beyond.
    """
    sign = "-" if raw < 0 else ""
    if decimals <= 0:
        return f"{sign}{abs(raw)}"
    text = str(abs(raw)).rjust(decimals + 1, "0")  # slicing text: about twice as fast as divmod + format
    digits = text[-decimals:].rstrip("0")
    if len(digits) < min_places:
        digits = digits.ljust(min(min_places, decimals), "0")
    return f"{sign}{text[:-decimals]}.{digits}" if digits else f"{sign}{text[:-decimals]}"


def volume_string(raw: int) -> str:
    """Return the exact decimal text of a raw volume (1e-8 lots)."""
    return decimal_string(raw, VOLUME_DECIMALS)


def symbol_digits(symbol: str, digits: int | None = None) -> int | None:
    """Return the price digits of `symbol`: `digits` if given, else the default specification's, else None."""
    if digits is not None:
        return digits
    spec = DEFAULT_SPECS.get(symbol)
    return None if spec is None else spec.digits


def point_raw_of(digits: int | None) -> int | None:
    """Return one point as a raw price for `digits` (None when the digits are unknown)."""
    return None if digits is None else 10 ** (PRICE_DECIMALS - digits)


# -- cursors ------------------------------------------------------------------------------------------------


def _encode(*parts: object) -> str:
    text = ":".join(str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _decode(cursor: str, kind: str, count: int) -> list[int]:
    bad = BadInputError(f"cursor {cursor!r} is not a {kind} cursor of this API; pass next_cursor unchanged")
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    tag, *parts = text.split(":")
    if tag != kind or len(parts) != count or not all(_CURSOR_PART.fullmatch(p) for p in parts):
        raise bad
    return [int(p) for p in parts]


def encode_tick_cursor(cursor: TickCursor) -> str:
    """Return the opaque text of a tick cursor."""
    return _encode("t", cursor.time_msc, cursor.skip)


def decode_tick_cursor(cursor: str, from_ms: int, to_ms: int) -> TickCursor:
    """Return the tick cursor of `cursor`; raise `BadInputError` if it is malformed or out of range."""
    time_msc, skip = _decode(cursor, "t", 2)
    if not from_ms <= time_msc <= to_ms or skip > 2**63 - 1:
        raise BadInputError(f"cursor {cursor!r} does not belong to the range [from, to) of this request")
    return TickCursor(time_msc, skip)


def encode_bar_cursor(timeframe: Timeframe, position_s: int) -> str:
    """Return the opaque text of a bar cursor: continue with bars that open at or after `position_s`."""
    return _encode("b", int(timeframe), position_s)


def decode_bar_cursor(cursor: str, timeframe: Timeframe, start_s: int, end_s: int) -> int:
    """Return the position (epoch s) of bar cursor `cursor`; raise `BadInputError` if it does not fit."""
    tf, position = _decode(cursor, "b", 2)
    if tf != int(timeframe):
        raise BadInputError(f"cursor {cursor!r} belongs to another timeframe than {timeframe.name}")
    if not start_s <= position <= end_s:
        raise BadInputError(f"cursor {cursor!r} does not belong to the range [from, to) of this request")
    return position


# -- pages --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TicksPage:
    """Ticks of one page and the cursor of the next (None when the range has no more)."""

    ticks: list[Tick]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class BarsPage:
    """Bars of one page, each with where it came from, and the cursor of the next page."""

    bars: list[tuple[Bar, Literal["stored", "ticks"]]]
    next_cursor: str | None


async def ticks_page(
    store: TickStore, feed: str, symbol: str, from_ms: int, to_ms: int, limit: int, cursor: str | None
) -> TicksPage:
    """Return up to `limit` ticks of `[from_ms, to_ms)` after `cursor`, in store order."""
    _check_range(from_ms, to_ms)
    after = None if cursor is None else decode_tick_cursor(cursor, from_ms, to_ms)
    rows = await store.query_ticks(feed, symbol, from_ms, to_ms, limit + 1, after)
    page = rows[:limit]
    following = next_tick_cursor(page, after) if len(rows) > limit else None
    return TicksPage(page, None if following is None else encode_tick_cursor(following))


async def bars_page(
    store: TickStore,
    feed: str,
    symbol: str,
    timeframe: Timeframe,
    from_ms: int,
    to_ms: int,
    limit: int,
    cursor: str | None,
    *,
    source: BarSource,
    point_raw: int | None,
) -> BarsPage:
    """Return up to `limit` bars opening in `[from_ms, to_ms)` after `cursor` from `source`, by time.

    `point_raw` converts the spread of bars built from ticks to points; it may be None when only stored
    bars are needed, and building bars without it is refused.
    """
    _check_range(from_ms, to_ms)
    start_s, end_s = -(-from_ms // 1000), -(-to_ms // 1000)  # open time t is in range iff t*1000 in range
    if cursor is not None:
        start_s = decode_bar_cursor(cursor, timeframe, start_s, end_s)
    want, tf_s = limit + 1, timeframe.seconds
    merged: list[tuple[Bar, Literal["stored", "ticks"]]] = []
    if source in ("stored", "auto"):
        stored = await store.query_bars(feed, symbol, timeframe, start_s, end_s, want)
        merged = [(bar, "stored") for bar in stored]
    if source in ("ticks", "auto"):
        built_end_s = end_s
        if len(merged) == want:  # the page ends inside the stored bars: build no further than them
            built_end_s = min(end_s, (merged[-1][0].time // tf_s + 1) * tf_s)
        built = await _bars_from_ticks(store, feed, symbol, timeframe, start_s, built_end_s, want, point_raw)
        taken = {bar.time // tf_s for bar, _ in merged}
        merged += [(bar, "ticks") for bar in built if bar.time // tf_s not in taken]
        merged.sort(key=lambda item: (item[0].time // tf_s, item[0].time))
    page = merged[:limit]
    if len(merged) <= limit:
        return BarsPage(page, None)
    last = page[-1][0].time
    position = last + 1 if source == "stored" else (last // tf_s + 1) * tf_s
    return BarsPage(page, encode_bar_cursor(timeframe, position))


async def _bars_from_ticks(
    store: TickStore,
    feed: str,
    symbol: str,
    timeframe: Timeframe,
    start_s: int,
    end_s: int,
    want: int,
    point_raw: int | None,
) -> list[Bar]:
    """Build up to (about) `want` whole bars opening in `[start_s, end_s)` from the stored ticks.

    The store aggregates a whole range at once, so the range is walked in windows: each starts at the
    period of the first tick at or after the position (a one-row indexed query, so gaps such as weekends
    cost nothing) and spans the bars still wanted, doubling up to `_WINDOW_GROWTH_CAP` times that when the
    data is sparse. That bounds both the number of queries and the ticks aggregated beyond the page.
    """
    tf_ms = timeframe.seconds * 1000
    position = -(-start_s * 1000 // tf_ms) * tf_ms  # the first period opening at or after start
    stop = -(-end_s * 1000 // tf_ms) * tf_ms  # the end of the last period opening before end
    bars: list[Bar] = []
    growth = 1
    while len(bars) < want and position < stop:
        first = await store.query_ticks(feed, symbol, position, stop, 1)
        if not first:
            break
        if point_raw is None:
            raise BadInputError(
                f"the digits of {symbol!r} are unknown, so spreads of bars built from ticks cannot be "
                "converted to points; pass digits= (e.g. 5 for EURUSD) or use source=stored"
            )
        window_start = first[0].time_msc // tf_ms * tf_ms
        remaining = want - len(bars)
        window_end = min(stop, window_start + remaining * growth * tf_ms)
        bars += await store.aggregate_bars(feed, symbol, timeframe, window_start, window_end, point_raw)
        position = window_end
        growth = min(growth * 2, _WINDOW_GROWTH_CAP)
    return bars[:want]


def _check_range(from_ms: int, to_ms: int) -> None:
    if from_ms > to_ms:
        raise BadInputError(
            f"from ({iso_ms(from_ms)}) is after to ({iso_ms(to_ms)}); the range is [from, to)"
        )
