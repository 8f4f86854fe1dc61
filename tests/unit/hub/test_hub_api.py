"""The hub service over the bus and HTTP: registry, health, graph, ErrorDNA, and who may see what."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog

from aitrading.common.auth import TokenService
from aitrading.common.bus import MemoryBus, Message
from aitrading.common.clock import TestClock
from aitrading.common.config import SERVICE_NAMES, load_config
from aitrading.common.errors import TemporaryError
from aitrading.common.logging import ERROR_REPORTER, ERROR_SUBJECT, configure_logging
from aitrading.common.service import HEARTBEAT_SUBJECT, Service
from aitrading.hub.graph import dependency_graph, find_cycle
from aitrading.hub.service import HubService
from aitrading.launcher import split_start_order
from aitrading.topology import SERVICE_DEPENDENCIES, start_order

SECRET = "a-test-secret-of-enough-length-for-the-hub"


class Engine(Service):
    name = "engine"


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def tokens(clock: TestClock) -> TokenService:
    return TokenService(SECRET, clock=clock)


def auth(tokens: TokenService, *roles: str, tenant: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue('user:1', tenant=tenant, roles=roles)}"}


@pytest.fixture
async def hub(clock: TestClock, tokens: TokenService) -> AsyncIterator[tuple[HubService, MemoryBus]]:
    configure_logging("INFO")
    ERROR_REPORTER._pending.clear()
    bus = MemoryBus()
    await bus.connect()
    svc = HubService(bus=bus, clock=clock, tokens=tokens, expected=("hub", "engine"))
    svc.report_to_hub(bus, clock, endpoint="http://127.0.0.1:8010", instance="hub:1", interval_s=60)
    await svc.start()
    try:
        yield svc, bus
    finally:
        await svc.stop()
        await bus.close()


@pytest.fixture
async def client(hub: tuple[HubService, MemoryBus]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hub[0].app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        yield c


async def until(predicate: object, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_services_register_by_heartbeat_and_go_stale_after_missed_beats(
    hub: tuple[HubService, MemoryBus], client: httpx.AsyncClient, tokens: TokenService, clock: TestClock
) -> None:
    svc, bus = hub
    engine = Engine()
    engine.report_to_hub(bus, clock, endpoint="http://127.0.0.1:8007", instance="e:1", interval_s=60)
    await engine.start()
    try:
        await until(lambda: len(svc.registry.instances()) == 2)
        body = (await client.get("/api/v1/services", headers=auth(tokens, "platform_admin"))).json()
        by_name = {s["name"]: s for s in body["services"]}
        assert by_name["engine"]["endpoint"] == "http://127.0.0.1:8007"
        assert by_name["engine"]["status"] == "ready"
        assert by_name["hub"]["status"] == "ready"  # the hub registers itself like any service
        assert body["expected"] == ["hub", "engine"]
        health = (await client.get("/api/v1/health", headers=auth(tokens, "analyst", tenant="t"))).json()
        assert health["status"] == "ok"
        clock.advance(3 * 60 + 1)  # three missed beats of a 60 s interval, and one second
        health = (await client.get("/api/v1/health", headers=auth(tokens, "platform_admin"))).json()
        assert health["status"] == "degraded"
        assert health["services"]["engine"]["status"] == "stale"
    finally:
        await engine.stop()
    body = (await client.get("/api/v1/services", headers=auth(tokens, "platform_admin"))).json()
    assert {s["name"]: s["status"] for s in body["services"]}["engine"] == "stopped"


async def test_errors_of_other_services_are_grouped_with_hints_for_platform_admins(
    hub: tuple[HubService, MemoryBus], client: httpx.AsyncClient, tokens: TokenService, clock: TestClock
) -> None:
    _, bus = hub
    engine = Engine()
    engine.report_to_hub(bus, clock, endpoint="http://x", instance="e:1", interval_s=60)
    await engine.start()
    try:
        log = structlog.get_logger("engine")
        for port in (5432, 5432):
            try:
                try:
                    raise ConnectionRefusedError(111, f"Connect call failed ('127.0.0.1', {port})")
                except ConnectionRefusedError as exc:
                    raise TemporaryError("database unavailable") from exc
            except TemporaryError:
                log.exception("db_connect_failed", service="engine")
        await ERROR_REPORTER.flush()
        headers = auth(tokens, "platform_admin")
        await until(lambda: len(hub[0].errors) == 1)
        body = (await client.get("/api/v1/errors", headers=headers)).json()
    finally:
        await engine.stop()
    [group] = body["errors"]
    assert group["count"] == 2
    assert group["exc_type"] == "aitrading.common.errors.TemporaryError"
    assert group["services"] == ["engine"]
    assert group["recovery"] == "retry"
    assert group["severity"] == "medium"
    assert group["hints"][0].startswith("PostgreSQL is down")
    assert group["first_seen"] == "2024-01-01T00:00:00Z"
    filtered = await client.get("/api/v1/errors?severity=critical", headers=headers)
    assert filtered.json()["errors"] == []
    assert (await client.get("/api/v1/errors?service=engine", headers=headers)).json()["total"] == 1
    assert (await client.get("/api/v1/errors?severity=nope", headers=headers)).status_code == 422


@pytest.mark.parametrize("path", ["/api/v1/services", "/api/v1/graph", "/api/v1/errors"])
@pytest.mark.parametrize("roles", [(), ("tenant_admin",), ("analyst",), ("portfolio_manager",)])
async def test_only_platform_admins_see_services_graph_and_errors(
    client: httpx.AsyncClient, tokens: TokenService, path: str, roles: tuple[str, ...]
) -> None:
    resp = await client.get(path, headers=auth(tokens, *roles, tenant="11111111-1111-1111-1111-111111111111"))
    assert resp.status_code == 403
    assert "platform_admin" in resp.json()["detail"]


@pytest.mark.parametrize("path", ["/api/v1/services", "/api/v1/health", "/api/v1/graph", "/api/v1/errors"])
async def test_every_hub_route_needs_a_token(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
    bad = await client.get(path, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401


async def test_graph_is_the_declared_one_with_the_start_order_the_launcher_and_kernel_use(
    client: httpx.AsyncClient, tokens: TokenService
) -> None:
    cfg = load_config()
    body = dependency_graph(SERVICE_NAMES)
    assert body["valid"] is True
    assert body["start_order"] == split_start_order(cfg) == start_order(SERVICE_NAMES)
    order = body["start_order"]
    for node in body["nodes"]:
        assert set(node["depends_on"]) == set(SERVICE_DEPENDENCIES[node["service"]])
        for dep in node["depends_on"]:
            assert order.index(dep) < order.index(node["service"])
    assert order[0] == "hub"
    assert order[-1] == "gateway"
    resp = await client.get("/api/v1/graph", headers=auth(tokens, "platform_admin"))
    assert resp.status_code == 200
    assert resp.json()["start_order"] == start_order(["hub", "engine"])
    assert resp.json()["edges"] == []  # engine needs dbservice and config, which this platform does not run


def test_a_cycle_is_reported_as_an_error_naming_the_cycle() -> None:
    deps = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert find_cycle("abcd", deps) == ["a", "b", "c", "a"]
    body = dependency_graph("abcd", deps, resources={})
    assert body["valid"] is False
    assert body["start_order"] is None
    assert body["error"]["kind"] == "cycle"
    assert body["error"]["cycle"] == ["a", "b", "c", "a"]
    assert body["error"]["message"] == "service dependencies form a cycle: a → b → c → a"
    assert {"from": "d", "to": "a"} in body["edges"]
    assert find_cycle(SERVICE_NAMES, SERVICE_DEPENDENCIES) is None


class HubTestStray(Message, frozen=True):
    note: str = "neither a heartbeat nor an error report"


async def test_the_hub_counts_and_ignores_messages_it_cannot_read(hub: tuple[HubService, MemoryBus]) -> None:
    svc, bus = hub
    await bus.publish(HEARTBEAT_SUBJECT, HubTestStray())
    await bus.publish(ERROR_SUBJECT, HubTestStray())
    assert svc.unreadable == 2
    assert [i["name"] for i in svc.registry.instances()] == ["hub"]
