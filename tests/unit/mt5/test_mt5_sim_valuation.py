"""The simulated broker's per-tick valuation (`Ledger._mark`, integer arithmetic for speed) equals its
exact-fraction profit function (`Ledger.profit_fn`, MT5's formula) to the last cent, cross-currency too."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.model._exact import notional_decimal
from aitrading.model.calc import margin_exact
from aitrading.model.enums import Side
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE
from aitrading.mt5.sim._ledger import Ledger
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.book import Book
from aitrading.mt5.specs import DEFAULT_SPECS

prices = st.integers(min_value=PRICE_SCALE // 10, max_value=300 * PRICE_SCALE)


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "USDJPY", "XAUUSD", "GBPJPY"]),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    volume=st.integers(min_value=1, max_value=500 * VOLUME_SCALE),
    open_price=prices,
    extra_cost=st.integers(min_value=0, max_value=10**14),
    price=prices,
    usdjpy=prices,
)
def test_marking_a_position_equals_the_exact_profit_formula(
    symbol: str, side: Side, volume: int, open_price: int, extra_cost: int, price: int, usdjpy: int
) -> None:
    account = SimAccount()
    ledger = Ledger(
        DEFAULT_SPECS,
        account,
        ExecutionSettings(),
        Book(login=account.login, currency="USD", hedging=True, balance=account.balance),
    )
    ledger.quotes.ticks["USDJPY"] = Tick(
        feed="SIM", symbol="USDJPY", time_msc=1, bid=usdjpy, ask=usdjpy + 10_000
    )
    cost_raw = open_price * volume + extra_cost  # an average open price off the price grid
    position = Position(
        ticket=1,
        identifier=1,
        symbol=symbol,
        type=side,
        volume=volume,
        cost=notional_decimal(cost_raw),
    )
    assert position.cost_raw == cost_raw
    marked = ledger._mark(position, price)
    want = ledger.profit_fn(symbol, side, volume, position.price_open, Fraction(price, PRICE_SCALE))
    assert marked.price_current == price
    assert str(marked.profit) == str(want)


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "USDJPY", "XAUUSD", "GBPJPY", "EURJPY"]),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    volume=st.integers(min_value=1, max_value=500 * VOLUME_SCALE),
    steps=st.lists(
        st.tuples(prices, prices, st.integers(min_value=0, max_value=10**7)), min_size=1, max_size=4
    ),
)
def test_margin_equals_margin_exact_at_every_quote_of_the_converting_symbol(
    symbol: str, side: Side, volume: int, steps: list[tuple[int, int, int]]
) -> None:
    account = SimAccount()
    ledger = Ledger(
        DEFAULT_SPECS,
        account,
        ExecutionSettings(),
        Book(login=account.login, currency="USD", hedging=True, balance=account.balance),
    )
    spec = DEFAULT_SPECS[symbol]
    for price, bid, spread in steps:  # again at new prices and quotes: the memo must not go stale
        for converting in ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD"):
            tick = Tick(feed="SIM", symbol=converting, time_msc=1, bid=bid, ask=bid + spread)
            ledger.quotes.ticks[converting] = tick
        want = margin_exact(
            spec, side, volume, price, leverage=account.leverage, account_currency="USD", rates=ledger.quotes
        )
        assert ledger._symbol_margin(spec, side, volume, price) == want
