"""The hub's registry: heartbeats in, instances and aggregated health out, judged by the hub's clock."""

from __future__ import annotations

import msgspec
import pytest

from aitrading.common.clock import TestClock
from aitrading.common.service import ServiceHeartbeat
from aitrading.hub.registry import Registry


def beat(name: str, instance: str = "host:1", *, ready: bool = True, **kw: object) -> ServiceHeartbeat:
    fields: dict[str, object] = {
        "name": name,
        "instance": instance,
        "version": "0.1.0",
        "endpoint": f"http://127.0.0.1:80{len(name)}",
        "ts_ns": 0,
        "interval_s": 5.0,
        "ready": ready,
        "state": "running" if ready else "degraded",
        "checks": {"bus": "ok"},
        "capabilities": ("x",),
    }
    fields.update(kw)
    return ServiceHeartbeat(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


def test_an_instance_is_listed_with_endpoint_version_health_and_last_seen(clock: TestClock) -> None:
    reg = Registry(clock, expected=("hub",))
    reg.record(beat("hub"))
    clock.advance(2)
    reg.record(beat("hub"))
    clock.advance(1.5)
    [inst] = reg.instances()
    assert inst["name"] == "hub"
    assert inst["endpoint"] == "http://127.0.0.1:803"
    assert inst["version"] == "0.1.0"
    assert inst["status"] == "ready"
    assert inst["capabilities"] == ["x"]
    assert inst["checks"] == {"bus": "ok"}
    assert inst["beats"] == 2
    assert inst["last_seen_age_s"] == 1.5
    assert inst["last_seen"] == "2024-01-01T00:00:02Z"
    assert inst["first_seen"] == "2024-01-01T00:00:00Z"


def test_an_instance_goes_stale_only_after_the_configured_number_of_missed_beats(clock: TestClock) -> None:
    reg = Registry(clock, expected=("hub",), stale_after_beats=3)
    reg.record(beat("hub", interval_s=5.0))
    clock.advance(15)  # exactly three intervals: not yet stale
    assert reg.instances()[0]["status"] == "ready"
    assert reg.instances()[0]["missed_beats"] == 3
    clock.advance(0.001)
    assert reg.instances()[0]["status"] == "stale"
    assert reg.health()["services"]["hub"]["status"] == "stale"
    assert reg.health()["status"] == "degraded"
    reg.record(beat("hub"))  # it comes back
    assert reg.instances()[0]["status"] == "ready"
    assert reg.health()["status"] == "ok"


def test_staleness_uses_each_instances_own_interval(clock: TestClock) -> None:
    reg = Registry(clock, stale_after_beats=2)
    reg.record(beat("fast", interval_s=1.0))
    reg.record(beat("slow", interval_s=10.0))
    clock.advance(5)
    status = {i["name"]: i["status"] for i in reg.instances()}
    assert status == {"fast": "stale", "slow": "ready"}


def test_health_is_ok_only_when_every_expected_service_has_a_ready_instance(clock: TestClock) -> None:
    reg = Registry(clock, expected=("hub", "config", "engine"))
    reg.record(beat("hub"))
    reg.record(beat("config", ready=False, reason="database ping failed"))
    health = reg.health()
    assert health["status"] == "degraded"
    assert health["services"]["hub"]["status"] == "ready"
    assert health["services"]["config"]["status"] == "not_ready"
    assert health["services"]["engine"] == {"status": "missing", "instances": 0, "ready_instances": 0}
    assert health["problems"] == ["config: not_ready", "engine: missing"]
    reg.record(beat("config"))
    reg.record(beat("engine"))
    assert reg.health() == {
        "status": "ok",
        "checked_at": "2024-01-01T00:00:00Z",
        "services": {
            "config": {"status": "ready", "instances": 1, "ready_instances": 1},
            "engine": {"status": "ready", "instances": 1, "ready_instances": 1},
            "hub": {"status": "ready", "instances": 1, "ready_instances": 1},
        },
        "problems": [],
    }


def test_a_service_is_ready_while_any_of_its_instances_is(clock: TestClock) -> None:
    reg = Registry(clock, expected=("engine",))
    reg.record(beat("engine", "a:1"))
    clock.advance(20)
    reg.record(beat("engine", "b:2"))
    health = reg.health()["services"]["engine"]
    assert health == {"status": "ready", "instances": 2, "ready_instances": 1}
    assert [i["status"] for i in reg.instances()] == ["stale", "ready"]


def test_a_stopping_beat_marks_the_instance_stopped_at_once(clock: TestClock) -> None:
    reg = Registry(clock, expected=("engine",))
    reg.record(beat("engine"))
    reg.record(msgspec.structs.replace(beat("engine"), stopping=True, ready=False))
    assert reg.instances()[0]["status"] == "stopped"
    assert reg.health()["problems"] == ["engine: stopped"]


def test_stale_and_stopped_instances_are_forgotten_after_forget_after(clock: TestClock) -> None:
    reg = Registry(clock, stale_after_beats=1, forget_after_s=60)
    reg.record(beat("engine", "old:1"))
    reg.record(beat("ml", "x:1", stopping=True))
    clock.advance(59)
    reg.record(beat("engine", "new:2"))
    assert len(reg.instances()) == 3
    clock.advance(2)
    assert [(i["name"], i["instance"]) for i in reg.instances()] == [("engine", "new:2")]


def test_an_unexpected_service_that_stopped_does_not_degrade_the_platform(clock: TestClock) -> None:
    reg = Registry(clock, expected=("hub",))
    reg.record(beat("hub"))
    reg.record(beat("tool", stopping=True))
    assert reg.health()["status"] == "ok"
    reg.record(beat("tool", ready=False))
    assert reg.health()["status"] == "degraded"
