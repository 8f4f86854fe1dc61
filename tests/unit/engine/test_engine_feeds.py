"""The tick path: a tick values only the accounts on its feed, and follows accounts that change feed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import ACCOUNT, FEED, Rig, announce_account, make_rig

from aitrading.model.ids import AccountId
from aitrading.model.market import Tick
from aitrading.model.values import price_raw, volume_raw

OTHER = AccountId("20002")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(tmp_path):
        yield r


def _tick(rig: Rig, feed: str, bid: str, ask: str) -> Tick:
    return Tick(
        feed=feed, symbol="EURUSD", time_msc=rig.clock.now_ms(), bid=price_raw(bid), ask=price_raw(ask)
    )


async def test_a_tick_values_only_the_accounts_on_its_feed(rig: Rig) -> None:
    await announce_account(rig, rig.tenant, OTHER)
    other = rig.engine.book(rig.tenant, OTHER)
    mine = rig.engine.book(rig.tenant, ACCOUNT)
    assert other is not None
    assert mine is not None
    other.feed = "OTHERBROKER"
    await rig.engine.on_tick(_tick(rig, "OTHERBROKER", "1.10000", "1.10010"))
    await rig.open_long(ticket=501)
    await rig.open_long(ticket=502, account=OTHER)
    assert [b.account for b in rig.engine.books_on(FEED)] == [ACCOUNT]
    assert [b.account for b in rig.engine.books_on("OTHERBROKER")] == [OTHER]
    # 0.10 lot × 100,000 × (1.10110 − 1.10010) = 10.00 USD, marked at the bid on SIM only.
    await rig.engine.on_tick(_tick(rig, FEED, "1.10110", "1.10120"))
    assert mine.state.profit == Decimal("10.00")
    assert other.state.profit == 0
    other.feed = FEED  # the agent now says the account's terminal is on SIM: the index follows
    await rig.engine.on_tick(_tick(rig, FEED, "1.10210", "1.10220"))
    assert other.state.profit == Decimal("20.00")
    assert mine.state.profit == Decimal("20.00")
    assert volume_raw("0.10") == next(iter(other.positions.values())).volume


async def test_an_account_that_moves_feed_converts_its_profits_with_the_new_feeds_quotes(rig: Rig) -> None:
    """Review finding: the profit function kept the quotes of the feed the account had when it was made."""
    book = rig.engine.book(rig.tenant, ACCOUNT)
    assert book is not None
    await rig.open_long(ticket=601)
    await rig.engine.on_tick(_tick(rig, FEED, "1.10110", "1.10120"))
    first = rig.engine._profit_fn(book)
    assert first._rates.quote("EURUSD") is not None  # this feed's quote
    book.feed = "OTHERBROKER"
    moved = rig.engine._profit_fn(book)
    assert moved is not first
    assert moved._rates.quote("EURUSD") is None  # no OTHERBROKER quote yet: not SIM's
    await rig.engine.on_tick(_tick(rig, "OTHERBROKER", "1.10210", "1.10220"))
    assert moved._rates.quote("EURUSD") == (
        _tick(rig, "X", "1.10210", "1.10220").bid,
        _tick(rig, "X", "1.10210", "1.10220").ask,
    )
    assert book.state.profit == Decimal("20.00")
    book.feed = FEED
    assert rig.engine._profit_fn(book) is not moved


async def test_a_tick_takes_the_locked_path_when_asyncio_names_its_waiters_otherwise(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock-free tick path reads `asyncio.Lock._waiters`; without it every tick takes the lock."""
    import asyncio

    assert hasattr(asyncio.Lock(), "_waiters")  # the attribute the fast path reads (3.11–3.13)
    await rig.open_long(ticket=602)
    locked: list[int] = []

    async def spy(coro: Coroutine[Any, Any, None]) -> None:  # the locked path, without a real lock
        locked.append(1)
        await coro

    monkeypatch.setattr(rig.engine, "_locked", spy)
    await rig.engine.on_tick(_tick(rig, FEED, "1.10110", "1.10120"))
    assert locked == []  # free lock, nobody waiting: marked without it
    monkeypatch.setattr(rig.engine, "_lock", type("NoWaiters", (), {"locked": lambda self: False})())
    await rig.engine.on_tick(_tick(rig, FEED, "1.10210", "1.10220"))
    assert locked == [1]
