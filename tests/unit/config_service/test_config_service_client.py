"""ConfigClient: cached effective config over HTTP, invalidated by the bus announcements, bounded by a TTL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from aitrading.common.auth import TokenService
from aitrading.common.bus import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.common.config import load_config
from aitrading.common.errors import PermissionDeniedError, TemporaryError
from aitrading.config_service.client import ConfigClient, service_token_provider
from aitrading.config_service.messages import ConfigChanged
from aitrading.config_service.namespaces import NAMESPACES, TradingConfig
from aitrading.config_service.service import ConfigService
from aitrading.config_service.store import Owner

Tenants = tuple[uuid.UUID, uuid.UUID]
TRADING, UI = NAMESPACES["trading"], NAMESPACES["ui"]


class CountingTransport(httpx.AsyncBaseTransport):
    """The service's ASGI app, counting the requests that reach it."""

    def __init__(self, app: object) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture
def transport(service: ConfigService) -> CountingTransport:
    return CountingTransport(service.app)


@pytest.fixture
async def config_client(
    transport: CountingTransport, tokens: TokenService, clock: TestClock, bus: MemoryBus
) -> AsyncIterator[ConfigClient]:
    http = httpx.AsyncClient(transport=transport, base_url="http://config")
    client = ConfigClient(http, service_token_provider(tokens, "svc:engine"), clock, bus=bus, ttl_s=30)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def test_the_effective_config_is_fetched_once_and_then_served_from_the_cache(
    config_client: ConfigClient, transport: CountingTransport, service: ConfigService, tenants: Tenants
) -> None:
    a = str(tenants[0])
    await service.store.put(
        Owner("tenant", tenants[0]), TRADING, {"default_deviation_points": 7}, expected=0, actor="admin"
    )
    first = await config_client.namespace(a, "trading")
    assert isinstance(first, TradingConfig)
    assert first.default_deviation_points == 7
    for _ in range(5):
        assert (await config_client.namespace(a, "trading")) == first
    assert transport.requests == 1
    assert (config_client.hits, config_client.misses) == (5, 1)


async def test_a_tenant_announcement_invalidates_that_tenant_only(
    config_client: ConfigClient, transport: CountingTransport, service: ConfigService, tenants: Tenants
) -> None:
    a, b = (str(t) for t in tenants)
    await config_client.effective(a)
    await config_client.effective(b)
    await service.store.put(
        Owner("tenant", tenants[0]), TRADING, {"default_filling": "IOC"}, expected=0, actor="admin"
    )
    assert (await config_client.effective(a)).values("trading")["default_filling"] == "IOC"
    await config_client.effective(b)
    assert transport.requests == 3  # a again, b still cached


async def test_a_user_change_reaches_the_users_cached_config(
    config_client: ConfigClient, service: ConfigService, tenants: Tenants
) -> None:
    a = str(tenants[0])
    assert (await config_client.effective(a, "u1")).values("ui")["theme"] == "system"
    await service.store.put(Owner("user", tenants[0], "u1"), UI, {"theme": "dark"}, expected=0, actor="u1")
    eff = await config_client.effective(a, "u1")
    assert eff.values("ui")["theme"] == "dark"
    assert eff.sources("ui")["theme"] == "user"
    assert (await config_client.effective(a)).values("ui")["theme"] == "system"


async def test_a_global_announcement_invalidates_every_tenant(
    config_client: ConfigClient, transport: CountingTransport, service: ConfigService, tenants: Tenants
) -> None:
    for t in tenants:
        await config_client.effective(str(t))
    await service.store.put(Owner("global"), UI, {"language": "de"}, expected=0, actor="root")
    for t in tenants:
        assert (await config_client.effective(str(t))).values("ui")["language"] == "de"
    assert transport.requests == 4


async def test_entries_expire_after_the_ttl_even_without_announcements(
    config_client: ConfigClient, transport: CountingTransport, clock: TestClock, tenants: Tenants
) -> None:
    a = str(tenants[0])
    await config_client.effective(a)
    clock.advance(29)
    await config_client.effective(a)
    assert transport.requests == 1
    clock.advance(2)
    await config_client.effective(a)
    assert transport.requests == 2


async def test_a_value_fetched_while_an_announcement_arrives_is_not_cached(
    service: ConfigService, tokens: TokenService, clock: TestClock, bus: MemoryBus, tenants: Tenants
) -> None:
    a = str(tenants[0])
    gate = asyncio.Event()

    class Slow(CountingTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            resp = await super().handle_async_request(request)
            await gate.wait()  # the answer is in hand, but not yet back at the client
            return resp

    transport = Slow(service.app)
    client = ConfigClient(
        httpx.AsyncClient(transport=transport, base_url="http://config"),
        service_token_provider(tokens, "svc:engine"),
        clock,
        bus=bus,
    )
    await client.start()
    try:
        pending = asyncio.create_task(client.effective(a))
        await asyncio.sleep(0.05)
        await bus.publish(
            f"cfg.changed.{a}", ConfigChanged(scope="tenant", namespace="ui", version=1, tenant=a)
        )
        gate.set()
        await pending
        await client.effective(a)
        assert transport.requests == 2  # the racing answer was not kept
    finally:
        await client.stop()


async def test_without_a_bus_the_cache_still_expires(
    service: ConfigService, tokens: TokenService, clock: TestClock, tenants: Tenants
) -> None:
    transport = CountingTransport(service.app)
    client = ConfigClient(
        httpx.AsyncClient(transport=transport, base_url="http://config"),
        service_token_provider(tokens, "svc:x"),
        clock,
        ttl_s=5,
    )
    await client.start()
    await client.effective(str(tenants[0]))
    clock.advance(6)
    await client.effective(str(tenants[0]))
    assert transport.requests == 2
    await client.stop()


async def test_failures_are_typed_errors(service: ConfigService, clock: TestClock, tenants: Tenants) -> None:
    wrong = TokenService("another-secret-of-enough-length-here!!", clock=clock)
    client = ConfigClient(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://c"),
        service_token_provider(wrong, "svc:x"),
        clock,
    )
    with pytest.raises(PermissionDeniedError, match="invalid token"):
        await client.effective(str(tenants[0]))
    await client.stop()
    down = ConfigClient(httpx.AsyncClient(base_url="http://127.0.0.1:9"), lambda _t: "t", clock)
    with pytest.raises(TemporaryError, match="unreachable"):
        await down.effective(None)
    await down.stop()


async def test_the_platform_client_points_at_the_config_service_with_tls_per_config(
    tokens: TokenService,
) -> None:
    client = ConfigClient.for_platform(load_config(), tokens, None, TestClock(), identity="engine")
    assert str(client._http.base_url) == "http://127.0.0.1:8012"
    await client.stop()
