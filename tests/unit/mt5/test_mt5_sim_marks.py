"""The simulated broker's per-quote valuation (`_marks.Mark`: integers, skipped when a quote changes
nothing, money made when read) equals MT5's formulas on exact fractions, quote after quote: positions,
margin, the account state and the stop-out and margin-call flags, cross-currency and at the boundaries."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from mt5_trading_helpers import EURGBP

from aitrading.model._exact import div_half_away, div_half_even, notional_decimal, units_of
from aitrading.model.accounts import AccountState
from aitrading.model.calc import conversion_rate, margin_exact, to_money
from aitrading.model.enums import Side
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, money
from aitrading.mt5.sim._ledger import Ledger
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.book import Book
from aitrading.mt5.specs import DEFAULT_SPECS

# A symbol without a margin formula (FUTURES): its margin stays the last known one.
EURUSD_FUT = msgspec.structs.replace(DEFAULT_SPECS["EURUSD"], name="EURUSDF", trade_calc_mode=1)
SPECS = {**DEFAULT_SPECS, "EURGBP": EURGBP, "EURUSDF": EURUSD_FUT}
SYMBOLS = ["EURUSD", "USDJPY", "EURGBP", "XAUUSD", "GBPJPY", "EURJPY", "EURUSDF"]
QUOTED = ["EURUSD", "USDJPY", "EURGBP", "XAUUSD", "GBPJPY", "EURJPY", "GBPUSD", "EURUSDF"]
ENC = msgspec.json.Encoder(decimal_format="string")  # "0.00" vs "0" vs "-0.00" all count
prices = st.integers(min_value=PRICE_SCALE // 10, max_value=300 * PRICE_SCALE)
swaps = st.sampled_from(["0", "0.00", "-1.25", "3.10", "0.001", "-0.004", "-7"]).map(Decimal)


def _ledger(positions: dict[int, Position], balance: Decimal, *, hedging: bool = True) -> Ledger:
    account = SimAccount(leverage=100)
    book = Book(login=account.login, currency="USD", hedging=hedging, balance=balance, positions=positions)
    return Ledger(SPECS, account, ExecutionSettings(), book)


class _Reference:
    """The valuation as MT5's formulas give it, on `Fraction`s: what the ledger must show."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.positions = dict(ledger.book.positions)
        self.remembered: dict[str, Fraction] = {}

    def revalue(self, symbol: str | None) -> None:
        quotes = self.ledger.quotes
        for key, p in self.positions.items():
            spec = SPECS[p.symbol]
            converts = "USD" not in (spec.currency_profit, spec.currency_margin)
            tick = quotes.ticks.get(p.symbol)
            if tick is None or (symbol is not None and p.symbol != symbol and not converts):
                continue
            price = p.type.exit_price(tick.bid, tick.ask)
            amount = (
                (Fraction(price, PRICE_SCALE) - p.price_open)
                * p.type.sign
                * Fraction(p.volume, VOLUME_SCALE)
                * Fraction(spec.contract_size)
            )
            loss = amount < 0
            try:
                rate = conversion_rate(
                    spec.currency_profit, "USD", quotes, use_ask_direct=loss, use_ask_inverse=not loss
                )
            except ValueError:
                continue
            self.positions[key] = msgspec.structs.replace(
                p, price_current=price, profit=to_money(amount * rate, 2)
            )

    def margin(self) -> Fraction:
        """The larger leg of each symbol at its average open price (hedged legs count once)."""
        legs: dict[tuple[str, Side], tuple[int, int]] = {}
        for p in self.positions.values():
            volume, cost = legs.get((p.symbol, p.type), (0, 0))
            legs[(p.symbol, p.type)] = (volume + p.volume, cost + p.cost_raw)
        total = Fraction(0)
        for symbol in sorted({symbol for symbol, _ in legs}):
            buy = legs.get((symbol, Side.BUY), (0, 0))
            sell = legs.get((symbol, Side.SELL), (0, 0))
            side, (volume, cost) = (Side.BUY, buy) if buy[0] >= sell[0] else (Side.SELL, sell)
            try:
                amount = margin_exact(
                    SPECS[symbol],
                    side,
                    volume,
                    div_half_even(cost, volume),
                    leverage=100,
                    account_currency="USD",
                    rates=self.ledger.quotes,
                )
            except ValueError:
                amount = self.remembered.get(symbol, Fraction(0))
            self.remembered[symbol] = amount
            total += amount
        return total

    def state(self) -> AccountState:
        account = self.ledger.account
        return AccountState.of(
            login=account.login,
            currency="USD",
            leverage=100,
            margin_mode=account.mode,
            balance=self.ledger.book.balance,
            floating=sum((p.profit + p.swap for p in self.positions.values()), Decimal(0)),
            margin=to_money(self.margin(), 2),
        )


