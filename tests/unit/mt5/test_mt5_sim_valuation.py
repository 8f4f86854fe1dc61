"""The simulated broker's per-tick valuation (`Ledger._mark`, integer arithmetic for speed) equals its
exact-fraction profit function (`Ledger.profit_fn`, MT5's formula) to the last cent, cross-currency too."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.model._exact import notional_decimal
from aitrading.model.calc import conversion_rate, margin_exact, to_money
from aitrading.model.enums import Side
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE
from aitrading.mt5.sim._ledger import Ledger
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.book import Book
from aitrading.mt5.specs import DEFAULT_SPECS

prices = st.integers(min_value=PRICE_SCALE // 10, max_value=300 * PRICE_SCALE)


def _usd_hedging_ledger() -> Ledger:
    """A fresh ledger of the default simulated account: USD, hedging."""
    account = SimAccount()
    return Ledger(
        DEFAULT_SPECS,
        account,
        ExecutionSettings(),
        Book(login=account.login, currency="USD", hedging=True, balance=account.balance),
    )


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
    ledger = _usd_hedging_ledger()
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
    marked = msgspec.structs.replace(position, price_current=price, profit=ledger._profit_at(position, price))
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
    ledger = _usd_hedging_ledger()
    spec = DEFAULT_SPECS[symbol]
    for price, bid, spread in steps:  # again at new prices and quotes: the memo must not go stale
        for converting in ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD"):
            tick = Tick(feed="SIM", symbol=converting, time_msc=1, bid=bid, ask=bid + spread)
            ledger.quotes.ticks[converting] = tick
        want = margin_exact(
            spec,
            side,
            volume,
            price,
            leverage=ledger.account.leverage,
            account_currency="USD",
            rates=ledger.quotes,
        )
        assert Fraction(*ledger._symbol_margin(spec, side, volume, price)) == want


def _fraction_profit(
    ledger: Ledger, symbol: str, side: Side, volume: int, open_: Fraction, close: Fraction
) -> str:
    """MT5's profit as `Ledger.profit_fn` wrote it before its integer form: exact fractions, `to_money`."""
    spec = DEFAULT_SPECS[symbol]
    amount = (close - open_) * side.sign * Fraction(volume, VOLUME_SCALE) * Fraction(spec.contract_size)
    loss = amount < 0
    rate = conversion_rate(
        spec.currency_profit, "USD", ledger.quotes, use_ask_direct=loss, use_ask_inverse=not loss
    )
    return str(to_money(amount * rate, 2))


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "USDJPY", "XAUUSD", "GBPJPY", "EURJPY"]),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    volume=st.integers(min_value=1, max_value=500 * VOLUME_SCALE),
    cost=st.integers(min_value=1, max_value=10**20),
    close=prices,
    bid=prices,
    spread=st.integers(min_value=0, max_value=10**7),
)
def test_profit_fn_equals_the_exact_fraction_formula_to_the_last_cent(
    symbol: str, side: Side, volume: int, cost: int, close: int, bid: int, spread: int
) -> None:
    ledger = _usd_hedging_ledger()
    for converting in ("USDJPY", "GBPUSD", "EURUSD"):
        ledger.quotes.ticks[converting] = Tick(
            feed="SIM", symbol=converting, time_msc=1, bid=bid, ask=bid + spread
        )
    open_ = Fraction(cost, volume * PRICE_SCALE)  # an average open price off the price grid
    got = ledger.profit_fn(symbol, side, volume, open_, Fraction(close, PRICE_SCALE))
    assert str(got) == _fraction_profit(ledger, symbol, side, volume, open_, Fraction(close, PRICE_SCALE))


@settings(max_examples=300, deadline=None)
@given(
    balance=st.integers(min_value=-(10**9), max_value=10**9),
    legs=st.lists(
        st.tuples(
            st.sampled_from(["EURUSD", "USDJPY", "XAUUSD"]),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(min_value=VOLUME_SCALE // 100, max_value=50 * VOLUME_SCALE),
        ),
        max_size=3,
    ),
    bid=st.integers(min_value=PRICE_SCALE // 2, max_value=2 * PRICE_SCALE),
    level=st.decimals(min_value=-1000, max_value=100_000, places=2),
)
def test_the_account_read_without_its_state_agrees_with_the_state(
    balance: int, legs: list[tuple[str, Side, int]], bid: int, level: Decimal
) -> None:
    account = SimAccount()
    positions = {
        i: Position(
            ticket=i,
            identifier=i,
            symbol=symbol,
            type=side,
            volume=volume,
            cost=notional_decimal(bid * volume),
        )
        for i, (symbol, side, volume) in enumerate(legs, start=1)
    }
    book = Book(
        login=account.login,
        currency="USD",
        hedging=True,
        balance=Decimal(balance).scaleb(-2),
        positions=positions,
    )
    ledger = Ledger(DEFAULT_SPECS, account, ExecutionSettings(), book)
    for symbol in ("EURUSD", "USDJPY", "XAUUSD"):
        ledger.quotes.ticks[symbol] = Tick(feed="SIM", symbol=symbol, time_msc=1, bid=bid, ask=bid + 20_000)
    ledger.revalue()
    state = ledger.state
    assert str(ledger.balance) == str(state.balance)
    assert str(ledger.equity) == str(state.equity)
    found = state.margin_level
    levels = [level, Decimal(30), Decimal(50), Decimal("99.99"), Decimal(100), Decimal("100.01")]
    if found is not None:
        levels += [found, found - Decimal("0.01"), found + Decimal("0.01")]
    for at in levels:
        assert ledger.level_at_most(at) is (found is not None and found <= at)
    assert ledger.margin_call is (
        state.margin_level is not None and state.margin_level <= account.margin_so_call
    )
