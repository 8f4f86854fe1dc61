"""The market-data history API of the database service: `/api/v1/symbols`, `/ticks` and `/bars`.

Authorisation: every route requires a valid bearer token (`principal_dependency`), and any authenticated
principal may read. Market data belongs to a feed (a broker server), not to a tenant: the same EURUSD
ticks of a broker serve every tenant trading there, as the bus subjects `md.tick.<feed>.<symbol>` carry
no tenant either. So there is no tenant filter here; tenant-owned history (orders, deals, audit) gets its
own routes with tenant scoping.

Errors: a wrong request is a 400 (or FastAPI's 422 for a malformed parameter) whose `detail` names the
problem; a tick store that is missing, stopped or failing is a 503 with the reason. Never a 500 for either.

This module does not use `from __future__ import annotations`: the `Annotated` dependency aliases are
built per router (they close over its store and token service), and FastAPI resolves string annotations
in module globals only.
"""

import contextlib
import enum
from collections.abc import Iterator
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aitrading.common.auth import Principal, TokenService, principal_dependency
from aitrading.common.errors import BadInputError, OperationalError, TemporaryError
from aitrading.dbservice import history
from aitrading.dbservice.schemas import (
    BarSourceName,
    BarsPublic,
    ErrorPublic,
    SeriesPublic,
    SymbolsPublic,
    TicksPublic,
    TimeframeName,
)
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks import TickStore

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "NO_STORE_REASON", "history_router"]

_log = structlog.get_logger("dbservice")

DEFAULT_LIMIT = 1000
MAX_LIMIT = 50_000
NO_STORE_REASON = (
    "the embedded tick store (chDB) is owned by the data bridge process in split mode; configure a "
    "ClickHouse server (AITRADING_STORAGE__TICKS=clickhouse) to serve history from the database service"
)

_bearer = HTTPBearer(
    auto_error=False,  # `principal_dependency` answers 401 with the reason; this only documents the scheme
    description="A platform token (JWT): a service token or, through the gateway, a user's access token.",
)


def _error(description: str, example: str) -> dict[str, Any]:
    return {
        "model": ErrorPublic,
        "description": description,
        "content": {"application/json": {"example": {"detail": example}}},
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("A wrong request; `detail` names the problem.", "from (...) is after to (...)"),
    401: _error("No valid bearer token.", "missing bearer token"),
    503: _error("The tick store is not available here or is failing.", NO_STORE_REASON),
}

# -- query parameters shared by the routes --------------------------------------------------------------

_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # any printable text: broker symbols use . # _ - + ! and more
Feed = Annotated[
    str,
    Query(
        min_length=1,
        max_length=128,
        pattern=_NAME_PATTERN,
        description="Feed: the broker server the ticks came from.",
        examples=["MetaQuotes-Demo"],
    ),
]
Symbol = Annotated[
    str,
    Query(
        min_length=1, max_length=64, pattern=_NAME_PATTERN, description="Symbol name.", examples=["EURUSD"]
    ),
]
_TIME_HELP = "ISO-8601 (a time without offset is UTC) or integer UTC epoch milliseconds."
From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=64,
        description=f"Start of the range, inclusive: {_TIME_HELP} Default: the beginning.",
        examples=["2024-01-02T00:00:00Z"],
    ),
]
To = Annotated[
    str | None,
    Query(
        max_length=64,
        description=f"End of the range, exclusive: {_TIME_HELP} Default: no end (9999-12-31T23:59:59.999Z).",
        examples=["1704240000000"],
    ),
]
Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, 1..{MAX_LIMIT}.", examples=[DEFAULT_LIMIT])
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page, unchanged, with the same other parameters.",
    ),
]


