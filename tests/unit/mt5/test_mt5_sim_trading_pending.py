"""What ticks and time do in the simulated broker: pending triggers, expiry, SL/TP, stop-out, swaps.

Scripted ticks make each scenario exact. EURUSD has a 10-point stops level; money by hand in the comments.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from mt5_trading_helpers import DAY_MS, LOT, T0, at, broker, lots, px, request, tick

from aitrading.model.enums import DealEntry, OrderState, OrderTime, OrderType, Side, TradeAction
from aitrading.mt5 import constants as c
from aitrading.mt5.sim import SimBroker
from aitrading.mt5.specs import DEFAULT_SPECS

TUESDAY_0 = T0 - 6 * 3_600_000 + DAY_MS  # 2024-03-05 00:00 UTC


def quoted(bid: str = "1.08500", ask: str = "1.08510", **kwargs: object) -> SimBroker:
    b = broker(**kwargs)  # type: ignore[arg-type]
    b.on_tick(tick("EURUSD", bid, ask, T0))
    return b


def place(b: SimBroker, kind: OrderType, price: str, ms: int = T0 + 1, **fields: object) -> int:
    answer = b.order_send(request(TradeAction.PENDING, type=kind, price=px(price), **fields), at(ms))  # type: ignore[arg-type]
    assert (answer.retcode, answer.volume) == (c.TRADE_RETCODE_DONE, fields.get("volume", LOT)), answer.detail
    assert answer.deal == 0
    return answer.order


@pytest.mark.parametrize(
    ("kind", "price", "before", "trigger", "fill"),
    [
        # buy limit: fills once ask <= price (at the ask: the limit or better)
        (OrderType.BUY_LIMIT, "1.08300", ("1.08300", "1.08310"), ("1.08285", "1.08295"), "1.08295"),
        # sell limit: bid >= price
        (OrderType.SELL_LIMIT, "1.08700", ("1.08690", "1.08700"), ("1.08700", "1.08710"), "1.08700"),
        # buy stop: ask >= price
        (OrderType.BUY_STOP, "1.08700", ("1.08680", "1.08690"), ("1.08695", "1.08705"), "1.08705"),
        # sell stop: bid <= price
        (OrderType.SELL_STOP, "1.08300", ("1.08310", "1.08320"), ("1.08300", "1.08310"), "1.08300"),
    ],
)
def test_pending_orders_trigger_on_the_side_of_the_quote_mt5_uses(
    kind: OrderType, price: str, before: tuple[str, str], trigger: tuple[str, str], fill: str
) -> None:
    b = quoted()
    ticket = place(b, kind, price, comment="cid-7", magic=9, sl=0)
    assert [o.ticket for o in b.orders] == [ticket]
    assert b.orders[0].state is OrderState.PLACED
    b.on_tick(tick("EURUSD", *before, T0 + 2))
    assert b.deals == ()
    b.on_tick(tick("EURUSD", *trigger, T0 + 3))
    (deal,) = b.deals
    assert (deal.order, deal.price, deal.side, deal.entry) == (ticket, px(fill), kind.side, DealEntry.IN)
    assert (deal.comment, deal.magic, deal.time_msc) == ("cid-7", 9, T0 + 3)
    (done,) = b.history_orders
    assert (done.ticket, done.state, done.volume_current, done.position_id) == (
        ticket,
        OrderState.FILLED,
        0,
        ticket,
    )
    (position,) = b.positions
    assert (position.ticket, position.comment, position.magic) == (ticket, "cid-7", 9)
    assert b.orders == ()


def test_a_stop_limit_becomes_a_limit_order_at_its_stoplimit_price_when_triggered() -> None:
    b = quoted()
    ticket = place(b, OrderType.BUY_STOP_LIMIT, "1.08700", stoplimit=px("1.08600"))
    b.on_tick(tick("EURUSD", "1.08690", "1.08700", T0 + 2))  # ask reaches the stop price
    (order,) = b.orders
    assert (order.ticket, order.type, order.price_open, order.price_stoplimit) == (
        ticket,
        OrderType.BUY_LIMIT,
        px("1.08600"),
        0,
    )
    assert b.deals == ()
    b.on_tick(tick("EURUSD", "1.08590", "1.08600", T0 + 3))  # ask back down to the limit
    assert [(d.order, d.price) for d in b.deals] == [(ticket, px("1.08600"))]


def test_a_pending_order_on_the_wrong_side_or_inside_the_stops_level_is_an_invalid_price() -> None:
    b = quoted()
    for kind, price in ((OrderType.BUY_LIMIT, "1.08600"), (OrderType.SELL_STOP, "1.08495")):
        answer = b.order_send(request(TradeAction.PENDING, type=kind, price=px(price)), at(T0 + 1))
        assert answer.retcode == c.TRADE_RETCODE_INVALID_PRICE
    assert b.orders == ()


@pytest.mark.parametrize(
    ("type_time", "expiration_ms", "expires_ms"),
    [
        (OrderTime.DAY, 0, TUESDAY_0),
        (OrderTime.SPECIFIED, T0 + 3_600_000, T0 + 3_600_000),
        (OrderTime.SPECIFIED_DAY, T0 + DAY_MS, TUESDAY_0 + DAY_MS),
    ],
)
def test_pending_orders_expire_when_their_time_is_up(
    type_time: OrderTime, expiration_ms: int, expires_ms: int
) -> None:
    b = quoted()
    ticket = place(b, OrderType.BUY_LIMIT, "1.08000", type_time=type_time, expiration_ns=at(expiration_ms))
    gtc = place(b, OrderType.BUY_LIMIT, "1.08000")
    b.on_time(at(expires_ms - 1))
    assert [o.ticket for o in b.orders] == [ticket, gtc]
    b.on_time(at(expires_ms))
    assert [o.ticket for o in b.orders] == [gtc]
    (expired,) = b.history_orders
    assert (expired.ticket, expired.state, expired.time_done_ns) == (
        ticket,
        OrderState.EXPIRED,
        at(expires_ms),
    )


def test_an_expiration_in_the_past_is_refused() -> None:
    b = quoted()
    answer = b.order_send(
        request(
            TradeAction.PENDING,
            type=OrderType.BUY_LIMIT,
            price=px("1.08000"),
            type_time=OrderTime.SPECIFIED,
            expiration_ns=at(T0),
        ),
        at(T0 + 1),
    )
    assert answer.retcode == c.TRADE_RETCODE_INVALID_EXPIRATION


def test_modify_and_remove_change_a_pending_order_unless_frozen_or_unchanged() -> None:
    b = quoted()
    ticket = place(b, OrderType.BUY_LIMIT, "1.08300", sl=px("1.08100"))
    modify = request(
        TradeAction.MODIFY, symbol="", order=ticket, price=px("1.08200"), sl=px("1.08000"), tp=px("1.08500")
    )
    assert b.order_send(modify, at(T0 + 2)).retcode == 10009
    (order,) = b.orders
    assert (order.price_open, order.sl, order.tp) == (px("1.08200"), px("1.08000"), px("1.08500"))
    assert b.order_send(modify, at(T0 + 3)).retcode == c.TRADE_RETCODE_NO_CHANGES
    too_close = msgspec.structs.replace(modify, price=px("1.08505"))  # 5 points under the ask
    assert b.order_send(too_close, at(T0 + 4)).retcode == c.TRADE_RETCODE_INVALID_PRICE
    unknown = msgspec.structs.replace(modify, order=ticket + 1000)
    assert b.order_send(unknown, at(T0 + 5)).retcode == c.TRADE_RETCODE_INVALID
    removed = b.order_send(request(TradeAction.REMOVE, symbol="", order=ticket), at(T0 + 6))
    assert (removed.retcode, removed.order) == (10009, ticket)
    assert b.orders == ()
    assert b.history_orders[-1].state is OrderState.CANCELED


def test_orders_and_positions_within_the_freeze_level_are_frozen() -> None:
    spec = msgspec.structs.replace(DEFAULT_SPECS["EURUSD"], freeze_level=30)
    b = SimBroker({"EURUSD": spec})
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    ticket = place(b, OrderType.BUY_LIMIT, "1.08400")
    b.on_tick(tick("EURUSD", "1.08420", "1.08430", T0 + 2))  # ask 30 points above the order: frozen
    modify = request(TradeAction.MODIFY, order=ticket, price=px("1.08300"))
    assert b.order_send(modify, at(T0 + 3)).retcode == c.TRADE_RETCODE_FROZEN
    assert (
        b.order_send(request(TradeAction.REMOVE, order=ticket), at(T0 + 3)).retcode == c.TRADE_RETCODE_FROZEN
    )
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0 + 4))
    assert b.order_send(modify, at(T0 + 5)).retcode == 10009
    position = b.order_send(request(sl=px("1.08470")), at(T0 + 6)).order  # SL 30 points under the bid
    sltp = request(TradeAction.SLTP, position=position, sl=px("1.08400"))
    assert b.order_send(sltp, at(T0 + 7)).retcode == c.TRADE_RETCODE_FROZEN


@pytest.mark.parametrize(
    ("side", "sl", "tp", "move", "reason", "price", "comment"),
    [
        (
            OrderType.BUY,
            "1.08300",
            "1.08700",
            ("1.08300", "1.08310"),
            c.DEAL_REASON_SL,
            "1.08300",
            "[sl 1.08300]",
        ),
        (
            OrderType.BUY,
            "1.08300",
            "1.08700",
            ("1.08720", "1.08730"),
            c.DEAL_REASON_TP,
            "1.08720",
            "[tp 1.08700]",
        ),
        (
            OrderType.SELL,
            "1.08700",
            "1.08300",
            ("1.08695", "1.08705"),
            c.DEAL_REASON_SL,
            "1.08705",
            "[sl 1.08700]",
        ),
        (
            OrderType.SELL,
            "1.08700",
            "1.08300",
            ("1.08280", "1.08290"),
            c.DEAL_REASON_TP,
            "1.08290",
            "[tp 1.08300]",
        ),
    ],
)
def test_sl_and_tp_close_a_buy_at_the_bid_and_a_sell_at_the_ask(
    side: OrderType, sl: str, tp: str, move: tuple[str, str], reason: int, price: str, comment: str
) -> None:
    b = quoted()
    opened = b.order_send(request(type=side, sl=px(sl), tp=px(tp), comment="mine"), at(T0 + 1))
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0 + 2))
    assert len(b.positions) == 1
    b.on_tick(tick("EURUSD", *move, T0 + 3))
    assert b.positions == ()
    closing = b.deals[-1]
    assert (closing.reason, closing.price, closing.comment, closing.position_id) == (
        reason,
        px(price),
        comment,
        opened.order,
    )
    assert closing.entry is DealEntry.OUT
    assert closing.side is side.side.opposite
    assert b.history_orders[-1].reason == reason  # ORDER_REASON_SL/TP share DEAL_REASON's numbers


def test_sltp_sets_and_removes_stops_with_the_stops_level_rules() -> None:
    b = quoted()
    ticket = b.order_send(request(), at(T0 + 1)).order
    inside = b.order_send(request(TradeAction.SLTP, position=ticket, sl=px("1.08495")), at(T0 + 2))
    assert inside.retcode == c.TRADE_RETCODE_INVALID_STOPS
    done = b.order_send(
        request(TradeAction.SLTP, symbol="", position=ticket, sl=px("1.08400"), tp=px("1.08800")), at(T0 + 3)
    )
    assert done.retcode == 10009
    assert (b.positions[0].sl, b.positions[0].tp) == (px("1.08400"), px("1.08800"))
    again = b.order_send(
        request(TradeAction.SLTP, position=ticket, sl=px("1.08400"), tp=px("1.08800")), at(T0 + 4)
    )
    assert again.retcode == c.TRADE_RETCODE_NO_CHANGES
    assert b.order_send(request(TradeAction.SLTP, position=ticket), at(T0 + 5)).retcode == 10009
    assert (b.positions[0].sl, b.positions[0].tp) == (0, 0)
    assert (
        b.order_send(request(TradeAction.SLTP, position=ticket + 99), at(T0 + 6)).retcode
        == c.TRADE_RETCODE_POSITION_CLOSED
    )


def test_netting_sltp_finds_the_symbols_position_without_a_ticket() -> None:
    b = quoted(hedging=False)
    b.order_send(request(), at(T0 + 1))
    assert b.order_send(request(TradeAction.SLTP, sl=px("1.08300")), at(T0 + 2)).retcode == 10009
    assert b.positions[0].sl == px("1.08300")


def test_a_triggered_order_the_account_cannot_margin_is_rejected() -> None:
    b = quoted(balance="500")
    ticket = place(b, OrderType.BUY_STOP, "1.08700", volume=lots("0.4"))  # 434 USD of margin: fits now
    b.order_send(request(volume=lots("0.3")), at(T0 + 2))  # 325.53 USD more: the stop no longer fits
    b.on_tick(tick("EURUSD", "1.08700", "1.08710", T0 + 3))
    assert b.orders == ()
    rejected = b.history_orders[-1]
    assert (rejected.ticket, rejected.state) == (ticket, OrderState.REJECTED)
    assert len(b.deals) == 1


def test_stop_out_closes_the_most_losing_position_until_the_margin_level_recovers() -> None:
    b = quoted(balance="1000")
    first = b.order_send(request(volume=lots("0.4")), at(T0 + 1)).order  # at 1.08510
    b.on_tick(tick("EURUSD", "1.08700", "1.08710", T0 + 2))
    second = b.order_send(request(volume=lots("0.4")), at(T0 + 3)).order  # at 1.08710
    # bid 1.07800: equity 1000 + 40,000 × (−0.00710 − 0.00910) = 352; margin 800 EUR × 1.07810 = 862.48
    b.on_tick(tick("EURUSD", "1.07800", "1.07810", T0 + 4))
    assert (b.state.equity, b.state.margin, b.state.margin_level) == (
        Decimal("352.00"),
        Decimal("862.48"),
        Decimal("40.81"),
    )
    assert b.margin_call is True
    assert len(b.positions) == 2
    # bid 1.07650: equity 232, margin 861.28, level 26.94 % <= 30 %: the position bought at 1.08710 goes.
    b.on_tick(tick("EURUSD", "1.07650", "1.07660", T0 + 5))
    so = b.deals[-1]
    assert (so.reason, so.position_id, so.price, so.profit) == (
        c.DEAL_REASON_SO,
        second,
        px("1.07650"),
        Decimal("-424.00"),
    )
    assert so.comment.startswith("[so 26.94%")
    assert [p.ticket for p in b.positions] == [first]
    # Left: equity 576 − 344 = 232 on 400 EUR × 1.07660 = 430.64 of margin: 53.87 %.
    assert b.state.margin_level == Decimal("53.87")
    assert b.margin_call is False


def test_swaps_are_charged_at_each_rollover_and_three_times_for_wednesday_night() -> None:
    b = broker("EURUSD", "USDJPY")
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    b.on_tick(tick("USDJPY", "150.000", "150.012", T0))
    eur = b.order_send(request(volume=LOT), at(T0 + 1)).order
    jpy = b.order_send(request(symbol="USDJPY", volume=LOT), at(T0 + 2)).order
    swaps: list[tuple[Decimal, Decimal]] = []
    for day in range(1, 8):  # the 00:00 rollovers of Tuesday .. next Monday
        b.on_time(at(TUESDAY_0 + (day - 1) * DAY_MS))
        by_ticket = {p.ticket: p.swap for p in b.positions}
        swaps.append((by_ticket[eur], by_ticket[jpy]))
    # EURUSD long: −7.2 points × 0.00001 × 100,000 = −7.20 USD a night. USDJPY long: 14.8 points × 0.001 ×
    # 100,000 = 1,480 JPY, a gain sold at the ask: 1,480 / 150.012 = 9.87 USD a night; Wednesday's three
    # nights are one charge, 4,440 / 150.012 = 29.60. Saturday and Sunday nights cost nothing.
    nights = [1, 2, 5, 6, 7, 7, 7]  # Mon, Tue, Wed ×3, Thu, Fri, (Sat), (Sun)
    jpy_swaps = ["9.87", "19.74", "49.34", "59.21", "69.08", "69.08", "69.08"]
    assert swaps == [(Decimal("-7.20") * n, Decimal(j)) for n, j in zip(nights, jpy_swaps, strict=True)]
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", TUESDAY_0 + 6 * DAY_MS + 1))
    closed = b.order_send(request(type=OrderType.SELL, position=eur), at(TUESDAY_0 + 6 * DAY_MS + 2))
    assert closed.retcode == 10009
    assert b.deals[-1].swap == Decimal("-50.40")
    assert b.state.balance == Decimal("10000") - Decimal("50.40") - Decimal("10.00")
    (left,) = b.positions
    assert left.swap == Decimal("69.08")
    assert b.state.equity == b.state.balance + left.profit + left.swap


def test_a_partial_close_books_its_share_of_the_swap() -> None:
    b = quoted()
    ticket = b.order_send(request(volume=LOT), at(T0 + 1)).order
    b.on_time(at(TUESDAY_0))
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", TUESDAY_0 + 1))
    b.order_send(request(type=OrderType.SELL, volume=lots("0.3"), position=ticket), at(TUESDAY_0 + 2))
    assert b.deals[-1].swap == Decimal("-2.16")  # 0.3 of −7.20
    assert b.positions[0].swap == Decimal("-5.04")
    assert b.positions[0].type is Side.BUY
