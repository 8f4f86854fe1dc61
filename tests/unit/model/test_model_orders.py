"""The order state machine and request checks.

Invariants under any event sequence (Hypothesis): 0 ≤ filled ≤ volume; FILLED ⇔ filled == volume; PLACED
and REQUEST_ADD have no fill, PARTIAL has some; filled volume and cost are the exact sums of the distinct
deals booked; a terminal state never changes; an event outside `allowed_states` raises unless it is a
harmless redelivery (then the order comes back unchanged or only learns its ticket).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_samples import CID, LOT, common, deal, order, request

from aitrading.common.errors import BadInputError
from aitrading.model.commands import request_problems
from aitrading.model.enums import OrderState, OrderTime, OrderType, Side, TradeAction
from aitrading.model.events import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelSubmitted,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifySubmitted,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSubmitted,
)
from aitrading.model.ids import ClientOrderId
from aitrading.model.orders import Order, OrderStateError, allowed_states, transition

S = OrderState
P = 1_100_000_000  # 1.1 as a raw price


def apply(o: Order, *events: OrderEvent) -> Order:
    for e in events:
        o = transition(o, e)
    return o


def submitted(o: Order) -> OrderSubmitted:
    return OrderSubmitted(**common(), request=request(volume=o.volume))


def fill(o: Order, ticket: int, volume: int, price: int = P) -> OrderEvent:
    cls = OrderFilled if o.volume_filled + volume == o.volume else OrderPartiallyFilled
    return cls(**common(), deal=deal(ticket, Side.BUY, volume, price, order_ticket=77))


def working(volume: int = 3 * LOT) -> Order:
    o = order(volume=volume)
    return apply(o, submitted(o), OrderAccepted(**common(), ticket=77))


def test_market_order_fills_in_two_deals_and_averages_the_price_exactly() -> None:
    o = working(3 * LOT)
    o = transition(o, fill(o, 1, LOT, 1_100_000_000))
    assert o.state is S.PARTIAL
    o = transition(o, fill(o, 2, 2 * LOT, 1_100_000_001))
    assert o.state is S.FILLED
    assert o.volume_filled == 3 * LOT
    assert o.avg_fill_price == Fraction(3_300_000_002, 3 * 10**9)
    assert o.deals == (1, 2)
    assert o.time_done_ns == o.time_update_ns


def test_filled_order_cannot_be_canceled() -> None:
    o = working(LOT)
    o = transition(o, fill(o, 1, LOT))
    with pytest.raises(OrderStateError, match="FILLED; OrderCanceled cannot apply"):
        transition(o, OrderCanceled(**common()))


def test_fill_beyond_the_order_volume_is_refused() -> None:
    o = working(LOT)
    with pytest.raises(OrderStateError, match="would make"):
        transition(o, OrderFilled(**common(), deal=deal(1, Side.BUY, 2 * LOT, P)))


def test_redelivered_fill_is_booked_once() -> None:
    o = working(3 * LOT)
    first = fill(o, 1, LOT)
    o = transition(o, first)
    assert transition(o, first) is o


def test_order_filled_that_leaves_volume_open_is_refused() -> None:
    o = working(3 * LOT)
    with pytest.raises(OrderStateError, match="OrderFilled must fill the rest"):
        transition(o, OrderFilled(**common(), deal=deal(1, Side.BUY, LOT, P)))


def test_fill_on_the_wrong_side_is_refused() -> None:
    o = working(LOT)
    with pytest.raises(OrderStateError, match="is SELL"):
        transition(o, OrderFilled(**common(), deal=deal(1, Side.SELL, LOT, P)))


def test_fill_that_overtakes_the_acceptance_is_booked_and_the_late_acceptance_adds_the_ticket() -> None:
    o = order(volume=LOT)
    o = apply(o, submitted(o), OrderFilled(**common(), deal=deal(1, Side.BUY, LOT, P)))
    assert o.state is S.FILLED
    o = transition(o, OrderAccepted(**common(), ticket=42))
    assert (o.state, o.ticket) == (S.FILLED, 42)


def test_rejected_modification_leaves_the_pending_order_as_it_was() -> None:
    o = working()
    o = transition(o, OrderModifySubmitted(**common(), price=P + 5))
    assert o.state is S.REQUEST_MODIFY
    o = transition(o, OrderRejected(**common(), retcode=10016, text="invalid stops"))
    assert (o.state, o.price, o.retcode) == (S.PLACED, 0, 10016)


def test_modified_order_takes_the_new_prices() -> None:
    o = working()
    o = apply(o, OrderModifySubmitted(**common(), price=P), OrderModified(**common(), price=P, sl=P - 100))
    assert (o.state, o.price, o.sl) == (S.PLACED, P, P - 100)


def test_partial_fill_while_a_cancel_is_pending_keeps_the_cancel_pending() -> None:
    o = transition(working(3 * LOT), OrderCancelSubmitted(**common()))
    o = transition(o, fill(o, 1, LOT))
    assert (o.state, o.volume_filled) == (S.REQUEST_CANCEL, LOT)
    o = transition(o, OrderCanceled(**common()))
    assert (o.state, o.volume_filled) == (S.CANCELED, LOT)


def test_denied_order_ends_rejected_with_the_reason_and_repeats_are_harmless() -> None:
    o = order()
    denied = OrderDenied(**common(), reason="max_volume", text="2 lots > 1 lot")
    o = transition(o, denied)
    assert (o.state, o.reason) == (S.REJECTED, "max_volume: 2 lots > 1 lot")
    assert transition(o, denied) is o


def test_event_of_another_order_is_refused() -> None:
    other = {**common(), "client_order_id": ClientOrderId("OTHER")}
    with pytest.raises(BadInputError, match="applied to order"):
        transition(order(), OrderDenied(**other, reason="x"))


def test_only_new_order_requests_make_orders() -> None:
    with pytest.raises(BadInputError, match="existing order"):
        Order.from_request(request(action=TradeAction.REMOVE, order=5))
    with pytest.raises(BadInputError, match="volume must be positive"):
        Order.from_request(request(volume=0))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"type": OrderType.BUY_LIMIT}, "needs type BUY or SELL"),
        ({"action": TradeAction.PENDING, "type": OrderType.BUY_LIMIT}, "needs a price"),
        ({"action": TradeAction.PENDING, "type": OrderType.BUY_STOP_LIMIT, "price": P}, "needs a stoplimit"),
        ({"action": TradeAction.PENDING, "type": OrderType.SELL, "price": P}, "limit, stop or stop-limit"),
        (
            {
                "action": TradeAction.PENDING,
                "type": OrderType.BUY_STOP,
                "price": P,
                "type_time": OrderTime.SPECIFIED,
            },
            "needs expiration_ns",
        ),
        ({"action": TradeAction.MODIFY}, "ticket of the order"),
        ({"action": TradeAction.CLOSE_BY, "position": 3, "position_by": 3}, "two different positions"),
        ({"comment": "c" * 32}, "MT5 keeps 31"),
        ({"client_order_id": "has space"}, "client order id"),
        ({"deviation": -1}, "must not be negative"),
    ],
)
def test_request_problems_name_what_is_wrong(changes: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in request_problems(request(**changes)))


def test_valid_requests_have_no_problems() -> None:
    assert request_problems(request()) == ()
    pending = request(action=TradeAction.PENDING, type=OrderType.SELL_STOP_LIMIT, price=P, stoplimit=P + 9)
    assert request_problems(pending) == ()
    assert request_problems(request(action=TradeAction.SLTP, volume=0, sl=P)) == ()


# --- random event sequences -------------------------------------------------------------------------------

KINDS = [
    "submit",
    "deny",
    "accept",
    "reject",
    "partial",
    "fill",
    "modify_submit",
    "modified",
    "cancel_submit",
    "cancel",
    "expire",
    "refill",
]
steps = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(min_value=1, max_value=12), st.integers(1, 3)),
    max_size=40,
)


def make_event(o: Order, kind: str, amount: int, ticket: int, next_deal: int) -> OrderEvent:
    unit = o.volume // 4 or 1
    c = common(o.time_update_ns + 1)
    match kind:
        case "submit":
            return OrderSubmitted(**c, request=request())
        case "deny":
            return OrderDenied(**c, reason="risk")
        case "accept":
            return OrderAccepted(**c, ticket=ticket)
        case "reject":
            return OrderRejected(**c, retcode=10006)
        case "partial":
            return OrderPartiallyFilled(**c, deal=deal(next_deal, Side.BUY, amount * unit, P + amount))
        case "fill":
            return OrderFilled(**c, deal=deal(next_deal, Side.BUY, o.volume_remaining or 1, P - amount))
        case "refill":
            old = o.deals[-1] if o.deals else next_deal
            return OrderPartiallyFilled(**c, deal=deal(old, Side.BUY, unit, P))
        case "modify_submit":
            return OrderModifySubmitted(**c, price=P + amount)
        case "modified":
            return OrderModified(**c, price=P + amount)
        case "cancel_submit":
            return OrderCancelSubmitted(**c)
        case "cancel":
            return OrderCanceled(**c)
    return OrderExpired(**c)


def is_redelivery(o: Order, e: OrderEvent) -> bool:
    if isinstance(e, OrderFilled | OrderPartiallyFilled):
        return e.deal.ticket in o.deals
    if isinstance(e, OrderAccepted):
        return (bool(o.ticket) and e.ticket == o.ticket) or (
            o.state in (S.PARTIAL, S.FILLED) and not o.ticket
        )
    terminal = {OrderDenied: S.REJECTED, OrderRejected: S.REJECTED, OrderCanceled: S.CANCELED}
    return (
        o.state.is_terminal
        and terminal.get(type(e), S.EXPIRED if isinstance(e, OrderExpired) else None) is o.state
    )


def check_invariants(o: Order, fills: dict[int, tuple[int, int]]) -> None:
    assert 0 <= o.volume_filled <= o.volume
    assert (o.state is S.FILLED) == (o.volume_filled == o.volume)
    if o.state in (S.PLACED, S.REQUEST_ADD, S.STARTED):
        assert o.volume_filled == 0
    if o.state is S.PARTIAL:
        assert 0 < o.volume_filled < o.volume
    assert o.volume_filled == sum(v for v, _ in fills.values())
    assert set(o.deals) == set(fills)
    if fills:
        assert o.avg_fill_price == Fraction(sum(v * p for v, p in fills.values()), o.volume_filled * 10**9)


@settings(max_examples=400)
@given(st.integers(min_value=1, max_value=8).map(lambda n: n * LOT // 4), steps)
def test_random_event_sequences_keep_every_order_invariant(
    volume: int, seq: list[tuple[str, int, int]]
) -> None:
    o = order(volume=volume)
    fills: dict[int, tuple[int, int]] = {}
    terminal_at: Order | None = None
    for i, (kind, amount, ticket) in enumerate(seq):
        e = make_event(o, kind, amount, ticket, next_deal=1000 + i)
        legal = o.state in allowed_states(type(e))
        try:
            new = transition(o, e)
        except OrderStateError:
            assert not is_redelivery(o, e)
            continue
        if not is_redelivery(o, e):
            assert legal, f"{type(e).__name__} was applied in {o.state.name}"
        if isinstance(e, OrderFilled | OrderPartiallyFilled) and e.deal.ticket not in fills:
            fills[e.deal.ticket] = (e.deal.volume, e.deal.price)
        if terminal_at is not None:
            assert new.state is terminal_at.state
            assert new.volume_filled == terminal_at.volume_filled
        o = new
        check_invariants(o, fills)
        if o.is_terminal and terminal_at is None:
            terminal_at = o
    assert o.client_order_id == CID
