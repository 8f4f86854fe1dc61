"""The engine's notional (what the gross-exposure limit sums) equals the `Fraction` formula it replaced:
one integer numerator over one denominator, the same digits after rounding, 1:1 without a rate as before."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.engine.books import AccountBook
from aitrading.engine.engine import TradingEngine
from aitrading.engine.memory import MemoryAudit, MemoryStore, MemoryWriter
from aitrading.model import calc
from aitrading.model._exact import fraction_to_money
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.market import Tick
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE
from aitrading.mt5.specs import DEFAULT_SPECS


class _Quotes:
    def __init__(self, quotes: dict[str, tuple[int, int]]) -> None:
        self._quotes = quotes

    def quote(self, symbol: str) -> tuple[int, int] | None:
        return self._quotes.get(symbol)


def _reference(
    symbol: str, volume: int, price: int, quotes: dict[str, tuple[int, int]], digits: int
) -> Decimal:
    """The formula as written before: exact fractions, the ask converting, 1:1 without a rate."""
    spec = DEFAULT_SPECS[symbol]
    amount = Fraction(abs(volume * price), VOLUME_SCALE * PRICE_SCALE) * Fraction(spec.contract_size)
    if spec.currency_profit != "USD":
        with contextlib.suppress(ValueError):
            amount *= calc.conversion_rate(
                spec.currency_profit, "USD", _Quotes(quotes), use_ask_direct=True, use_ask_inverse=False
            )
    return fraction_to_money(abs(amount), digits)


@settings(max_examples=150, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "USDJPY", "XAUUSD", "GBPJPY", "EURJPY"]),
    volume=st.integers(min_value=-500 * VOLUME_SCALE, max_value=500 * VOLUME_SCALE),
    price=st.integers(min_value=1, max_value=300 * PRICE_SCALE),
    usdjpy=st.none() | st.tuples(st.integers(1, 200 * PRICE_SCALE), st.integers(0, 10**7)),
    digits=st.integers(min_value=0, max_value=4),
)
def test_notional_equals_the_fraction_formula_to_the_last_digit(
    symbol: str, volume: int, price: int, usdjpy: tuple[int, int] | None, digits: int
) -> None:
    clock = TestClock()
    store, audit = MemoryStore(), MemoryAudit(clock)
    engine = TradingEngine(MemoryBus(), store, audit, clock, DEFAULT_SPECS, writer=MemoryWriter(store, audit))
    quotes: dict[str, tuple[int, int]] = {}
    if usdjpy is not None:  # without it JPY profits have no rate and are valued 1:1
        bid, spread = usdjpy
        quotes["USDJPY"] = (bid, bid + spread)
        asyncio.run(engine.on_tick(Tick(feed="SIM", symbol="USDJPY", time_msc=1, bid=bid, ask=bid + spread)))
    state = AccountState.of(
        login=1, currency="USD", leverage=100, margin_mode=MarginMode.RETAIL_HEDGING, balance=0, digits=digits
    )
    book = AccountBook(TenantId("t"), AccountId("1"), "SIM", state)
    got = engine.notional(book)(symbol, volume, price)
    want = _reference(symbol, volume, price, quotes, digits)
    assert got == want
    assert got.as_tuple() == want.as_tuple()
    kept = engine._notional_of(book)  # the one the engine keeps per account for its risk checks
    assert engine._notional_of(book) is kept
    assert kept(symbol, volume, price).as_tuple() == want.as_tuple()
    book.state = AccountState.of(  # another currency's digits: made again
        login=1,
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_HEDGING,
        balance=0,
        digits=digits + 1,
    )
    again = engine._notional_of(book)
    assert again is not kept
    assert again(symbol, volume, price).as_tuple() == engine.notional(book)(symbol, volume, price).as_tuple()
