"""Symbol specs through the bridge: the engine's request reaches the account's agent, its specs the bus."""

from __future__ import annotations

import asyncio

import test_bridge_orders
from test_bridge_orders import Bridge, next_frame, online, rejected

from aitrading.common.bus import Message, encode
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.wire import SpecsRequest, SymbolSpecs, specs_request_subject, symbol_specs_subject
from aitrading.mt5.specs import DEFAULT_SPECS

bridge = test_bridge_orders.bridge  # the running bridge fixture, shared with the order-routing tests


def specs(tenant: str, account: str) -> SymbolSpecs:
    return SymbolSpecs(
        tenant=TenantId(tenant), account=AccountId(account), ts_ns=5, specs=[DEFAULT_SPECS["EURUSD"]]
    )


async def test_specs_request_reaches_the_agent_and_its_specs_are_published(bridge: Bridge) -> None:
    published: list[tuple[str, Message]] = []

    async def record(subject: str, msg: Message) -> None:
        published.append((subject, msg))

    await bridge.bus.subscribe("acct.specs.*.*", record)
    a = await online(bridge.url, "dev-a", "ACC1")
    ask = SpecsRequest(tenant=TenantId("tenant-1"), account=AccountId("ACC1"), symbols=["EURUSD"])
    await bridge.bus.publish(specs_request_subject("tenant-1", "ACC1"), ask)
    assert await next_frame(a) == ask
    mine = specs("tenant-1", "ACC1")
    await a.send(encode(mine))
    for _ in range(100):
        if published:
            break
        await asyncio.sleep(0.02)
    assert published == [(symbol_specs_subject("tenant-1", "ACC1"), mine)]
    await a.close()


async def test_specs_of_an_account_the_agent_did_not_declare_are_refused(bridge: Bridge) -> None:
    published: list[tuple[str, Message]] = []

    async def record(subject: str, msg: Message) -> None:
        published.append((subject, msg))

    await bridge.bus.subscribe("acct.specs.*.*", record)
    before = rejected("specs", "foreign_account")
    a = await online(bridge.url, "dev-a", "ACC1")
    await a.send(encode(specs("tenant-1", "ACC9")))
    for _ in range(100):
        if rejected("specs", "foreign_account") > before:
            break
        await asyncio.sleep(0.02)
    assert rejected("specs", "foreign_account") == before + 1
    assert published == []
    await a.close()
