"""The common service shell reports to the hub: heartbeats, and error events from the logging chain."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import APIRouter

from aitrading.common.bus import MemoryBus, Message
from aitrading.common.clock import TestClock
from aitrading.common.config import load_config
from aitrading.common.errors import ConfigError, TemporaryError
from aitrading.common.logging import ERROR_REPORTER, ERROR_SUBJECT, ErrorReport, configure_logging
from aitrading.common.service import HEARTBEAT_SUBJECT, Service, ServiceHeartbeat


class Engine(Service):
    name = "engine"
    capabilities = ("trades",)


async def settle(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def logs() -> Iterator[None]:
    """The real logging chain (with the error tap), an empty reporter queue, and a clean reporter after."""
    configure_logging("INFO")
    ERROR_REPORTER._pending.clear()
    ERROR_REPORTER._dropped = 0
    yield
    ERROR_REPORTER.resize(1000)
    ERROR_REPORTER._pending.clear()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    b = MemoryBus()
    await b.connect()
    yield b
    await b.close()


@pytest.fixture
async def reports(bus: MemoryBus) -> list[ErrorReport]:
    got: list[ErrorReport] = []

    async def on(_s: str, msg: Message) -> None:
        assert isinstance(msg, ErrorReport)
        got.append(msg)

    await bus.subscribe(ERROR_SUBJECT, on)
    return got


@pytest.fixture
async def beats(bus: MemoryBus) -> list[ServiceHeartbeat]:
    got: list[ServiceHeartbeat] = []

    async def on(_s: str, msg: Message) -> None:
        assert isinstance(msg, ServiceHeartbeat)
        got.append(msg)

    await bus.subscribe(HEARTBEAT_SUBJECT, on)
    return got


@pytest.fixture
async def engine(bus: MemoryBus, logs: None) -> AsyncIterator[Engine]:
    svc = Engine()
    svc.report_to_hub(bus, TestClock(), endpoint="http://127.0.0.1:8007", instance="test:1", interval_s=60)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def config_error() -> ConfigError:
    try:
        load_config(services={"hub": 9100, "config": 9100})
    except ConfigError as exc:
        return exc
    raise AssertionError("no error")


# --- heartbeats ------------------------------------------------------------------------------------------


async def test_a_started_service_beats_at_once_and_says_goodbye_when_it_stops(
    bus: MemoryBus, beats: list[ServiceHeartbeat], logs: None
) -> None:
    svc = Engine()
    svc.report_to_hub(bus, TestClock(), endpoint="http://127.0.0.1:8007", instance="test:1", interval_s=60)
    await svc.start()
    await settle(lambda: len(beats) == 1)
    first = beats[0]
    assert (first.name, first.instance, first.endpoint) == ("engine", "test:1", "http://127.0.0.1:8007")
    assert first.ready
    assert first.state == "running"
    assert not first.stopping
    assert first.capabilities == ("trades",)
    assert first.interval_s == 60
    await svc.stop()
    assert beats[-1].stopping
    assert not beats[-1].ready
    assert len(beats) == 2


async def test_heartbeats_repeat_every_interval_and_carry_readiness_checks(
    bus: MemoryBus, beats: list[ServiceHeartbeat], logs: None
) -> None:
    healthy = {"now": True}

    async def database() -> bool:
        return healthy["now"]

    svc = Engine({"database": database})
    svc.report_to_hub(bus, TestClock(), endpoint="http://x", instance="test:1", interval_s=0.02)
    await svc.start()
    try:
        await settle(lambda: len(beats) >= 3)
        assert beats[-1].checks == {"database": "ok"}
        assert beats[-1].ready
        healthy["now"] = False
        await settle(lambda: not beats[-1].ready)
        assert beats[-1].checks == {"database": "failing"}
    finally:
        await svc.stop()


async def test_a_bus_that_refuses_heartbeats_does_not_stop_the_service(logs: None) -> None:
    class Down(MemoryBus):
        async def publish(self, subject: str, msg: Message) -> None:
            raise TemporaryError("bus down")

    bus = Down()
    await bus.connect()
    svc = Engine()
    svc.report_to_hub(bus, TestClock(), endpoint="http://x", instance="t:1", interval_s=0.01)
    await svc.start()
    await asyncio.sleep(0.05)
    assert svc.is_ready
    await svc.stop()


def test_report_to_hub_refuses_a_non_positive_interval(bus: MemoryBus) -> None:
    with pytest.raises(ValueError, match="positive"):
        Engine().report_to_hub(bus, TestClock(), endpoint="http://x", interval_s=0)


# --- error events ----------------------------------------------------------------------------------------


async def test_an_exception_logged_at_error_level_is_published_on_hub_error(
    engine: Engine, reports: list[ErrorReport]
) -> None:
    exc = config_error()
    structlog.get_logger("engine").error("load_failed", exc_info=exc)
    await settle(lambda: len(reports) == 1)
    [rep] = reports
    assert rep.service == "engine"
    assert rep.instance == "test:1"
    assert rep.event == "load_failed"
    assert rep.level == "error"
    assert rep.exc_type == "aitrading.common.errors.ConfigError"
    assert "aitrading.common.errors.OperationalError" in rep.exc_mro
    assert "share port" in rep.message
    assert rep.frames[0][:2] == ("aitrading.common.config", "load_config")
    assert all(module.startswith("aitrading.") for module, _, _ in rep.frames)
    assert rep.ts_ns == TestClock().now_ns()


async def test_stdlib_error_logs_with_exc_info_are_reported_and_plain_errors_are_not(
    engine: Engine, reports: list[ErrorReport]
) -> None:
    log = logging.getLogger("some.library")
    log.error("no exception here")
    log.warning("a warning", exc_info=config_error())
    try:
        raise TemporaryError("broker busy")
    except TemporaryError:
        log.exception("call failed")
    await settle(lambda: len(reports) == 1)
    await asyncio.sleep(0.1)
    assert [r.message for r in reports] == ["broker busy"]
    assert reports[0].logger == ""  # stdlib records carry no structlog logger name
    assert reports[0].event == "call failed"


async def test_one_exception_logged_twice_is_one_report_and_a_burst_of_equal_ones_coalesces(
    engine: Engine, reports: list[ErrorReport]
) -> None:
    log = structlog.get_logger("engine")
    exc = TemporaryError("broker busy")
    log.error("first", exc_info=exc)
    log.error("again", exc_info=exc)
    for _ in range(5):
        log.error("burst", exc_info=TemporaryError("broker busy"))
    await settle(lambda: sum(r.count for r in reports) >= 6)
    await asyncio.sleep(0.1)
    assert sum(r.count for r in reports) == 6
    assert len(reports) < 6  # the burst went out coalesced, not as five messages
    assert [r.event for r in reports if r.event == "again"] == []


async def test_a_failing_hub_handler_does_not_make_reports_about_itself(
    bus: MemoryBus, engine: Engine, reports: list[ErrorReport]
) -> None:
    async def broken(_s: str, _m: Message) -> None:
        raise RuntimeError("hub handler broke")

    await bus.subscribe(ERROR_SUBJECT, broken)
    structlog.get_logger("engine").error("boom", exc_info=TemporaryError("once"))
    await settle(lambda: bus.handler_errors >= 1)
    await asyncio.sleep(0.2)  # a recursive reporter would now be publishing report after report
    assert [r.message for r in reports] == ["once"]
    assert bus.handler_errors == 1


async def test_errors_logged_in_another_thread_are_published(
    engine: Engine, reports: list[ErrorReport]
) -> None:
    def work() -> None:
        structlog.get_logger("engine").error("in_thread", exc_info=TemporaryError("from a thread"))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    await settle(lambda: len(reports) == 1)
    assert reports[0].message == "from a thread"


async def test_the_queue_is_bounded_and_what_it_dropped_is_announced(
    bus: MemoryBus, reports: list[ErrorReport], logs: None
) -> None:
    ERROR_REPORTER.resize(10)
    log = structlog.get_logger("engine")
    for i in range(50):  # no service attached yet: reports wait in the queue
        log.error("early", exc_info=TemporaryError(f"failure {i}"))
    assert ERROR_REPORTER.pending == 10
    assert ERROR_REPORTER.dropped == 40
    svc = Engine()
    svc.report_to_hub(bus, TestClock(), endpoint="http://x", instance="t:1", interval_s=60)
    await svc.start()
    try:
        await settle(lambda: len(reports) == 10)
        assert [r.message for r in reports] == [f"failure {i}" for i in range(40, 50)]
        assert sum(r.dropped for r in reports) == 40
        assert ERROR_REPORTER.dropped == 0
    finally:
        await svc.stop()


async def test_an_unhandled_exception_in_a_route_is_a_plain_500_and_reported_for_its_service(
    engine: Engine, reports: list[ErrorReport]
) -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        config_error_value = config_error()
        raise config_error_value

    svc = Engine()
    svc.add_router(router)
    transport = httpx.ASGITransport(app=svc.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        resp = await client.get("/boom")
    assert resp.status_code == 500
    assert resp.json() == {"detail": "internal error"}
    await settle(lambda: len(reports) == 1)
    assert reports[0].service == "engine"
    assert reports[0].event == "unhandled_exception"


async def test_after_the_last_service_stops_errors_are_queued_not_published(
    bus: MemoryBus, reports: list[ErrorReport], logs: None
) -> None:
    svc = Engine()
    svc.report_to_hub(bus, TestClock(), endpoint="http://x", instance="t:1", interval_s=60)
    await svc.start()
    await svc.stop()
    structlog.get_logger("engine").error("late", exc_info=TemporaryError("after stop"))
    await asyncio.sleep(0.1)
    assert reports == []
    assert ERROR_REPORTER.pending == 1