def _check(ledger: Ledger, reference: _Reference) -> None:
    assert ENC.encode(ledger.book.positions) == ENC.encode(reference.positions)
    want = reference.state()
    assert ENC.encode(ledger.state) == ENC.encode(want)
    assert str(ledger.equity) == str(want.equity)
    assert str(ledger.balance) == str(want.balance)
    level = want.margin_level
    account = ledger.account
    assert ledger.margin_call is (level is not None and level <= account.margin_so_call)
    assert ledger.stop_out is (level is not None and level <= account.margin_so_so)
    for at in [Decimal(30), Decimal("99.99"), Decimal(100), *([] if level is None else [level, level - 1])]:
        assert ledger.level_at_most(at) is (level is not None and level <= at)


@settings(max_examples=250, deadline=None)
@given(
    legs=st.lists(
        st.tuples(
            st.sampled_from(SYMBOLS),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(min_value=1, max_value=50 * VOLUME_SCALE),
            prices,
            st.integers(min_value=0, max_value=10**12),
            swaps,
        ),
        min_size=1,
        max_size=3,
    ),
    balance=st.integers(min_value=-(10**7), max_value=10**9),
    hedging=st.booleans(),
    quotes=st.lists(
        st.tuples(
            st.sampled_from(QUOTED),
            prices,
            st.integers(min_value=0, max_value=10**7),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_every_quote_values_the_books_as_the_exact_formulas_do(
    legs: list[tuple[str, Side, int, int, int, Decimal]],
    balance: int,
    hedging: bool,
    quotes: list[tuple[str, int, int, bool]],
) -> None:
    positions = {
        i: Position(
            ticket=i,
            identifier=i,
            symbol=symbol,
            type=side,
            volume=volume,
            cost=notional_decimal(price * volume + extra),  # an average open price off the price grid
            swap=swap,
        )
        for i, (symbol, side, volume, price, extra, swap) in enumerate(legs, start=1)
    }
    ledger = _ledger(positions, Decimal(balance).scaleb(-2), hedging=hedging)
    reference = _Reference(ledger)
    reference.revalue(None)
    _check(ledger, reference)
    for i, (symbol, bid, spread, everything) in enumerate(quotes):
        ledger.quotes.ticks[symbol] = Tick(feed="SIM", symbol=symbol, time_msc=i, bid=bid, ask=bid + spread)
        ledger.revalue(None if everything else symbol)
        reference.revalue(None if everything else symbol)
        _check(ledger, reference)
        # The same quote again changes nothing (the marks skip it).
        ledger.revalue(symbol)
        _check(ledger, reference)


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from([Side.BUY, Side.SELL]),
    volume=st.integers(min_value=VOLUME_SCALE // 100, max_value=20 * VOLUME_SCALE),
    bid=st.integers(min_value=PRICE_SCALE // 2, max_value=2 * PRICE_SCALE),
    target=st.sampled_from([0, 2999, 3000, 3001, 4999, 5000, 5001, 9999, 10_000]),
)
def test_stop_out_and_margin_call_flip_exactly_at_their_levels(
    side: Side, volume: int, bid: int, target: int
) -> None:
    """Equity moved a cent at a time across the level: the flags follow `state.margin_level`."""
    position = Position(
        ticket=1, identifier=1, symbol="EURUSD", type=side, volume=volume, cost=notional_decimal(bid * volume)
    )
    ledger = _ledger({1: position}, Decimal(0))
    ledger.quotes.ticks["EURUSD"] = Tick(feed="SIM", symbol="EURUSD", time_msc=1, bid=bid, ask=bid + 15_000)
    ledger.revalue()
    state = ledger.state
    margin = units_of(state.margin, 100)
    floating = units_of(state.profit, 100)
    assert margin
    assert floating is not None
    equity_at = target * margin // 10_000  # about `target` hundredths of a percent
    for equity in range(equity_at - 3, equity_at + 4):
        ledger.book.balance = Decimal(equity - floating).scaleb(-2)
        ledger.revalue("EURUSD")
        state = ledger.state
        assert str(state.equity) == str(Decimal(equity).scaleb(-2))
        level = state.margin_level
        assert level == Decimal(div_half_away(equity * 10_000, margin)).scaleb(-2)
        assert ledger.stop_out is (level <= ledger.account.margin_so_so)
        assert ledger.margin_call is (level <= ledger.account.margin_so_call)


def test_a_position_replaced_in_the_book_is_marked_again_even_at_the_same_price() -> None:
    position = Position(
        ticket=1, identifier=1, symbol="EURUSD", type=Side.BUY, volume=VOLUME_SCALE, cost=notional_decimal(0)
    )
    ledger = _ledger({1: position}, Decimal(1000))
    ledger.quotes.ticks["EURUSD"] = Tick(
        feed="SIM", symbol="EURUSD", time_msc=1, bid=PRICE_SCALE, ask=PRICE_SCALE
    )
    ledger.revalue("EURUSD")
    marked = ledger.book.positions[1]
    assert marked.profit == Decimal(100_000)
    # A new SL (or a fill, or a swap) replaces the object with a stale profit: the next quote re-marks it.
    ledger.book.positions[1] = msgspec.structs.replace(marked, sl=1, profit=Decimal(7), swap=Decimal("-1.5"))
    ledger.revalue("EURUSD")
    assert ledger.book.positions[1].profit == Decimal(100_000)
    assert str(ledger.equity) == "100998.50"
    # A closed position's mark is forgotten with it.
    del ledger.book.positions[1]
    ledger.revalue()
    assert str(ledger.equity) == "1000.00"
    assert str(ledger.state.margin) == "0.00"
    assert not ledger._marks


@given(
    value=st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**6), max_value=10**6)
)
def test_minor_units_are_exact_or_none(value: Decimal) -> None:
    minor = units_of(value, 100)
    if minor is None:
        assert money(value) != value
    else:
        assert Decimal(minor).scaleb(-2) == value


def test_half_a_cent_rounds_away_from_zero_either_way() -> None:
    lot_100th = VOLUME_SCALE // 100
    buy = Position(
        ticket=1,
        identifier=1,
        symbol="EURUSD",
        type=Side.BUY,
        volume=lot_100th,
        cost=notional_decimal(PRICE_SCALE * lot_100th),
    )
    sell = msgspec.structs.replace(buy, ticket=2, identifier=2, type=Side.SELL)
    ledger = _ledger({1: buy, 2: sell}, Decimal(0))
    half_cent = PRICE_SCALE + 5_000  # 0.000005 × 0.01 lot × 100 000 = 0.005 USD
    ledger.quotes.ticks["EURUSD"] = Tick(
        feed="SIM", symbol="EURUSD", time_msc=1, bid=half_cent, ask=half_cent
    )
    ledger.revalue("EURUSD")
    assert [str(p.profit) for p in ledger.book.positions.values()] == ["0.01", "-0.01"]
    assert str(ledger.equity) == "0.00"


@settings(max_examples=50, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "USDJPY", "EURGBP"]),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    lots=st.integers(min_value=10**15, max_value=3 * 10**16),
    quotes=st.lists(st.tuples(st.sampled_from(QUOTED), prices), min_size=1, max_size=4),
)
def test_amounts_too_large_for_minor_units_take_the_decimal_path(
    symbol: str, side: Side, lots: int, quotes: list[tuple[str, int]]
) -> None:
    volume = lots * VOLUME_SCALE
    position = Position(
        ticket=1,
        identifier=1,
        symbol=symbol,
        type=side,
        volume=volume,
        cost=notional_decimal(PRICE_SCALE * volume),
    )
    ledger = _ledger(
        {1: position, 2: msgspec.structs.replace(position, ticket=2, identifier=2)}, Decimal(10**24)
    )
    reference = _Reference(ledger)
    for i, (quoted, bid) in enumerate(quotes):
        ledger.quotes.ticks[quoted] = Tick(feed="SIM", symbol=quoted, time_msc=i, bid=bid, ask=bid + 1000)
        ledger.revalue(quoted)
        reference.revalue(quoted)
        _check(ledger, reference)
