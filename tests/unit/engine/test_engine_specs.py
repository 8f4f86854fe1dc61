"""Per-account symbol specs: what the account's terminal reported, else the kernel's defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from engine_helpers import ACCOUNT, Rig, announce_account, make_rig

from aitrading.common.bus.codec import Message
from aitrading.model.ids import AccountId
from aitrading.model.values import volume_raw
from aitrading.model.wire import (
    AgentPresence,
    SpecsRequest,
    SymbolSpecs,
    specs_request_subject,
    symbol_specs_subject,
)
from aitrading.mt5.specs import DEFAULT_SPECS

OTHER = AccountId("20002")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(tmp_path):
        yield r


async def _report_specs(rig: Rig, account: str, **changes: object) -> None:
    spec = msgspec.structs.replace(DEFAULT_SPECS["EURUSD"], **changes)
    msg = SymbolSpecs(tenant=rig.tenant, account=AccountId(account), ts_ns=rig.clock.now_ns(), specs=[spec])
    await rig.bus.publish(symbol_specs_subject(rig.tenant, account), msg)


async def test_an_account_without_specs_is_asked_for_them_when_its_agent_comes_online(rig: Rig) -> None:
    asked: list[Message] = []

    async def agent(_subject: str, msg: Message) -> None:
        asked.append(msg)

    await rig.bus.subscribe(specs_request_subject(rig.tenant, ACCOUNT), agent)
    presence = AgentPresence(
        tenant=rig.tenant, device_id="pc1", accounts=[ACCOUNT], online=True, ts_ns=rig.clock.now_ns()
    )
    await rig.bus.publish(f"agent.presence.{rig.tenant}", presence)
    assert asked == [SpecsRequest(tenant=rig.tenant, account=ACCOUNT)]
    await _report_specs(rig, ACCOUNT)
    await rig.bus.publish(f"agent.presence.{rig.tenant}", presence)
    assert len(asked) == 1  # it has them now
    assert "account.specs" in await rig.kinds()


async def test_orders_are_checked_with_the_specs_their_terminal_reported(rig: Rig) -> None:
    await announce_account(rig, rig.tenant, OTHER)
    other = rig.engine.book(rig.tenant, OTHER)
    assert other is not None
    other.feed = "SIM"
    lot = volume_raw("1")
    await _report_specs(rig, ACCOUNT, volume_min=lot, volume_step=lot)  # this broker trades whole lots
    denied = await rig.engine.submit(rig.request(volume=volume_raw("0.10")), "u")
    assert (denied.retcode, denied.reason) == (10014, "invalid_volume")
    fallback = await rig.engine.submit(rig.request(account=OTHER, volume=volume_raw("0.10")), "u")
    assert not fallback.denied  # no specs from its terminal: the defaults apply


async def test_positions_are_valued_with_the_reported_contract_size(rig: Rig) -> None:
    await _report_specs(rig, ACCOUNT, contract_size=Decimal(1000))  # e.g. a cent account's contract
    await rig.open_long(ticket=9001, order=501)
    await rig.tick("EURUSD", "1.10110", "1.10120")
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    # 0.10 lot × 1,000 × (1.10110 − 1.10010) = 0.10 USD (the default 100,000 contract would make 10.00).
    assert book.state.profit == Decimal("0.10")
