"""Marking on integers (`PositionMark`, `AccountState.floating_units`) values a book exactly as the formulas
do: every position's profit and the account state, field for field and digit for digit, against MT5's profit
on exact fractions (`calc.to_money`) and `AccountState.updated` of the `Decimal` floating result — with
positions of several symbols, profits converted through other quotes (USDJPY, EURGBP in a USD account),
swaps on and off the currency's grid, repeated quotes, and new specs."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.engine.books import AccountBook, account_profit_fn
from aitrading.model import calc
from aitrading.model._exact import notional_decimal
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode, Side
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, price_raw
from aitrading.mt5.specs import DEFAULT_SPECS

SYMBOLS = ("EURUSD", "USDJPY", "EURGBP", "XAUUSD", "GBPJPY", "GBPUSD")
SPECS = {
    **DEFAULT_SPECS,
    "EURGBP": msgspec.structs.replace(
        DEFAULT_SPECS["EURUSD"], name="EURGBP", currency_profit="GBP", description="Euro vs Pound"
    ),
}
_enc = msgspec.json.Encoder()


class _Quotes:
    def __init__(self) -> None:
        self.quotes: dict[str, tuple[int, int]] = {}

    def quote(self, symbol: str) -> tuple[int, int] | None:
        return self.quotes.get(symbol)


class _Exact:
    """MT5's profit written out on fractions: not an `AccountProfit`, so `mark` takes the general path."""

    def __init__(self, specs: Mapping[str, SymbolSpec], rates: _Quotes) -> None:
        self._specs, self._rates = specs, rates

    def __call__(
        self, symbol: str, side: Side, volume: int, price_open: Fraction, close: Fraction
    ) -> Decimal:
        spec = self._specs[symbol]
        amount = (
            (close - price_open) * side.sign * Fraction(volume, VOLUME_SCALE) * Fraction(spec.contract_size)
        )
        loss = amount < 0
        rate = calc.conversion_rate(
            spec.currency_profit, "USD", self._rates, use_ask_direct=loss, use_ask_inverse=not loss
        )
        return calc.to_money(amount * rate, 2)


def _book(balance: str, margin: str) -> AccountBook:
    state = AccountState.of(
        login=1,
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_HEDGING,
        balance=balance,
        margin=margin,
    )
    return AccountBook(TenantId("t"), AccountId("1"), "SIM", state)


def _same(fast: AccountBook, exact: AccountBook) -> None:
    assert fast.positions == exact.positions
    assert _enc.encode(sorted(fast.positions.items())) == _enc.encode(sorted(exact.positions.items()))
    assert fast.state == exact.state
    assert _enc.encode(fast.state) == _enc.encode(exact.state)  # the same digits, not just equal values


_START = {
    "EURUSD": "1.10000",
    "USDJPY": "150.000",
    "EURGBP": "0.85000",
    "XAUUSD": "2000.00",
    "GBPJPY": "190.000",
    "GBPUSD": "1.25000",
}

