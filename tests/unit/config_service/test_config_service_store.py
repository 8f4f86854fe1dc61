"""Config store: precedence, validation, versions and conflicts, history with diffs, audit, announcements."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from aitrading.common.bus import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError, NotFoundError
from aitrading.config_service.messages import ConfigChanged
from aitrading.config_service.namespaces import NAMESPACES, RiskConfig, merge
from aitrading.config_service.service import ConfigService
from aitrading.config_service.store import Owner, VersionConflictError, config_diff
from aitrading.storage.audit.chain import AuditLog
from aitrading.storage.oltp import Database

RISK, UI, TRADING = NAMESPACES["risk"], NAMESPACES["ui"], NAMESPACES["trading"]
Tenants = tuple[uuid.UUID, uuid.UUID]


async def test_effective_value_is_user_over_tenant_over_global_over_default_field_by_field(
    service: ConfigService, tenants: Tenants
) -> None:
    store, (a, _) = service.store, tenants
    await store.put(
        Owner("global"),
        TRADING,
        {"default_deviation_points": 20, "default_filling": "IOC"},
        expected=0,
        actor="root",
    )
    await store.put(Owner("tenant", a), TRADING, {"default_deviation_points": 30}, expected=0, actor="admin")
    await store.put(
        Owner("user", a, "u1"),
        TRADING,
        {"default_deviation_points": 40, "confirm_orders": False},
        expected=0,
        actor="u1",
    )
    eff = (await store.effective(a, "u1"))["trading"]
    assert eff["values"]["default_deviation_points"] == 40
    assert eff["values"]["default_filling"] == "IOC"
    assert eff["values"]["confirm_orders"] is False
    assert eff["values"]["default_volume_lots"] == "0.01"
    assert eff["sources"] == {
        "default_deviation_points": "user",
        "default_filling": "global",
        "confirm_orders": "user",
        "default_volume_lots": "default",
        "default_magic": "default",
    }
    assert eff["versions"] == {"global": 1, "tenant": 1, "user": 1}
    other_user = (await store.effective(a, "u2"))["trading"]
    assert other_user["values"]["default_deviation_points"] == 30
    assert other_user["sources"]["default_deviation_points"] == "tenant"
    no_tenant = (await store.effective(None, None))["trading"]
    assert no_tenant["values"]["default_deviation_points"] == 20


async def test_one_tenants_overrides_never_reach_another_tenant(
    service: ConfigService, tenants: Tenants
) -> None:
    store, (a, b) = service.store, tenants
    await store.put(Owner("tenant", a), RISK, {"max_leverage": 10}, expected=0, actor="admin-a")
    assert (await store.effective(a, None))["risk"]["values"]["max_leverage"] == 10
    assert (await store.effective(b, None))["risk"]["values"]["max_leverage"] == 100
    assert (await store.get(Owner("tenant", b), RISK)).value is None


async def test_risk_limits_cannot_be_overridden_by_a_user(service: ConfigService, tenants: Tenants) -> None:
    with pytest.raises(BadInputError, match="only at global, tenant"):
        await service.store.put(
            Owner("user", tenants[0], "u1"), RISK, {"max_leverage": 500}, expected=0, actor="u1"
        )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"max_leverage": 0}, "max_leverage"),
        ({"max_order_lots": "abc"}, "max_order_lots"),
        ({"max_order_lots": "0.123456789"}, "max_order_lots"),
        ({"no_such_field": 1}, "unknown field 'no_such_field'"),
        ({}, "empty"),
        ([1, 2], "JSON object"),
    ],
)
async def test_invalid_overrides_are_rejected_naming_the_field(
    service: ConfigService, tenants: Tenants, value: object, message: str
) -> None:
    with pytest.raises(BadInputError, match=message):
        await service.store.put(Owner("tenant", tenants[0]), RISK, value, expected=0, actor="admin")


async def test_values_are_stored_normalised_and_exact(service: ConfigService, tenants: Tenants) -> None:
    view = await service.store.put(
        Owner("tenant", tenants[0]),
        RISK,
        {"max_order_lots": "2.50000000", "max_daily_loss_pct": 3},
        expected=0,
        actor="admin",
    )
    assert view.value == {"max_order_lots": "2.50000000", "max_daily_loss_pct": "3"}
    model = RiskConfig.model_validate((await service.store.effective(tenants[0], None))["risk"]["values"])
    assert model.max_order_lots == Decimal("2.5")
    assert model.max_daily_loss_pct == Decimal(3)


async def test_every_change_gets_the_next_version_and_a_stale_version_is_a_conflict(
    service: ConfigService, tenants: Tenants
) -> None:
    store, owner = service.store, Owner("tenant", tenants[0])
    assert (await store.get(owner, UI)).version == 0
    first = await store.put(owner, UI, {"theme": "dark"}, expected=0, actor="admin")
    second = await store.put(owner, UI, {"theme": "light"}, expected=1, actor="admin")
    assert (first.version, second.version) == (1, 2)
    with pytest.raises(VersionConflictError, match="version 2, not 1") as info:
        await store.put(owner, UI, {"theme": "dark"}, expected=1, actor="other-admin")
    assert info.value.current == 2
    with pytest.raises(VersionConflictError):
        await store.put(owner, UI, {"theme": "dark"}, expected=0, actor="other-admin")
    assert (await store.get(owner, UI)).value == {"theme": "light"}


async def test_an_unchanged_value_makes_no_version_no_audit_and_no_announcement(
    service: ConfigService,
    tenants: Tenants,
    db: Database,
    clock: TestClock,
    announcements: list[tuple[str, ConfigChanged]],
) -> None:
    owner = Owner("tenant", tenants[0])
    await service.store.put(owner, UI, {"theme": "dark"}, expected=0, actor="admin")
    again = await service.store.put(owner, UI, {"theme": "dark"}, expected=1, actor="admin")
    assert again.version == 1
    assert not again.changed
    assert len(await service.store.history(owner)) == 1
    assert len(await AuditLog(db, clock).records(tenants[0])) == 1
    assert len(announcements) == 1


async def test_delete_makes_the_fields_inherit_and_keeps_counting_versions(
    service: ConfigService, tenants: Tenants
) -> None:
    store, a = service.store, tenants[0]
    user = Owner("user", a, "u1")
    await store.put(Owner("tenant", a), UI, {"theme": "dark"}, expected=0, actor="admin")
    await store.put(user, UI, {"theme": "light"}, expected=0, actor="u1")
    deleted = await store.delete(user, UI, expected=1, actor="u1")
    assert (deleted.version, deleted.value) == (2, None)
    assert (await store.effective(a, "u1"))["ui"]["values"]["theme"] == "dark"
    with pytest.raises(NotFoundError, match="not set"):
        await store.delete(user, UI, expected=2, actor="u1")
    again = await store.put(user, UI, {"theme": "system"}, expected=2, actor="u1")
    assert again.version == 3


async def test_history_records_who_when_old_new_and_the_diff_newest_first(
    service: ConfigService, tenants: Tenants, clock: TestClock
) -> None:
    store, owner = service.store, Owner("tenant", tenants[0])
    await store.put(owner, TRADING, {"default_deviation_points": 5}, expected=0, actor="alice")
    clock.advance(60)
    await store.put(
        owner, TRADING, {"default_deviation_points": 7, "default_filling": "IOC"}, expected=1, actor="bob"
    )
    clock.advance(60)
    await store.delete(owner, TRADING, expected=2, actor="carol")
    changes = await store.history(owner, "trading")
    assert [(c.version, c.action, c.actor) for c in changes] == [
        (3, "delete", "carol"),
        (2, "put", "bob"),
        (1, "put", "alice"),
    ]
    bob = changes[1]
    assert bob.ts == clock.utcnow() - timedelta(seconds=60)
    assert bob.old == {"default_deviation_points": 5}
    assert bob.new == {"default_deviation_points": 7, "default_filling": "IOC"}
    assert bob.diff == [
        {"op": "replace", "path": "/default_deviation_points", "old": 5, "new": 7},
        {"op": "add", "path": "/default_filling", "new": "IOC"},
    ]
    assert changes[0].diff == [
        {"op": "remove", "path": "/default_deviation_points", "old": 7},
        {"op": "remove", "path": "/default_filling", "old": "IOC"},
    ]
    assert [c.version for c in await store.history(owner, "trading", before_version=3, limit=1)] == [2]
    assert await store.history(owner, "ui") == []


async def test_changes_are_audited_in_the_tenants_chain_and_global_ones_in_the_platforms(
    service: ConfigService, tenants: Tenants, db: Database, clock: TestClock
) -> None:
    store, a = service.store, tenants[0]
    await store.put(Owner("tenant", a), RISK, {"max_leverage": 20}, expected=0, actor="admin-a")
    await store.put(Owner("user", a, "u1"), UI, {"theme": "dark"}, expected=0, actor="u1")
    await store.put(Owner("global"), RISK, {"max_leverage": 50}, expected=0, actor="root")
    audit = AuditLog(db, clock)
    tenant_events = await audit.records(a)
    assert [(e.seq, e.kind, e.actor) for e in tenant_events] == [
        (1, "config.put", "admin-a"),
        (2, "config.put", "u1"),
    ]
    payload = tenant_events[0].payload_dict()
    assert payload == {
        "action": "put",
        "diff": [{"new": 20, "op": "add", "path": "/max_leverage"}],
        "namespace": "risk",
        "new": {"max_leverage": 20},
        "old": None,
        "scope": "tenant",
        "tenant": str(a),
        "user": None,
        "version": 1,
    }
    assert tenant_events[1].payload_dict()["user"] == "u1"
    platform_events = await audit.records(store.platform_tenant)
    assert [(e.kind, e.payload_dict()["scope"]) for e in platform_events] == [("config.put", "global")]
    assert (await audit.verify(a)).ok
    assert (await audit.verify(store.platform_tenant)).ok
    assert await audit.records(tenants[1]) == []


async def test_changes_are_announced_per_tenant_or_globally_after_the_commit(
    service: ConfigService, tenants: Tenants, announcements: list[tuple[str, ConfigChanged]]
) -> None:
    store, a = service.store, tenants[0]
    await store.put(Owner("tenant", a), UI, {"theme": "dark"}, expected=0, actor="admin")
    await store.put(Owner("user", a, "u1"), UI, {"theme": "light"}, expected=0, actor="u1")
    await store.put(Owner("global"), UI, {"language": "de"}, expected=0, actor="root")
    await store.delete(Owner("global"), UI, expected=1, actor="root")
    assert [(s, m.scope, m.tenant, m.user, m.namespace, m.version, m.deleted) for s, m in announcements] == [
        (f"cfg.changed.{a}", "tenant", str(a), None, "ui", 1, False),
        (f"cfg.changed.{a}", "user", str(a), "u1", "ui", 1, False),
        ("cfg.changed.global", "global", None, None, "ui", 1, False),
        ("cfg.changed.global", "global", None, None, "ui", 2, True),
    ]
    with pytest.raises(VersionConflictError):
        await store.put(Owner("tenant", a), UI, {"theme": "light"}, expected=0, actor="late")
    assert len(announcements) == 4  # a refused change is not announced


async def test_a_bus_that_is_down_does_not_undo_a_stored_change(
    db: Database, clock: TestClock, tenants: Tenants
) -> None:
    from aitrading.common.auth import TokenService
    from aitrading.common.errors import TemporaryError

    class Down(MemoryBus):
        async def publish(self, subject: str, msg: object) -> None:  # type: ignore[override]
            raise TemporaryError("bus down")

    svc = ConfigService(db=db, clock=clock, tokens=TokenService("x" * 40), bus=Down())
    await svc.start()
    view = await svc.store.put(Owner("tenant", tenants[0]), UI, {"theme": "dark"}, expected=0, actor="admin")
    assert (await svc.store.get(Owner("tenant", tenants[0]), UI)).version == view.version == 1
    await svc.stop()


async def test_writing_for_a_tenant_that_does_not_exist_is_not_found(service: ConfigService) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        await service.store.put(Owner("tenant", uuid.uuid4()), UI, {"theme": "dark"}, expected=0, actor="x")


def test_owner_rules() -> None:
    with pytest.raises(BadInputError, match="needs a tenant"):
        Owner("tenant")
    with pytest.raises(BadInputError, match="user is named"):
        Owner("tenant", uuid.uuid4(), "u1")
    with pytest.raises(BadInputError, match="unknown scope"):
        Owner("team", uuid.uuid4())


def test_a_stored_field_the_schema_no_longer_accepts_is_inherited_instead() -> None:
    values, sources = merge(
        RISK, [("global", {"max_leverage": 50, "gone": 1}), ("tenant", {"max_leverage": 99999})]
    )
    assert values["max_leverage"] == 50
    assert sources["max_leverage"] == "global"
    assert "gone" not in values


def test_diff_lists_added_removed_and_replaced_fields_only() -> None:
    assert config_diff({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4}) == [
        {"op": "replace", "path": "/b", "old": 2, "new": 5},
        {"op": "remove", "path": "/c", "old": 3},
        {"op": "add", "path": "/d", "new": 4},
    ]
    assert config_diff(None, None) == []
    assert config_diff(None, {"x": "1.5"}) == [{"op": "add", "path": "/x", "new": "1.5"}]
