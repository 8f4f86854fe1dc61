"""The engine's valuation fast paths equal the formulas they replace, to the last digit: the profit
function (one numerator over one denominator) equals MT5's profit on exact fractions rounded by
`calc.to_money`, and marking a book (open prices memoised) equals `positions.mark` of each position."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.engine.books import AccountBook, account_profit_fn
from aitrading.model import calc
from aitrading.model._exact import notional_decimal
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode, Side
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.positions import Position, mark
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, price_raw
from aitrading.mt5.specs import DEFAULT_SPECS


class _Quotes:
    def __init__(self, quotes: dict[str, tuple[int, int]]) -> None:
        self._quotes = quotes

    def quote(self, symbol: str) -> tuple[int, int] | None:
        return self._quotes.get(symbol)


def _reference(
    symbol: str, side: Side, volume: int, price_open: Fraction, price_close: Fraction, rates: _Quotes
) -> Decimal:
    """The formula as written before the fast path: four exact fraction products, then `to_money`."""
    spec = DEFAULT_SPECS[symbol]
    amount = (
        (price_close - price_open) * side.sign * Fraction(volume, VOLUME_SCALE) * Fraction(spec.contract_size)
    )
    loss = amount < 0
    rate = calc.conversion_rate(
        spec.currency_profit, "USD", rates, use_ask_direct=loss, use_ask_inverse=not loss
    )
    return calc.to_money(amount * rate, 2)


prices = st.integers(min_value=1, max_value=300 * PRICE_SCALE)


@settings(max_examples=400, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "USDJPY", "XAUUSD", "GBPJPY", "EURJPY"]),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    volume=st.integers(min_value=1, max_value=500 * VOLUME_SCALE),
    cost=st.integers(min_value=1, max_value=10**15),
    close=prices,
    bid=prices,
    spread=st.integers(min_value=0, max_value=10**7),
)
def test_account_profit_equals_the_exact_formula_to_the_last_cent(
    symbol: str, side: Side, volume: int, cost: int, close: int, bid: int, spread: int
) -> None:
    rates = _Quotes(dict.fromkeys(("USDJPY", "GBPUSD"), (bid, bid + spread)))
    profit = account_profit_fn(DEFAULT_SPECS.__getitem__, "USD", rates, 2)
    price_open = Fraction(cost, volume)  # an average open price, off the 1e-9 grid as a rule
    price_close = Fraction(close, PRICE_SCALE)
    got = profit(symbol, side, volume, price_open, price_close)
    want = _reference(symbol, side, volume, price_open, price_close, rates)
    assert got == want
    assert str(got) == str(want)


@settings(max_examples=200, deadline=None)
@given(
    legs=st.lists(
        st.tuples(
            st.sampled_from([Side.BUY, Side.SELL]),
            st.sampled_from([VOLUME_SCALE // 10, VOLUME_SCALE, 7 * VOLUME_SCALE + 3]),  # legs share volumes
            st.integers(min_value=0, max_value=10**14),  # open prices up to ~1.0 apart
        ),
        min_size=1,
        max_size=4,
    ),
    quotes=st.lists(st.tuples(prices, st.integers(min_value=0, max_value=10**6)), min_size=1, max_size=3),
)
def test_marking_a_book_values_each_position_as_positions_mark_does(
    legs: list[tuple[Side, int, int]], quotes: list[tuple[int, int]]
) -> None:
    state = AccountState.of(
        login=1, currency="USD", leverage=100, margin_mode=MarginMode.RETAIL_HEDGING, balance=0
    )
    book = AccountBook(TenantId("t"), AccountId("1"), "SIM", state)
    for i, (side, volume, extra) in enumerate(legs, start=1):
        cost = notional_decimal(price_raw("1.10000") * volume + extra)
        book.positions[i] = Position(
            ticket=i, identifier=i, symbol="EURUSD", type=side, volume=volume, cost=cost
        )
    profit = account_profit_fn(DEFAULT_SPECS.__getitem__, "USD", _Quotes({}), 2)
    for n, (bid, spread) in enumerate(quotes, start=1):  # again at new quotes: the memo must not go stale
        before = dict(book.positions)
        book.mark("EURUSD", bid, bid + spread, profit, n)
        for ident, p in before.items():
            price = bid if p.type is Side.BUY else bid + spread
            assert book.positions[ident] == mark(p, price, profit, n)
        assert book.state.profit == sum((p.profit for p in book.positions.values()), Decimal(0))
