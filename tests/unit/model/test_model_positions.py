"""Positions under netting and hedging.

The invariant (average-price rule, no FIFO lots): for any sequence of trade deals (sideᵢ, pᵢ, vᵢ) and any
mark price P, Σ realised + Σ floating(P) = contract × Σ sideᵢ × (P − pᵢ) × vᵢ exactly — the P&L of the
cash flows. Also: the net signed volume equals Σ sideᵢ × vᵢ, and after adds only price_open = Σpᵢvᵢ / Σvᵢ.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_samples import CONTRACT, LOT, deal, eurusd

from aitrading.common.errors import BadInputError, NotFoundError
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, Side
from aitrading.model.positions import (
    Position,
    apply_deal_hedging,
    apply_deal_netting,
    floating_profit,
    linear_profit,
    mark,
    netting_entry,
)
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE

PROFIT = linear_profit(CONTRACT)
sides = st.sampled_from([Side.BUY, Side.SELL])
volumes = st.integers(min_value=1, max_value=500).map(lambda n: n * LOT // 100)
prices = st.integers(min_value=90_000, max_value=130_000).map(lambda n: n * 10_000)  # 0.9 … 1.3, 5 digits
trades = st.lists(st.tuples(sides, volumes, prices), min_size=1, max_size=30)


def cash_flow_pnl(trades: list[tuple[Side, int, int]], mark_price: int) -> Fraction:
    notional = sum(side.sign * (mark_price - p) * v for side, v, p in trades)
    return Fraction(notional, PRICE_SCALE * VOLUME_SCALE) * Fraction(CONTRACT)


def floating_total(positions: list[Position], mark_price: int) -> Fraction:
    return sum((Fraction(floating_profit(p, mark_price, PROFIT)) for p in positions), Fraction(0))


@settings(max_examples=300)
@given(trades, prices)
def test_netting_realised_plus_floating_equals_cash_flow_pnl_at_any_price(
    seq: list[tuple[Side, int, int]], mark_price: int
) -> None:
    position: Position | None = None
    realised = Fraction(0)
    net = 0
    identifier = None
    for i, (side, volume, price) in enumerate(seq, start=1):
        expected_entry = netting_entry(position, side, volume)
        before = position
        position, r = apply_deal_netting(position, deal(i, side, volume, price, order_ticket=100 + i), PROFIT)
        realised += Fraction(r)
        net += side.sign * volume
        assert (position.signed_volume if position else 0) == net
        if position is None:
            assert expected_entry is DealEntry.OUT
            identifier = None
            continue
        assert position.cost_raw == position.price_open * position.volume * PRICE_SCALE
        identifier = identifier or position.identifier
        assert position.identifier == identifier
        if expected_entry is DealEntry.INOUT:
            assert before is not None
            assert position.type is not before.type
            assert position.ticket == 100 + i
        if expected_entry is DealEntry.IN:
            assert r == 0
    held = [position] if position else []
    assert realised + floating_total(held, mark_price) == cash_flow_pnl(seq, mark_price)


@given(st.lists(st.tuples(volumes, prices), min_size=1, max_size=20), sides)
def test_adding_only_gives_the_exact_volume_weighted_average_price(
    adds: list[tuple[int, int]], side: Side
) -> None:
    position: Position | None = None
    for i, (volume, price) in enumerate(adds, start=1):
        position, realised = apply_deal_netting(position, deal(i, side, volume, price), PROFIT)
        assert realised == 0
    assert position is not None
    total = sum(v for v, _ in adds)
    assert position.volume == total
    assert position.price_open == Fraction(sum(v * p for v, p in adds), total * PRICE_SCALE)


@st.composite
def hedging_script(draw: st.DrawFn) -> list[tuple[str, Side, int, int, int]]:
    """Opens and closes: ("in", side, volume, price, _) or ("out", _, share‰, price, which)."""
    return draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("in"), sides, volumes, prices, st.just(0)),
                st.tuples(st.just("out"), sides, st.integers(1, 1000), prices, st.integers(0, 50)),
            ),
            min_size=1,
            max_size=30,
        )
    )


@settings(max_examples=300)
@given(hedging_script(), prices)
def test_hedging_realised_plus_floating_equals_cash_flow_pnl_at_any_price(
    script: list[tuple[str, Side, int, int, int]], mark_price: int
) -> None:
    book: dict[int, Position] = {}
    done: list[tuple[Side, int, int]] = []
    realised = Fraction(0)
    for i, (kind, side, amount, price, which) in enumerate(script, start=1):
        if kind == "in":
            d = deal(i, side, amount, price, order_ticket=i)
        elif book:
            target = list(book.values())[which % len(book)]
            volume = max(1, target.volume * amount // 1000)
            closing = target.type.opposite
            d = deal(i, closing, volume, price, entry=DealEntry.OUT, position_id=target.identifier)
        else:
            continue
        book, r = apply_deal_hedging(book, d, PROFIT)
        realised += Fraction(r)
        done.append((d.side, d.volume, d.price))
        assert sum(p.signed_volume for p in book.values()) == sum(s.sign * v for s, v, _ in done)
    assert realised + floating_total(list(book.values()), mark_price) == cash_flow_pnl(done, mark_price)


def test_opposite_deal_closes_on_netting_but_opens_a_second_position_on_hedging() -> None:
    buy = deal(1, Side.BUY, LOT, eurusd("1.10000"), order_ticket=11)
    sell = deal(2, Side.SELL, LOT, eurusd("1.10100"), order_ticket=12)
    netted, r1 = apply_deal_netting(None, buy, PROFIT)
    netted, r2 = apply_deal_netting(netted, sell, PROFIT)
    assert netted is None
    assert r1 + r2 == Decimal("100")
    book, r1 = apply_deal_hedging({}, buy, PROFIT)
    book, r2 = apply_deal_hedging(book, sell, PROFIT)
    assert sorted(p.type for p in book.values()) == [Side.BUY, Side.SELL]
    assert r1 == r2 == 0
    for mark_price in (eurusd("1.0"), eurusd("1.2")):  # the locked pair is worth the same 100 at any price
        assert floating_total(list(book.values()), mark_price) == 100


def test_hedging_closes_the_named_position_at_its_own_price_where_netting_uses_the_average() -> None:
    a = deal(1, Side.BUY, LOT, eurusd("1.10000"), order_ticket=1)
    b = deal(2, Side.BUY, LOT, eurusd("1.12000"), order_ticket=2)
    close_b = deal(3, Side.SELL, LOT, eurusd("1.13000"), entry=DealEntry.OUT, position_id=2)
    book, _ = apply_deal_hedging({}, a, PROFIT)
    book, _ = apply_deal_hedging(book, b, PROFIT)
    book, realised = apply_deal_hedging(book, close_b, PROFIT)
    assert realised == Decimal("1000")
    assert list(book) == [1]
    netted, _ = apply_deal_netting(None, a, PROFIT)
    netted, _ = apply_deal_netting(netted, b, PROFIT)
    netted, realised = apply_deal_netting(netted, deal(3, Side.SELL, LOT, eurusd("1.13000")), PROFIT)
    assert realised == Decimal("2000")
    assert netted is not None
    assert netted.price_open == Fraction("1.11")


def test_netting_reversal_keeps_the_identifier_and_takes_the_reversing_order_as_ticket() -> None:
    pos, _ = apply_deal_netting(None, deal(1, Side.BUY, LOT, eurusd("1.1"), order_ticket=501), PROFIT)
    assert pos is not None
    assert (pos.ticket, pos.identifier) == (501, 501)
    rev = deal(2, Side.SELL, 3 * LOT, eurusd("1.2"), order_ticket=502, position_id=501)
    assert netting_entry(pos, Side.SELL, 3 * LOT) is DealEntry.INOUT
    pos, realised = apply_deal_netting(pos, rev, PROFIT)
    assert realised == Decimal("10000")
    assert pos is not None
    assert (pos.type, pos.volume, pos.ticket, pos.identifier) == (Side.SELL, 2 * LOT, 502, 501)
    assert pos.price_open == Fraction("1.2")


def test_profit_function_gets_the_position_side_volume_and_the_average_price_to_one_notional_unit() -> None:
    calls: list[tuple[str, Side, int, Fraction, Fraction]] = []

    def spy(symbol: str, side: Side, volume: int, price_open: Fraction, price_close: Fraction) -> Decimal:
        calls.append((symbol, side, volume, price_open, price_close))
        return Decimal(7)

    pos, _ = apply_deal_netting(None, deal(1, Side.SELL, 2 * LOT, eurusd("1.1")), spy)
    pos, _ = apply_deal_netting(pos, deal(2, Side.SELL, LOT, eurusd("1.1000001")), spy)
    pos, realised = apply_deal_netting(pos, deal(3, Side.BUY, LOT, eurusd("1.0")), spy)
    assert realised == 7
    assert pos is not None
    assert pos.profit == 7  # the rest is revalued at the deal price
    symbol, side, volume, price_open, price_close = calls[-2]
    assert (symbol, side, volume, price_close) == ("EURUSD", Side.SELL, LOT, Fraction(1))
    average = Fraction("3.3000001") / 3  # not a terminating decimal
    assert price_open != average
    assert abs(price_open - average) <= Fraction(1, 2 * LOT * PRICE_SCALE)  # ≤ ½ of 1e-17 price × lots
    assert price_open * LOT + pos.price_open * pos.volume == average * 3 * LOT  # no cost lost or made


def test_marking_a_sell_position_loses_when_the_price_rises() -> None:
    pos, _ = apply_deal_netting(None, deal(1, Side.SELL, LOT, eurusd("1.10000")), PROFIT)
    assert pos is not None
    ask = Side.SELL.exit_price(bid=eurusd("1.10100"), ask=eurusd("1.10110"))
    marked = mark(pos, ask, PROFIT, time_ns=5)
    assert (marked.price_current, marked.profit, marked.time_update_ns) == (ask, Decimal("-110"), 5)


def test_netting_refuses_deals_that_do_not_belong_to_the_position() -> None:
    pos, _ = apply_deal_netting(None, deal(1, Side.BUY, LOT, eurusd("1.1"), order_ticket=9), PROFIT)
    with pytest.raises(BadInputError, match="is for GBPUSD"):
        apply_deal_netting(pos, deal(2, Side.SELL, LOT, eurusd("1.1"), symbol="GBPUSD"), PROFIT)
    with pytest.raises(BadInputError, match="names position 8"):
        apply_deal_netting(pos, deal(2, Side.SELL, LOT, eurusd("1.1"), position_id=8), PROFIT)
    balance = Deal(ticket=3, type=DealType.BALANCE, profit=Decimal(100), time_ns=0)
    with pytest.raises(BadInputError, match="only BUY and SELL"):
        apply_deal_netting(pos, balance, PROFIT)


def test_hedging_refuses_reversals_unknown_positions_same_side_and_too_much_volume() -> None:
    book, _ = apply_deal_hedging({}, deal(1, Side.BUY, LOT, eurusd("1.1"), order_ticket=1), PROFIT)
    with pytest.raises(BadInputError, match="do not reverse"):
        apply_deal_hedging(book, deal(2, Side.SELL, LOT, 1, entry=DealEntry.INOUT, position_id=1), PROFIT)
    with pytest.raises(NotFoundError, match="not open"):
        apply_deal_hedging(book, deal(2, Side.SELL, LOT, 1, entry=DealEntry.OUT, position_id=5), PROFIT)
    with pytest.raises(BadInputError, match="cannot close"):
        apply_deal_hedging(book, deal(2, Side.BUY, LOT, 1, entry=DealEntry.OUT, position_id=1), PROFIT)
    with pytest.raises(BadInputError, match="which has"):
        apply_deal_hedging(book, deal(2, Side.SELL, 2 * LOT, 1, entry=DealEntry.OUT, position_id=1), PROFIT)
    with pytest.raises(BadInputError, match="which is open"):
        apply_deal_hedging(book, deal(1, Side.BUY, LOT, 1, order_ticket=1), PROFIT)


def test_close_by_deals_close_each_position_on_hedging() -> None:
    book, _ = apply_deal_hedging({}, deal(1, Side.BUY, LOT, eurusd("1.1"), order_ticket=1), PROFIT)
    book, _ = apply_deal_hedging(book, deal(2, Side.SELL, LOT, eurusd("1.2"), order_ticket=2), PROFIT)
    book, r1 = apply_deal_hedging(
        book, deal(3, Side.SELL, LOT, eurusd("1.2"), entry=DealEntry.OUT_BY, position_id=1), PROFIT
    )
    book, r2 = apply_deal_hedging(
        book, deal(4, Side.BUY, LOT, eurusd("1.2"), entry=DealEntry.OUT_BY, position_id=2), PROFIT
    )
    assert book == {}
    assert r1 + r2 == Decimal("10000")
