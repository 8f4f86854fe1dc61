"""The engine API: tenant scoping, roles, 422 with MT5 retcodes for denials, 202 for accepted orders."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from engine_helpers import ACCOUNT, Rig, announce_account, make_rig
from fastapi import FastAPI

from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.bus.codec import Message
from aitrading.engine.api import engine_router
from aitrading.model.commands import TradeCommand
from aitrading.model.enums import MarginMode
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.wire import AgentPresence
from aitrading.storage.oltp import ensure_tenant

SECRET = "x" * 40


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Rig, httpx.AsyncClient, TokenService]]:
    async for rig in make_rig(tmp_path):
        tokens = TokenService(SECRET, clock=rig.clock)
        app = FastAPI()
        app.include_router(
            engine_router(rig.engine, principal_dependency(tokens), tokens, rig.bus, rig.clock)
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            yield rig, client, tokens


def auth(tokens: TokenService, tenant: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue('alice', tenant=tenant, roles=roles)}"}


async def test_another_tenant_sees_and_changes_nothing(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    mine = auth(tokens, rig.tenant, "portfolio_manager")
    other = auth(tokens, str(uuid.uuid4()), "tenant_admin")
    assert [a["account"] for a in (await client.get("/api/v1/accounts", headers=mine)).json()] == [ACCOUNT]
    assert (await client.get("/api/v1/accounts", headers=other)).json() == []
    for path in (f"/api/v1/accounts/{ACCOUNT}", f"/api/v1/accounts/{ACCOUNT}/positions"):
        assert (await client.get(path, headers=other)).status_code == 404
    body = {"account": ACCOUNT, "symbol": "EURUSD", "type": "BUY", "volume": "0.10"}
    assert (await client.post("/api/v1/orders", json=body, headers=other)).status_code == 404
    placed = await client.post("/api/v1/orders", json=body, headers=mine)
    assert placed.status_code == 202
    coid = placed.json()["order"]["client_order_id"]
    assert (await client.get(f"/api/v1/orders/{coid}", headers=other)).status_code == 404
    assert (await client.delete(f"/api/v1/orders/{coid}", headers=other)).status_code == 404


async def test_analyst_reads_but_cannot_trade(api: tuple[Rig, httpx.AsyncClient, TokenService]) -> None:
    rig, client, tokens = api
    analyst = auth(tokens, rig.tenant, "analyst")
    assert (await client.get("/api/v1/accounts", headers=analyst)).status_code == 200
    body = {"account": ACCOUNT, "symbol": "EURUSD", "type": "BUY", "volume": "0.10"}
    refused = await client.post("/api/v1/orders", json=body, headers=analyst)
    assert refused.status_code == 403
    assert "roles" in refused.json()["detail"]


async def test_denied_order_is_422_with_retcode_and_reason(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    trader = auth(tokens, rig.tenant, "portfolio_manager")
    body = {"account": ACCOUNT, "symbol": "EURUSD", "type": "BUY", "volume": "0.001"}
    denied = await client.post("/api/v1/orders", json=body, headers=trader)
    assert denied.status_code == 422
    assert denied.json()["retcode"] == 10014
    assert denied.json()["order"]["state"] == "REJECTED"
    bad = await client.post("/api/v1/orders", json={**body, "volume": "abc"}, headers=trader)
    assert bad.status_code == 422
    # Values beyond the 64-bit integers they are stored as are refused by name, not a database overflow.
    for field, value in (("volume", "1e30"), ("price", "1e30"), ("sl", "1e12"), ("expiration", 2**70)):
        huge = await client.post("/api/v1/orders", json={**body, field: value}, headers=trader)
        assert huge.status_code == 422, (field, huge.text)
        assert field in huge.text
    assert (await client.get(f"/api/v1/accounts/{ACCOUNT}/orders", headers=trader)).status_code == 200
    assert (await client.get("/api/v1/accounts")).status_code == 401


async def test_risk_limits_are_set_through_the_api(api: tuple[Rig, httpx.AsyncClient, TokenService]) -> None:
    rig, client, tokens = api
    trader = auth(tokens, rig.tenant, "tenant_admin")
    put = await client.put(
        f"/api/v1/risk/limits/account/{ACCOUNT}", json={"kill_switch": True}, headers=trader
    )
    assert put.status_code == 200
    bad = await client.put(f"/api/v1/risk/limits/account/{ACCOUNT}", json={"nope": 1}, headers=trader)
    assert bad.status_code == 422
    body = {"account": ACCOUNT, "symbol": "EURUSD", "type": "BUY", "volume": "0.10"}
    denied = await client.post("/api/v1/orders", json=body, headers=trader)
    assert denied.json()["reason"] == "kill_switch"
    listed = (await client.get("/api/v1/risk/limits", headers=trader)).json()
    assert listed == [{"scope": "account", "scope_id": ACCOUNT, "limits": {"kill_switch": True}}]


async def test_close_by_needs_an_open_position_and_a_trading_role(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    path = f"/api/v1/accounts/{ACCOUNT}/positions/9001/close-by"
    analyst = auth(tokens, rig.tenant, "analyst")
    trader = auth(tokens, rig.tenant, "portfolio_manager")
    assert (await client.post(path, json={"by": 9002}, headers=analyst)).status_code == 403
    missing = await client.post(path, json={"by": 9002}, headers=trader)
    assert missing.status_code == 404
    assert "9001" in missing.json()["detail"]
    assert (await client.post(path, json={"by": 0}, headers=trader)).status_code == 422


async def test_a_close_with_a_client_order_id_is_idempotent_and_carries_the_positions_magic(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    await rig.open_long(ticket=7001, magic=77)
    trader = auth(tokens, rig.tenant, "portfolio_manager")
    listed = (await client.get(f"/api/v1/accounts/{ACCOUNT}/positions", headers=trader)).json()
    assert [(p["ticket"], p["magic"]) for p in listed] == [(7001, 77)]
    path = f"/api/v1/accounts/{ACCOUNT}/positions/7001/close"
    body = {"client_order_id": "DEC-close-1", "deviation": 15, "strategy": "sma"}
    first = await client.post(path, json=body, headers=trader)
    assert first.status_code == 202, first.text
    order = first.json()["order"]
    assert order["client_order_id"] == "DEC-close-1"
    assert order["magic"] == 77  # the position's, since the body named none
    sent = rig.engine._requests[(rig.tenant, ACCOUNT, order["client_order_id"])]
    assert (sent.deviation, sent.position, sent.strategy) == (15, 7001, "sma")
    again = await client.post(path, json=body, headers=trader)  # its answer was lost: sent again
    assert again.status_code == 202
    assert again.json()["order"] == order
    orders = (await client.get(f"/api/v1/accounts/{ACCOUNT}/orders", headers=trader)).json()
    assert [o["client_order_id"] for o in orders].count("DEC-close-1") == 1
    other = await client.post(path, json={"magic": 5}, headers=trader)  # another close while one works
    assert other.status_code == 422
    assert (other.json()["retcode"], other.json()["reason"]) == (10039, "close_order_exist")
    assert "DEC-close-1" in other.json()["text"]


async def test_a_close_id_used_by_another_order_is_a_conflict_and_a_close_cannot_exceed_the_position(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    await rig.open_long(ticket=7002)
    trader = auth(tokens, rig.tenant, "portfolio_manager")
    buy = {"account": ACCOUNT, "symbol": "EURUSD", "type": "BUY", "volume": "0.10", "client_order_id": "K1"}
    assert (await client.post("/api/v1/orders", json=buy, headers=trader)).status_code == 202
    for identifier in (7002, 999999):  # the id of an unrelated buy does not stand for a close
        reused = await client.post(
            f"/api/v1/accounts/{ACCOUNT}/positions/{identifier}/close",
            json={"client_order_id": "K1"},
            headers=trader,
        )
        assert reused.status_code == 409, reused.text
        assert "K1" in reused.json()["detail"]
    too_much = await client.post(
        f"/api/v1/accounts/{ACCOUNT}/positions/7002/close", json={"volume": "0.20"}, headers=trader
    )
    assert too_much.status_code == 422
    assert "0.1" in too_much.json()["detail"]
    assert [
        p["ticket"]
        for p in (await client.get(f"/api/v1/accounts/{ACCOUNT}/positions", headers=trader)).json()
    ] == [7002]


async def test_on_a_netting_account_a_retried_close_is_answered_with_the_first(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, mode=MarginMode.RETAIL_NETTING):
        tokens = TokenService(SECRET, clock=rig.clock)
        app = FastAPI()
        app.include_router(
            engine_router(rig.engine, principal_dependency(tokens), tokens, rig.bus, rig.clock)
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as client:
            await rig.open_long(ticket=7003)
            trader = auth(tokens, rig.tenant, "portfolio_manager")
            path = f"/api/v1/accounts/{ACCOUNT}/positions/7003/close"
            first = await client.post(path, json={"client_order_id": "N-close"}, headers=trader)
            assert first.status_code == 202, first.text
            assert first.json()["order"]["position"] == 7003  # named on netting too: no second close
            again = await client.post(path, json={"client_order_id": "N-close"}, headers=trader)
            assert again.status_code == 202
            assert again.json()["order"] == first.json()["order"]


async def test_an_order_id_is_the_tenants_so_a_second_account_cannot_reuse_it(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    await announce_account(rig, rig.tenant, AccountId("2"))
    trader = auth(tokens, rig.tenant, "portfolio_manager")
    body = {
        "account": ACCOUNT,
        "symbol": "EURUSD",
        "type": "BUY",
        "volume": "0.10",
        "client_order_id": "SAME",
    }
    assert (await client.post("/api/v1/orders", json=body, headers=trader)).status_code == 202
    again = await client.post("/api/v1/orders", json={**body, "account": "2"}, headers=trader)
    assert again.status_code == 409
    assert f"account {ACCOUNT}" in again.json()["detail"]
    assert (await client.get("/api/v1/orders/SAME", headers=trader)).json()["account"] == ACCOUNT


async def test_a_close_reusing_the_opening_orders_id_is_a_conflict_and_working_entries_do_not_block(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    await rig.open_long(ticket=7004)  # opened by order T000001, whose fill names position 7004
    trader = auth(tokens, rig.tenant, "portfolio_manager")
    path = f"/api/v1/accounts/{ACCOUNT}/positions/7004/close"
    reused = await client.post(path, json={"client_order_id": "T000001"}, headers=trader)
    assert reused.status_code == 409, reused.text  # the opening BUY is not a close of it
    limit = {"account": ACCOUNT, "symbol": "EURUSD", "type": "BUY_LIMIT", "volume": "0.10", "price": "1.05"}
    assert (await client.post("/api/v1/orders", json=limit, headers=trader)).status_code == 202
    closed = await client.post(path, json={}, headers=trader)  # a working entry is no close in progress
    assert closed.status_code == 202, closed.text


async def test_two_closes_of_one_position_at_once_cannot_both_pass(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    await rig.open_long(ticket=7005)
    trader = auth(tokens, rig.tenant, "portfolio_manager")
    path = f"/api/v1/accounts/{ACCOUNT}/positions/7005/close"
    async with rig.engine._lock:  # both requests arrive while the engine is busy (a tick, a report)
        calls = [
            asyncio.create_task(client.post(path, json={"client_order_id": f"C-{n}"}, headers=trader))
            for n in "ab"
        ]
        await asyncio.sleep(0.05)
    answers = sorted([(await c).status_code for c in calls])
    assert answers == [202, 422]


async def test_two_tenants_may_use_the_same_client_order_id(
    api: tuple[Rig, httpx.AsyncClient, TokenService],
) -> None:
    rig, client, tokens = api
    async with rig.db.session() as s:
        other = TenantId(str((await ensure_tenant(s, f"t{uuid.uuid4().hex[:8]}", "Other")).id))
    account_b = AccountId("20002")
    await announce_account(rig, other, account_b)
    mine = {
        "account": ACCOUNT,
        "symbol": "EURUSD",
        "type": "BUY",
        "volume": "0.10",
        "client_order_id": "SAME",
    }
    theirs = {
        "account": account_b,
        "symbol": "GBPUSD",
        "type": "SELL",
        "volume": "0.20",
        "client_order_id": "SAME",
    }
    assert (
        await client.post("/api/v1/orders", json=mine, headers=auth(tokens, rig.tenant, "portfolio_manager"))
    ).status_code == 202
    assert (
        await client.post("/api/v1/orders", json=theirs, headers=auth(tokens, other, "portfolio_manager"))
    ).status_code == 202
    resent: list[TradeCommand] = []

    async def agent(subject: str, msg: Message) -> None:
        if isinstance(msg, TradeCommand):
            resent.append(msg)

    await rig.bus.subscribe(f"ord.cmd.{rig.tenant}.{ACCOUNT}", agent)
    presence = AgentPresence(
        tenant=rig.tenant, device_id="pc1", accounts=[ACCOUNT], online=True, ts_ns=rig.clock.now_ns()
    )
    await rig.bus.publish(f"agent.presence.{rig.tenant}", presence)  # A's agent back: its orders go again
    assert [(c.request.tenant, c.request.account, c.request.symbol) for c in resent] == [
        (rig.tenant, ACCOUNT, "EURUSD")
    ]