position_st = st.tuples(
    st.sampled_from(SYMBOLS[:5]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from([VOLUME_SCALE // 100, VOLUME_SCALE // 10, VOLUME_SCALE, 7 * VOLUME_SCALE + 3]),
    st.integers(min_value=-(10**16), max_value=10**16),  # open price offset × volume (raw notional)
    st.sampled_from(["0", "-1.25", "3.5", "0.005", "-0.00"]),  # on the cent grid and off it
)
quote_st = st.tuples(
    st.sampled_from(SYMBOLS),
    st.integers(min_value=-(10**7), max_value=10**7),  # bid move from the start, raw
    st.integers(min_value=0, max_value=10**5),  # spread
)


@settings(max_examples=300, deadline=None)
@given(
    legs=st.lists(position_st, min_size=1, max_size=5),
    quotes=st.lists(quote_st, min_size=1, max_size=12),
    repeat=st.booleans(),
    margin=st.sampled_from(["0", "1102.80", "3.33"]),
    respec=st.integers(min_value=-1, max_value=11),
)
def test_marking_on_integers_equals_the_exact_formulas(
    legs: list[tuple[str, Side, int, int, str]],
    quotes: list[tuple[str, int, int]],
    repeat: bool,
    margin: str,
    respec: int,
) -> None:
    specs = dict(SPECS)
    rates = _Quotes()
    for symbol, start in _START.items():
        rates.quotes[symbol] = (price_raw(start), price_raw(start) + 10)
    fast, exact = _book("10000", margin), _book("10000", margin)
    for i, (symbol, side, volume, extra, swap) in enumerate(legs, start=1):
        cost = notional_decimal(max(1, price_raw(_START[symbol]) * volume + extra))
        position = Position(
            ticket=i, identifier=i, symbol=symbol, type=side, volume=volume, cost=cost, swap=Decimal(swap)
        )
        fast.positions[i] = exact.positions[i] = position
    profit = account_profit_fn(specs.__getitem__, "USD", rates, 2)
    reference = _Exact(specs, rates)
    if repeat:  # every quote twice: the second one costs nothing, and changes nothing
        quotes = [q for q in quotes for _ in range(2)]
    for n, (symbol, move, spread) in enumerate(quotes, start=1):
        if n == respec:  # the terminal reports another contract size: the marks are built again
            specs["EURUSD"] = msgspec.structs.replace(specs["EURUSD"], contract_size=Decimal(1000))
            specs["USDJPY"] = msgspec.structs.replace(specs["USDJPY"], contract_size=Decimal("2.5"))
            profit.forget_specs()
        bid = max(1, price_raw(_START[symbol]) + move)
        rates.quotes[symbol] = (bid, bid + spread)
        changed_fast = fast.mark(symbol, bid, bid + spread, profit, n)
        changed_exact = exact.mark(symbol, bid, bid + spread, reference, n)
        assert changed_fast == changed_exact
        _same(fast, exact)


def test_a_position_replaced_between_quotes_is_valued_afresh() -> None:
    rates = _Quotes()
    rates.quotes["USDJPY"] = (price_raw("150.000"), price_raw("150.010"))
    fast, exact = _book("5000", "250"), _book("5000", "250")
    volume = VOLUME_SCALE
    position = Position(
        ticket=1,
        identifier=1,
        symbol="USDJPY",
        type=Side.SELL,
        volume=volume,
        cost=notional_decimal(price_raw("151.000") * volume),
        profit=Decimal("123.45"),  # the terminal's figure, not this formula's
    )
    fast.positions[1] = exact.positions[1] = position
    profit = account_profit_fn(DEFAULT_SPECS.__getitem__, "USD", rates, 2)
    reference = _Exact(DEFAULT_SPECS, rates)
    for n, (bid, swap) in enumerate([("150.000", None), ("150.000", "-7.5"), ("149.500", None)], start=1):
        if swap is not None:  # a deal or a reconciliation puts another object in the books
            fast.positions[1] = exact.positions[1] = msgspec.structs.replace(
                fast.positions[1], swap=Decimal(swap)
            )
        raw = price_raw(bid)
        rates.quotes["USDJPY"] = (raw, raw + 10)
        assert fast.mark("USDJPY", raw, raw + 10, profit, n) == exact.mark(
            "USDJPY",
            raw,
            raw + 10,
            reference,
            n,
        )
        _same(fast, exact)


def test_the_same_price_keeps_the_profit_but_the_conversion_rate_still_counts() -> None:
    rates = _Quotes()
    rates.quotes["GBPUSD"] = (price_raw("1.25000"), price_raw("1.25010"))
    fast, exact = _book("1000", "10"), _book("1000", "10")
    volume = VOLUME_SCALE
    position = Position(
        ticket=1,
        identifier=1,
        symbol="EURGBP",
        type=Side.BUY,
        volume=volume,
        cost=notional_decimal(price_raw("0.84000") * volume),
    )
    fast.positions[1] = exact.positions[1] = position
    profit = account_profit_fn(SPECS.__getitem__, "USD", rates, 2)
    reference = _Exact(SPECS, rates)
    bid = price_raw("0.85000")
    for n, gbpusd in enumerate(["1.25000", "1.26000", "1.26000", "1.24000"], start=1):
        rates.quotes["GBPUSD"] = (price_raw(gbpusd), price_raw(gbpusd) + 10)
        assert fast.mark("EURGBP", bid, bid + 10, profit, n) == exact.mark(
            "EURGBP",
            bid,
            bid + 10,
            reference,
            n,
        )
        _same(fast, exact)
    assert fast.positions[1].profit == Decimal("1240.00")  # 1 lot × 0.01 = 1,000 GBP at 1.24000


def test_a_price_that_does_not_move_the_profit_changes_nothing_but_the_position() -> None:
    fast = _book("1000", "0")
    volume = VOLUME_SCALE // 100  # 0.01 lot: 1 point moves the profit 0.001 USD
    fast.positions[1] = Position(
        ticket=1,
        identifier=1,
        symbol="EURUSD",
        type=Side.BUY,
        volume=volume,
        cost=notional_decimal(PRICE_SCALE * volume),
    )
    profit = account_profit_fn(DEFAULT_SPECS.__getitem__, "USD", _Quotes(), 2)
    assert fast.mark("EURUSD", PRICE_SCALE + 10**4, PRICE_SCALE + 10**4, profit, 1)  # +0.01 USD
    state = fast.state
    assert not fast.mark("EURUSD", PRICE_SCALE + 10**4 + 1, PRICE_SCALE + 10**4 + 1, profit, 2)
    assert fast.state is state
    assert fast.positions[1].price_current == PRICE_SCALE + 10**4 + 1
    assert fast.positions[1].time_update_ns == 2


def test_half_a_cent_rounds_away_from_zero_as_the_exact_formula_does() -> None:
    rates = _Quotes()
    rates.quotes["USDJPY"] = (price_raw("150.000"), price_raw("150.000"))
    fast, exact = _book("1000", "100"), _book("1000", "100")
    volume = VOLUME_SCALE // 100  # 0.01 lot: 0.000005 is half a cent
    legs = [
        ("EURUSD", Side.BUY, "1.10000"),
        ("EURUSD", Side.SELL, "1.10000"),
        ("USDJPY", Side.BUY, "150.000"),
        ("GBPJPY", Side.BUY, "190.000"),
        ("GBPJPY", Side.SELL, "190.000"),
    ]
    for i, (symbol, side, opened) in enumerate(legs, start=1):
        fast.positions[i] = exact.positions[i] = Position(
            ticket=i,
            identifier=i,
            symbol=symbol,
            type=side,
            volume=volume,
            cost=notional_decimal(price_raw(opened) * volume),
        )
    profit = account_profit_fn(SPECS.__getitem__, "USD", rates, 2)
    reference = _Exact(SPECS, rates)
    cases = [
        ("EURUSD", "1.100005", {1: "0.01", 2: "-0.01"}),
        ("EURUSD", "1.099995", {1: "-0.01", 2: "0.01"}),
        ("EURUSD", "1.100015", {1: "0.02", 2: "-0.02"}),  # 0.015 → 0.02
        ("USDJPY", "150.00075", {3: "0.00"}),  # 0.75 JPY at 150.00075: just under half a cent
        ("USDJPY", "100.000", {3: "-500.00"}),
        ("GBPJPY", "190.0005", {4: "0.01", 5: "-0.01"}),  # 0.5 JPY at USDJPY 100: half a cent
    ]
    for n, (symbol, price, want) in enumerate(cases, start=1):
        raw = price_raw(price)
        rates.quotes[symbol] = (raw, raw)
        assert fast.mark(symbol, raw, raw, profit, n) == exact.mark(symbol, raw, raw, reference, n)
        _same(fast, exact)
        for ident, value in want.items():
            assert str(fast.positions[ident].profit) == value


def test_another_profit_function_builds_its_own_marks() -> None:
    small = {**SPECS, "EURUSD": msgspec.structs.replace(SPECS["EURUSD"], contract_size=Decimal(10))}
    fast, exact = _book("1000", "50"), _book("1000", "50")
    volume = VOLUME_SCALE
    for i, symbol in enumerate(["EURUSD", "XAUUSD"], start=1):
        fast.positions[i] = exact.positions[i] = Position(
            ticket=i,
            identifier=i,
            symbol=symbol,
            type=Side.BUY,
            volume=volume,
            cost=notional_decimal(price_raw(_START[symbol]) * volume),
        )
    rates = _Quotes()
    steps = [(SPECS, "EURUSD", "1.10100"), (small, "EURUSD", "1.10100"), (small, "XAUUSD", "2001.00")]
    for n, (specs, symbol, price) in enumerate(steps, start=1):
        profit = account_profit_fn(specs.__getitem__, "USD", rates, 2)  # a new function each time
        raw = price_raw(price)
        assert fast.mark(symbol, raw, raw, profit, n) == exact.mark(symbol, raw, raw, _Exact(specs, rates), n)
        _same(fast, exact)
    assert fast.positions[1].profit == Decimal("0.01")  # 1 lot of 10 EUR × 0.001