def _caller_dependency(tokens: TokenService) -> Any:
    authenticate = principal_dependency(tokens)

    async def caller(
        request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        return await authenticate(request)

    return caller


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Answer a wrong request with 400 and a failing store with 503, each with the reason."""
    try:
        yield
    except BadInputError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except TemporaryError as exc:
        _log.warning("tick_store_failed", error=str(exc))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the tick store failed temporarily; retry with backoff",
            headers={"Retry-After": "1"},
        ) from None
    except OperationalError as exc:
        _log.error("tick_store_unavailable", error=str(exc))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the tick store is not running in this service"
        ) from None


_SOURCES: dict[BarSourceName, history.BarSource] = {
    BarSourceName.AUTO: "auto",
    BarSourceName.STORED: "stored",
    BarSourceName.TICKS: "ticks",
}


def _range(from_: str | None, to: str | None) -> tuple[int, int]:
    from_ms = 0 if from_ is None else history.parse_time(from_, "from")
    to_ms = history.MAX_MS if to is None else history.parse_time(to, "to")
    return from_ms, to_ms


def _tick_row(tick: Tick, places: int) -> dict[str, Any]:
    price = history.decimal_string
    return {
        "time": history.iso_ms(tick.time_msc),
        "time_msc": tick.time_msc,
        "bid": price(tick.bid, min_places=places),
        "ask": price(tick.ask, min_places=places),
        "last": price(tick.last, min_places=places),
        "volume": history.volume_string(tick.volume),
        "flags": tick.flags,
    }


def _bar_row(bar: Bar, origin: str, places: int) -> dict[str, Any]:
    price = history.decimal_string
    return {
        "time": history.iso_s(bar.time),
        "time_s": bar.time,
        **{k: price(getattr(bar, k), min_places=places) for k in ("open", "high", "low", "close")},
        "tick_volume": bar.tick_volume,
        "spread": bar.spread,
        "real_volume": history.volume_string(bar.real_volume),
        "source": origin,
    }


def history_router(store: TickStore | None, tokens: TokenService) -> APIRouter:
    """Return the `/api/v1` market-data routes over `store` (None: every route answers 503, saying why)."""
    caller = _caller_dependency(tokens)

    async def tick_store() -> TickStore:
        if store is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_STORE_REASON)
        return store

    CallerDep = Annotated[Principal, Depends(caller)]
    StoreDep = Annotated[TickStore, Depends(tick_store)]

    tags: list[str | enum.Enum] = ["market data"]
    router = APIRouter(prefix="/api/v1", tags=tags, responses=_ERRORS)

    @router.get(
        "/symbols",
        summary="Stored tick series",
        description="List every feed/symbol with stored ticks and its tick count, sorted.",
    )
    async def list_symbols(_caller: CallerDep, ticks: StoreDep) -> SymbolsPublic:
        with _store_errors():
            series = await ticks.symbols()
        return SymbolsPublic(
            series=[
                SeriesPublic(feed=feed, symbol=symbol, ticks=count, digits=history.symbol_digits(symbol))
                for feed, symbol, count in series
            ]
        )

    @router.get(
        "/ticks",
        summary="Ticks of a symbol in a time range",
        description=(
            "Return the ticks of `feed`/`symbol` in `[from, to)` in store order (by time, ties in arrival "
            "order), a page at a time. Prices and volumes are exact decimal strings. Keep passing "
            "`next_cursor` as `cursor` (with the same other parameters) until it is null: every tick of "
            "the range comes exactly once, in order, even when many share a millisecond."
        ),
    )
    async def get_ticks(
        _caller: CallerDep,
        ticks: StoreDep,
        feed: Feed,
        symbol: Symbol,
        from_: From = None,
        to: To = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> TicksPublic:
        with _store_errors():
            from_ms, to_ms = _range(from_, to)
            page = await history.ticks_page(ticks, feed, symbol, from_ms, to_ms, limit, cursor)
        places = history.symbol_digits(symbol) or 0
        rows = [_tick_row(t, places) for t in page.ticks]
        # One validation of the whole page from plain dicts runs in pydantic-core: 50k ticks in a
        # fraction of the time of 50k model constructors.
        return TicksPublic.model_validate(
            {"feed": feed, "symbol": symbol, "ticks": rows, "next_cursor": page.next_cursor}
        )

    @router.get(
        "/bars",
        summary="OHLC bars of a symbol for any range and timeframe",
        description=(
            "Return the bars of `feed`/`symbol` whose open time is in `[from, to)`, by time, a page at a "
            "time (follow `next_cursor` as for ticks). `source=stored` reads stored bars; `source=ticks` "
            "builds whole bars from the stored ticks like MT5 (bid OHLC, tick count, smallest spread in "
            "points); `source=auto` (default) takes the stored bar of each period where there is one and "
            "builds the others from ticks. Building needs the symbol's digits: from the default symbol "
            "specifications or the `digits` parameter. Built bars are aligned to UTC (D1 opens at 00:00 UTC, "
            "not at the broker's midnight). Prices are exact decimal strings."
        ),
    )
    async def get_bars(
        _caller: CallerDep,
        ticks: StoreDep,
        feed: Feed,
        symbol: Symbol,
        timeframe: Annotated[TimeframeName, Query(description="Bar timeframe.")],
        from_: From = None,
        to: To = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        source: Annotated[BarSourceName, Query(description="Where bars come from.")] = BarSourceName.AUTO,
        digits: Annotated[
            int | None,
            Query(
                ge=0, le=9, description="Price digits of the symbol (overrides the default specification)."
            ),
        ] = None,
    ) -> BarsPublic:
        tf = Timeframe[timeframe.value]
        places = history.symbol_digits(symbol, digits)
        with _store_errors():
            from_ms, to_ms = _range(from_, to)
            page = await history.bars_page(
                ticks,
                feed,
                symbol,
                tf,
                from_ms,
                to_ms,
                limit,
                cursor,
                source=_SOURCES[source],
                point_raw=history.point_raw_of(places),
            )
        bars = [_bar_row(b, origin, places or 0) for b, origin in page.bars]
        return BarsPublic.model_validate(
            {"feed": feed, "symbol": symbol, "timeframe": timeframe, "digits": places, "bars": bars}
            | {"next_cursor": page.next_cursor}
        )

    return router
