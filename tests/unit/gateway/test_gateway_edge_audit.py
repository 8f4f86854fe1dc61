"""Security events reach the tenant's hash-chained audit log, off the request path and bounded."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_edge_helpers import SECRET, FakeUpstream, bearer, client_of, make_gateway

from aitrading.common.auth import Principal, TokenService
from aitrading.common.clock import LiveClock, TestClock
from aitrading.gateway.audit import SecurityAuditor
from aitrading.gateway.config import GatewayConfig, RateLimitConfig, TierLimits
from aitrading.storage.audit import AuditLog
from aitrading.storage.oltp import Database, ensure_tenant


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'oltp.sqlite'}", migrate_on_start=True)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
async def tenant(db: Database) -> str:
    async with db.session() as session:
        return str((await ensure_tenant(session, "acme", "Acme Fund")).id)


async def test_denials_step_up_demands_and_rate_limiting_are_audited_in_the_tenants_chain(
    db: Database, tenant: str
) -> None:
    tokens = TokenService(SECRET)
    engine = FakeUpstream("engine", tokens)
    audit = AuditLog(db, LiveClock())
    config = GatewayConfig(
        rate_limit=RateLimitConfig(
            tiers={"t": TierLimits(per_principal="3/minute", per_tenant="100/minute")}, default_tier="t"
        )
    )
    gw = make_gateway({"engine": engine}, tokens, config=config, audit=audit)
    await gw.start()
    try:
        async with client_of(gw) as client:
            analyst = bearer(tokens, "user:ann", tenant=tenant, roles=("analyst",))
            pm = bearer(tokens, "user:pat", tenant=tenant, roles=("portfolio_manager",))
            await client.post("/api/v1/engine/orders", json={}, headers=analyst, params={"x": 1})
            await client.post("/api/v1/engine/orders", json={}, headers=pm)
            for _ in range(4):  # the 3rd and 4th are refused; one event stands for both
                await client.get("/api/v1/engine/whoami", headers=analyst)
    finally:
        await gw.stop()  # writes what is queued
    records = await audit.records(tenant)
    assert [(r.actor, r.kind) for r in records] == [
        ("user:ann", "gateway.rbac_denied"),
        ("user:pat", "gateway.mfa_required"),
        ("user:ann", "gateway.rate_limited"),
    ]
    denied = json.loads(records[0].payload)
    assert denied["method"] == "POST"
    assert denied["path"] == "/api/v1/engine/orders"
    assert denied["rule"] == "engine-trade"
    assert denied["roles"] == ["analyst"]
    assert len(denied["request_id"]) == 16
    assert json.loads(records[2].payload)["scope"] == "principal"
    assert (await audit.verify(tenant)).ok


async def test_recording_never_waits_and_a_full_queue_drops_new_events() -> None:
    auditor = SecurityAuditor(None, TestClock(), max_queue=2)  # not started: nothing drains
    principal = Principal("user:x", tenant=str(uuid.uuid4()))
    assert auditor.record(principal, "gateway.rbac_denied", {"n": 1})
    assert auditor.record(principal, "gateway.rbac_denied", {"n": 2})
    assert not auditor.record(principal, "gateway.rbac_denied", {"n": 3})
    assert auditor.pending == 2


async def test_rate_limited_events_are_coalesced_per_principal_per_interval() -> None:
    clock = TestClock()
    auditor = SecurityAuditor(None, clock, rate_limited_every_s=60)
    alice, bob = Principal("user:alice"), Principal("user:bob")
    assert auditor.record(alice, "gateway.rate_limited", {})
    assert not auditor.record(alice, "gateway.rate_limited", {})
    assert auditor.record(bob, "gateway.rate_limited", {})
    clock.advance(60)
    assert auditor.record(alice, "gateway.rate_limited", {})
    assert auditor.pending == 3


async def test_an_audit_store_failure_is_logged_and_the_writer_goes_on() -> None:
    written: list[str] = []

    class Flaky:
        async def append(self, tenant_id: object, actor: str, kind: str, payload: object) -> None:
            if not written:
                written.append("failed")
                raise ConnectionError("database down")
            written.append(kind)

    auditor = SecurityAuditor(Flaky(), TestClock())
    auditor.start()
    tenant = str(uuid.uuid4())
    auditor.record(Principal("user:a", tenant=tenant), "gateway.rbac_denied", {})
    auditor.record(Principal("user:a", tenant=tenant), "gateway.mfa_required", {})
    auditor.record(Principal("user:platform"), "gateway.rbac_denied", {})  # no tenant: log only
    await auditor.stop()
    assert written == ["failed", "gateway.mfa_required"]
