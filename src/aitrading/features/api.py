"""The features API (port 8011): the latest feature vector of a feed/symbol/timeframe.

`GET /api/v1/{feed}/{symbol}/{timeframe}` here, `/api/v1/features/{feed}/{symbol}/{timeframe}` through the
gateway (every service's routes sit under `/api/v1/`, and the gateway adds the service's name).

Authorisation: a valid bearer token (`principal_dependency`). Feature vectors are derived from market data,
which belongs to a feed (a broker server), not to a tenant (see `aitrading.dbservice.api`): every
authenticated principal may read them, and nothing tenant-owned is ever stored under these keys, so no
tenant can see another's data through this route. Unknown series: 404; a bad timeframe: 400; the cache
failing: 503. `GET /api/v1/status` says how the series were warmed up (see
`aitrading.features.service`): counts and the last failure, no tenant data either.

This module does not use `from __future__ import annotations`: FastAPI resolves the closures' annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel

from aitrading.common.auth import Principal
from aitrading.common.bus.codec import decode
from aitrading.features.messages import TICK_TIMEFRAME, FeatureVector, feature_cache_key
from aitrading.model.market import Timeframe
from aitrading.storage.cache import Cache

__all__ = ["FeatureVectorPublic", "features_router"]


class FeatureVectorPublic(BaseModel):
    """The latest feature vector of one series."""

    feed: str
    symbol: str
    timeframe: str
    time: int
    ts_ms: int
    feature_set: str
    values: dict[str, float]


_NAME = r"^[^\x00-\x1f\x7f/]+$"


def features_router(
    cache: Cache | None,
    authenticate: Callable[[Request], Awaitable[Principal]],
    status_of: Callable[[], dict[str, Any]] | None = None,
) -> APIRouter:
    """Return the router of `GET /api/v1/{feed}/{symbol}/{timeframe}` (and `/status`)."""
    router = APIRouter(prefix="/api/v1", tags=["features"])
    CurrentPrincipal = Annotated[Principal, Depends(authenticate)]

    if status_of is not None:
        report = status_of

        @router.get("/status", summary="Warm-up of the series: from stored bars or live, failures")
        async def warmup_status(principal: CurrentPrincipal) -> dict[str, Any]:
            return report()

    @router.get("/{feed}/{symbol}/{timeframe}", summary="The latest feature vector of a series")
    async def latest(
        principal: CurrentPrincipal,
        feed: Annotated[str, Path(min_length=1, max_length=128, pattern=_NAME)],
        symbol: Annotated[str, Path(min_length=1, max_length=64, pattern=_NAME)],
        timeframe: Annotated[str, Path(min_length=1, max_length=8)],
    ) -> FeatureVectorPublic:
        tf = timeframe.strip().upper()
        if tf != TICK_TIMEFRAME:
            try:
                tf = Timeframe.parse(tf).name
            except ValueError as exc:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{exc} or {TICK_TIMEFRAME}") from None
        if cache is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no cache configured for features")
        try:
            raw = await cache.get(feature_cache_key(feed, symbol, tf))
        except Exception as exc:  # an outage of the cache is a 503 with the reason, never a 500
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"feature cache failing: {exc}"
            ) from None
        if raw is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"no feature vector yet for {feed}/{symbol}/{tf} (warming up or unknown)",
            )
        vector = decode(raw)
        if not isinstance(vector, FeatureVector):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "feature cache holds a foreign value")
        return FeatureVectorPublic(
            feed=vector.feed,
            symbol=vector.symbol,
            timeframe=vector.timeframe,
            time=vector.time,
            ts_ms=vector.ts_ms,
            feature_set=vector.feature_set,
            values=vector.values,
        )

    return router
