"""The history API over HTTP: authentication, symbols, ticks, pagination, bad input and unavailability."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx
import pytest
from dbservice_helpers import FEED, T0_MS, auth

from aitrading.common.auth import TokenService
from aitrading.common.clock import TestClock
from aitrading.common.errors import TemporaryError
from aitrading.dbservice.api import NO_STORE_REASON
from aitrading.dbservice.history import encode_bar_cursor, encode_tick_cursor
from aitrading.dbservice.service import DatabaseService
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks import ChDBTickStore, TickCursor, TickStore

ROUTES = [
    "/api/v1/symbols",
    f"/api/v1/ticks?feed={FEED}&symbol=EURUSD",
    f"/api/v1/bars?feed={FEED}&symbol=EURUSD&timeframe=M1",
]


# -- authentication ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ROUTES)
async def test_every_route_without_a_token_is_401_with_the_reason(
    client: httpx.AsyncClient, url: str
) -> None:
    resp = await client.get(url)
    assert resp.status_code == 401
    assert resp.json()["detail"] == "missing bearer token"
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("url", ROUTES)
async def test_every_route_with_a_forged_or_expired_token_is_401(client: httpx.AsyncClient, url: str) -> None:
    clock = TestClock()
    forged = TokenService("another-secret-entirely-of-32-bytes+", clock=clock).issue("svc")
    expired = TokenService("a-test-secret-of-enough-length-for-dbservice", clock=clock).issue("svc", ttl_s=1)
    for bad in (forged, expired, "not-a-jwt"):
        resp = await client.get(url, headers=auth(bad))
        assert resp.status_code == 401, bad
        assert resp.json()["detail"].startswith("invalid token:")


async def test_any_authenticated_principal_reads_market_data(
    client: httpx.AsyncClient, tokens: TokenService
) -> None:
    for token in (tokens.issue("user", tenant="t1", roles=["analyst"]), tokens.issue("svc:features")):
        resp = await client.get("/api/v1/symbols", headers=auth(token))
        assert resp.status_code == 200


async def test_openapi_documents_bearer_auth_models_and_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in ("/api/v1/symbols", "/api/v1/ticks", "/api/v1/bars"):
        op = spec["paths"][path]["get"]
        assert op["summary"]
        assert op["description"]
        assert op["security"] == [{"HTTPBearer": []}]
        assert {"200", "400", "401", "503"} <= set(op["responses"])
        assert "$ref" in op["responses"]["200"]["content"]["application/json"]["schema"]
    assert spec["components"]["schemas"]["TicksPublic"]["examples"]


# -- symbols and ticks ------------------------------------------------------------------------------------


async def test_symbols_lists_every_series_with_tick_counts_and_known_digits(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick]
) -> None:
    resp = await client.get("/api/v1/symbols", headers=auth(token))
    assert resp.status_code == 200
    assert resp.json()["series"] == [
        {"feed": FEED, "symbol": "CUSTOM", "ticks": 1, "digits": None},
        {"feed": FEED, "symbol": "EURUSD", "ticks": len(eurusd), "digits": 5},
        {"feed": FEED, "symbol": "USDJPY", "ticks": 1, "digits": 3},
        {"feed": FEED, "symbol": "XAUUSD", "ticks": 1, "digits": 2},
        {"feed": "other-feed", "symbol": "EURUSD", "ticks": 1, "digits": 5},
    ]


async def _ticks(client: httpx.AsyncClient, token: str, symbol: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(
        "/api/v1/ticks", params={"feed": FEED, "symbol": symbol, **params}, headers=auth(token)
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_tick_prices_and_volumes_are_exact_decimal_strings(
    client: httpx.AsyncClient, token: str
) -> None:
    (custom,) = (await _ticks(client, token, "CUSTOM"))["ticks"]
    assert custom == {
        "time": "2024-01-02T00:00:00.030Z",
        "time_msc": T0_MS + 30,
        "bid": "9007199.254740993",
        "ask": "9007199.254740995",
        "last": "0.3",
        "volume": "0.10000001",
        "flags": 0,
    }
    (yen,) = (await _ticks(client, token, "USDJPY"))["ticks"]
    assert (yen["bid"], yen["ask"], yen["last"], yen["volume"]) == ("150.123", "150.135", "0.000", "0")
    (gold,) = (await _ticks(client, token, "XAUUSD"))["ticks"]
    assert (gold["bid"], gold["ask"]) == ("2350.10", "2350.35")


async def test_ticks_come_exactly_as_stored_with_symbol_digits(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick]
) -> None:
    body = await _ticks(client, token, "EURUSD", limit=50_000)
    assert body["next_cursor"] is None
    got = body["ticks"]
    assert [(t["time_msc"], Decimal(t["bid"]), Decimal(t["ask"]), Decimal(t["volume"])) for t in got] == [
        (t.time_msc, Decimal(t.bid).scaleb(-9), Decimal(t.ask).scaleb(-9), Decimal(t.volume).scaleb(-8))
        for t in eurusd
    ]
    assert all(len(t["bid"].split(".")[1]) >= 5 for t in got)  # padded to EURUSD's 5 digits
    assert any(len(t["bid"].split(".")[1]) == 6 for t in got)  # a sixth decimal is kept, not rounded


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100, 1000])
async def test_tick_pages_walk_every_tick_exactly_once_in_order(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick], limit: int
) -> None:
    if limit < 10:  # small pages over the first 30 minutes (five same-millisecond bursts) say enough
        eurusd = [t for t in eurusd if t.time_msc < T0_MS + 1_800_000]
    to = eurusd[-1].time_msc + 1
    seen: list[tuple[int, str, str, str]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"from": str(T0_MS), "to": str(to), "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        body = await _ticks(client, token, "EURUSD", **params)
        assert len(body["ticks"]) <= limit
        seen += [(t["time_msc"], t["bid"], t["ask"], t["volume"]) for t in body["ticks"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["ticks"]) == limit
    assert [(s[0], Decimal(s[1]), Decimal(s[2])) for s in seen] == [
        (t.time_msc, Decimal(t.bid).scaleb(-9), Decimal(t.ask).scaleb(-9)) for t in eurusd
    ]
    assert pages == -(-len(eurusd) // limit)  # the last full page knows it is the last


async def test_ticks_range_is_half_open_and_accepts_iso_and_epoch_ms(
    client: httpx.AsyncClient, token: str, eurusd: list[Tick]
) -> None:
    first, second = eurusd[0], next(t for t in eurusd if t.time_msc > eurusd[0].time_msc)
    iso = "2024-01-02T00:00:00.137"  # naive: UTC
    assert first.time_msc == T0_MS + 137
    by_iso = await _ticks(client, token, "EURUSD", **{"from": iso, "to": str(second.time_msc)})
    by_offset = await _ticks(
        client, token, "EURUSD", **{"from": "2024-01-02T01:00:00.137+01:00", "to": str(second.time_msc)}
    )
    expected = [t.time_msc for t in eurusd if t.time_msc == first.time_msc]
    assert [t["time_msc"] for t in by_iso["ticks"]] == expected
    assert by_offset == by_iso
    assert by_iso["ticks"][0]["time"] == "2024-01-02T00:00:00.137Z"
    empty = await _ticks(client, token, "EURUSD", **{"from": iso, "to": iso})
    assert empty == {"feed": FEED, "symbol": "EURUSD", "ticks": [], "next_cursor": None}


async def test_unknown_series_is_an_empty_page_not_an_error(client: httpx.AsyncClient, token: str) -> None:
    body = await _ticks(client, token, "NOPE")
    assert body["ticks"] == []
    assert body["next_cursor"] is None


# -- bad input ----------------------------------------------------------------------------------------------

_T = f"/api/v1/ticks?feed={FEED}&symbol=EURUSD"
_B = f"/api/v1/bars?feed={FEED}&symbol=EURUSD&timeframe=M1"
BAD_REQUESTS = [
    (_T + "&from=2024-01-03&to=2024-01-02", 400, "is after to"),
    (_T + "&from=yesterday", 400, "neither ISO-8601"),
    (_T + "&to=2024-02-30T00:00:00", 400, "neither ISO-8601"),
    (_T + "&from=-5", 400, "neither ISO-8601"),
    (_T + "&to=99999999999999999", 400, "outside 1970-01-01"),
    (_T + "&from=1969-12-31T23:59:59Z", 400, "outside 1970-01-01"),
    (_T + "&limit=0", 422, "greater than or equal to 1"),
    (_T + "&limit=50001", 422, "less than or equal to 50000"),
    (_T + "&limit=ten", 422, "valid integer"),
    (_T + "&cursor=!!!", 422, "should match pattern"),
    (_T + "&cursor=Zm9v", 400, "not a t cursor"),  # "foo"
    (_T + "&cursor=" + encode_bar_cursor(Timeframe.M1, T0_MS // 1000), 400, "not a t cursor"),
    (_T + "&cursor=dDox", 400, "not a t cursor"),  # "t:1": a part is missing
    (_T + "&from=2024-01-03&cursor=" + encode_tick_cursor(TickCursor(T0_MS, 0)), 400, "does not belong"),
    (f"/api/v1/ticks?feed={FEED}", 422, "Field required"),
    ("/api/v1/ticks?feed=&symbol=EURUSD", 422, "at least 1 character"),
    ("/api/v1/ticks?feed=a%00b&symbol=EURUSD", 422, "should match pattern"),
    (f"/api/v1/bars?feed={FEED}&symbol=EURUSD&timeframe=M2", 422, "'M1', 'M5'"),
    (f"/api/v1/bars?feed={FEED}&symbol=EURUSD", 422, "Field required"),
    (_B + "&source=cache", 422, "'auto', 'stored' or 'ticks'"),
    (_B + "&digits=10", 422, "less than or equal to 9"),
    (_B + "&from=2024-01-03&to=2024-01-02", 400, "is after to"),
    (_B + "&cursor=" + encode_bar_cursor(Timeframe.H1, T0_MS // 1000), 400, "another timeframe"),
    (_B + "&cursor=" + encode_tick_cursor(TickCursor(T0_MS, 0)), 400, "not a b cursor"),
    (_B + "&to=2023-01-01&cursor=" + encode_bar_cursor(Timeframe.M1, T0_MS // 1000), 400, "does not belong"),
    (f"/api/v1/bars?feed={FEED}&symbol=CUSTOM&timeframe=M1&source=ticks", 400, "pass digits="),
]


@pytest.mark.parametrize(("url", "code", "reason"), BAD_REQUESTS)
async def test_bad_input_is_a_4xx_with_the_reason(
    client: httpx.AsyncClient, token: str, url: str, code: int, reason: str
) -> None:
    resp = await client.get(url, headers=auth(token))
    assert resp.status_code == code, resp.text
    assert reason in str(resp.json()["detail"]), resp.text


# -- unavailability -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ROUTES)
async def test_without_a_store_every_route_is_503_saying_why(
    storeless_client: httpx.AsyncClient, token: str, url: str
) -> None:
    resp = await storeless_client.get(url, headers=auth(token))
    assert resp.status_code == 503
    assert resp.json() == {"detail": NO_STORE_REASON}
    assert "AITRADING_STORAGE__TICKS=clickhouse" in NO_STORE_REASON


async def test_without_a_store_readiness_stays_green_and_anonymous_calls_stay_401(
    storeless_client: httpx.AsyncClient,
) -> None:
    ready = await storeless_client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert (await storeless_client.get(ROUTES[0])).status_code == 401


async def test_a_stopped_store_is_503_not_500(tmp_path: Any, tokens: TokenService, token: str) -> None:
    service = DatabaseService({}, store=ChDBTickStore(tmp_path / "never-started"), tokens=tokens)
    await service.start()
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dbservice") as client:
        for url in ROUTES:
            resp = await client.get(url, headers=auth(token))
            assert resp.status_code == 503, url
            assert resp.json()["detail"] == "the tick store is not running in this service"
    await service.stop()


class FailingStore(TickStore):
    """A store whose database fails every call (a network error, a restarting server)."""

    async def _on_start(self) -> None:
        pass

    async def _on_stop(self) -> None:
        pass

    def _fail(self) -> TemporaryError:
        return TemporaryError("clickhouse: connection refused at 10.0.0.7:8123")

    async def write_ticks(self, ticks: Sequence[Tick], marks: Any = None) -> int:
        raise self._fail()

    async def durable_marks(self) -> dict[str, int]:
        raise self._fail()

    async def query_ticks(self, *args: Any, **kwargs: Any) -> list[Tick]:
        raise self._fail()

    async def write_bars(self, bars: Sequence[Bar]) -> int:
        raise self._fail()

    async def query_bars(self, *args: Any, **kwargs: Any) -> list[Bar]:
        raise self._fail()

    async def aggregate_bars(self, *args: Any, **kwargs: Any) -> list[Bar]:
        raise self._fail()

    async def symbols(self) -> list[tuple[str, str, int]]:
        raise self._fail()

    async def count_ticks(self, feed: str | None = None, symbol: str | None = None) -> int:
        raise self._fail()

    async def ping(self) -> bool:
        return False


@pytest.mark.parametrize("url", [*ROUTES, ROUTES[2] + "&source=stored", ROUTES[2] + "&source=ticks"])
async def test_a_failing_store_is_503_retry_later_without_leaking_its_address(
    tokens: TokenService, token: str, url: str
) -> None:
    service = DatabaseService({}, store=FailingStore(), tokens=tokens)
    await service.start()
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dbservice") as client:
        resp = await client.get(url, headers=auth(token))
    await service.stop()
    assert resp.status_code == 503
    assert resp.json()["detail"] == "the tick store failed temporarily; retry with backoff"
    assert resp.headers["retry-after"] == "1"
