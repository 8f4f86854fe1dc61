"""Stored bars for the warm-up of the feature engines: the tick store in process, or the database service.

The features service replays stored bars into a series' `FeatureEngine` before its first live bar (see
`aitrading.features.service`). Where the bars come from depends on what the process has:

- **All-in-one** (the data bridge in the same process): `StoreBarHistory` reads the tick store the bridge
  writes its closed bars to (`TickStore.query_bars`), with no HTTP in between.
- **Split**: `HttpBarHistory` asks the database service (port 8008) for `GET /api/v1/bars?source=stored`
  with a short-lived service token, over the platform's TLS settings. With the embedded chDB store the
  database service has no store in split mode and answers 503 with the reason; the warm-up then degrades
  to warming from live bars and says so.

Only *stored* bars are replayed, never bars built from ticks for the answer: they are the bars the bridge
published on `md.bar.*`, so the engine ends in the state an uninterrupted service would have. A source
that cannot answer raises `TemporaryError` (an outage: ask again later) or `OperationalError` (history is
not available in this configuration); a refusal of the request raises `BadInputError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx

from aitrading.common.auth import TokenService
from aitrading.common.config import PlatformConfig
from aitrading.common.errors import BadInputError, OperationalError, TemporaryError
from aitrading.common.tls import httpx_verify, service_url
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import price_raw, volume_raw
from aitrading.storage.ticks import TickStore

__all__ = ["BarHistory", "HttpBarHistory", "StoreBarHistory", "recent_bars"]

_WINDOWS = 5
"""`recent_bars` looks back over 2, 4, 8, 16 and 32 times the span of the bars it wants (62x in all)."""


class BarHistory(Protocol):
    """Where stored bars come from; `name` says which in logs and the status."""

    name: str

    async def series(self) -> list[tuple[str, str]]:
        """Return the stored `(feed, symbol)` series."""
        ...

    async def bars(self, feed: str, symbol: str, timeframe: Timeframe, from_s: int, to_s: int) -> list[Bar]:
        """Return every stored bar of the series opening in `[from_s, to_s)`, by time."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def recent_bars(
    history: BarHistory, feed: str, symbol: str, timeframe: Timeframe, until_s: int, count: int
) -> list[Bar]:
    """Return the last `count` stored bars opening before `until_s` (fewer if the store has fewer).

    The history API reads forwards in time, so this reads windows backwards from `until_s`, each twice as
    long as the one before, until it has `count` bars: the first spans twice the bars' own span (room for
    weekends and quiet hours), five windows span 62 times it. A series with no bars costs five queries.
    """
    if count <= 0:
        return []
    span = count * timeframe.seconds * 2
    end = until_s
    got: list[Bar] = []
    for _ in range(_WINDOWS):
        start = max(0, end - span)
        got = await history.bars(feed, symbol, timeframe, start, end) + got
        if len(got) >= count or start == 0:
            break
        end, span = start, span * 2
    return got[-count:]


class StoreBarHistory:
    """Stored bars from a `TickStore` in this process (all-in-one)."""

    name = "tick store"

    def __init__(self, store: TickStore, *, page: int = 10_000) -> None:
        self._store = store
        self._page = page

    async def series(self) -> list[tuple[str, str]]:
        """Return the `(feed, symbol)` series that have stored ticks."""
        return [(feed, symbol) for feed, symbol, _ in await self._store.symbols()]

    async def bars(self, feed: str, symbol: str, timeframe: Timeframe, from_s: int, to_s: int) -> list[Bar]:
        """Return the stored bars opening in `[from_s, to_s)`, a page of the store at a time."""
        out: list[Bar] = []
        after: int | None = None
        while True:
            page = await self._store.query_bars(feed, symbol, timeframe, from_s, to_s, self._page, after)
            out += page
            if len(page) < self._page:
                return out
            after = page[-1].time

    async def close(self) -> None:
        """Nothing to release: the kernel owns the store."""


class HttpBarHistory:
    """Stored bars from the database service's history API (split mode)."""

    name = "database service"

    def __init__(self, http: httpx.AsyncClient, token: Callable[[], str], *, page: int = 50_000) -> None:
        self._http = http
        self._token = token
        self._page = page

    @classmethod
    def for_platform(
        cls, config: PlatformConfig, tokens: TokenService, *, identity: str = "features"
    ) -> HttpBarHistory:
        """Build a client of the platform's database service (TLS per config), acting as `identity`."""
        http = httpx.AsyncClient(
            base_url=service_url(config, "dbservice"),
            verify=httpx_verify(config, identity),
            timeout=httpx.Timeout(10.0, connect=3.0),
        )
        return cls(http, lambda: tokens.issue(f"svc:{identity}", ttl_s=60))

    async def series(self) -> list[tuple[str, str]]:
        """Return the `(feed, symbol)` series that have stored ticks."""
        body = await self._get("/api/v1/symbols", {})
        return [(str(s["feed"]), str(s["symbol"])) for s in body["series"]]

    async def bars(self, feed: str, symbol: str, timeframe: Timeframe, from_s: int, to_s: int) -> list[Bar]:
        """Return the stored bars opening in `[from_s, to_s)`, following the API's cursor."""
        params: dict[str, Any] = {
            "feed": feed,
            "symbol": symbol,
            "timeframe": timeframe.name,
            "from": str(from_s * 1000),
            "to": str(to_s * 1000),
            "limit": self._page,
            "source": "stored",
        }
        out: list[Bar] = []
        while True:
            body = await self._get("/api/v1/bars", params)
            try:
                out += [_bar(feed, symbol, timeframe, row) for row in body["bars"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise TemporaryError(f"database service sent a malformed bar: {exc!r}") from None
            cursor = body.get("next_cursor")
            if not cursor:
                return out
            params["cursor"] = cursor

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token()}"}
        try:
            resp = await self._http.get(path, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"database service unreachable: {exc!r}") from exc
        if resp.status_code == 200:
            try:
                body: dict[str, Any] = resp.json()
            except ValueError:
                raise TemporaryError("database service answered 200 without JSON") from None
            return body
        detail = _detail(resp)
        if resp.status_code == 503 and "retry-after" not in resp.headers:
            raise OperationalError(f"database service has no history: {detail}")
        if resp.status_code >= 500:
            raise TemporaryError(f"database service answered {resp.status_code}: {detail}")
        raise BadInputError(f"database service refused ({resp.status_code}): {detail}")


def _bar(feed: str, symbol: str, timeframe: Timeframe, row: dict[str, Any]) -> Bar:
    return Bar(
        feed=feed,
        symbol=symbol,
        timeframe=int(timeframe),
        time=int(row["time_s"]),
        open=price_raw(row["open"]),
        high=price_raw(row["high"]),
        low=price_raw(row["low"]),
        close=price_raw(row["close"]),
        tick_volume=int(row["tick_volume"]),
        spread=int(row["spread"]),
        real_volume=volume_raw(row["real_volume"]),
    )


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:300]
    except ValueError:
        return resp.text[:300]
