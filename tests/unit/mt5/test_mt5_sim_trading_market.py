"""The simulated broker's market orders: fills, slippage, requotes, filling modes, netting and hedging.

Expected money is worked out by hand in the comments (EURUSD: 100,000 units a lot, 1:100 leverage, USD
account), per MT5's formulas: margin = lots × contract / leverage in EUR × EURUSD ask (BUY) or bid (SELL);
profit = (close − open) × lots × contract in USD.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from mt5_trading_helpers import LOT, T0, at, broker, lots, px, request, tick

from aitrading.model.enums import DealEntry, OrderFilling, OrderState, OrderType, Side, TradeAction
from aitrading.mt5 import constants as c

SAT = T0 + 5 * 86_400_000  # Saturday 2024-03-09 06:00 UTC: the FX market is closed


def test_market_buy_fills_at_the_ask_and_sell_at_the_bid_with_mt5_margin() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    buy = b.order_send(request(volume=LOT), at(T0 + 1))
    assert (buy.retcode, buy.comment, buy.price, buy.volume) == (
        10009,
        "Request executed",
        px("1.08510"),
        LOT,
    )
    assert (buy.bid, buy.ask) == (px("1.08500"), px("1.08510"))
    # 1 lot: 1,000 EUR of margin × ask 1.08510 = 1,085.10 USD; marked at the bid it is 10 USD down.
    assert b.state.margin == Decimal("1085.10")
    assert b.state.equity == Decimal("9990.00")
    sell = b.order_send(request(type=OrderType.SELL, volume=LOT), at(T0 + 2))
    assert sell.price == px("1.08500")
    assert len(b.positions) == 2  # hedging: a position per deal IN
    # A hedged pair is margined as its larger leg (equal legs: the BUY leg).
    assert b.state.margin == Decimal("1085.10")


def test_slippage_is_seeded_at_most_the_configured_points_and_always_against_the_trader() -> None:
    b = broker(slippage_points=5, seed=11)
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    draws = random.Random(11)
    point = px("0.00001")
    for i in range(12):
        side = OrderType.BUY if i % 2 == 0 else OrderType.SELL
        answer = b.order_send(request(type=side, volume=lots("0.01")), at(T0 + i))
        slip = draws.randint(0, 5) * point
        expected = px("1.08510") + slip if side is OrderType.BUY else px("1.08500") - slip
        assert answer.price == expected
    assert {d.price for d in b.deals if d.side is Side.BUY} != {px("1.08510")}  # some fills did slip


def test_a_fill_worse_than_the_deviation_is_requoted_with_the_current_prices() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    stale = px("1.08490")  # the client saw ask 1.08490; the market is 2 pips (20 points) higher now
    answer = b.order_send(request(price=stale, deviation=15), at(T0 + 1))
    assert (answer.retcode, answer.comment) == (c.TRADE_RETCODE_REQUOTE, "Requote")
    assert (answer.bid, answer.ask) == (px("1.08500"), px("1.08510"))
    assert b.deals == ()
    assert b.positions == ()
    assert b.order_send(request(price=stale, deviation=20), at(T0 + 2)).retcode == 10009
    # A better price than requested never requotes.
    assert b.order_send(request(type=OrderType.SELL, price=stale, deviation=0), at(T0 + 3)).retcode == 10009


def test_random_requotes_follow_the_probability_and_the_seed() -> None:
    def retcodes(seed: int) -> list[int]:
        b = broker(requote_probability=0.5, seed=seed)
        b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
        return [b.order_send(request(volume=lots("0.01")), at(T0 + i)).retcode for i in range(40)]

    first = retcodes(3)
    assert first == retcodes(3)
    assert set(first) == {c.TRADE_RETCODE_REQUOTE, c.TRADE_RETCODE_DONE}
    always = broker(requote_probability=1.0)
    always.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    assert always.order_send(request(), at(T0 + 1)).retcode == c.TRADE_RETCODE_REQUOTE
    assert always.order_check(request(), at(T0 + 1)).retcode == 0  # order_check never requotes


@pytest.mark.parametrize(
    ("filling", "kind", "retcode"),
    [
        (OrderFilling.FOK, OrderType.BUY, 10009),
        (OrderFilling.IOC, OrderType.SELL, 10009),
        (OrderFilling.RETURN, OrderType.BUY, c.TRADE_RETCODE_INVALID_FILL),  # market execution
        (OrderFilling.BOC, OrderType.BUY, c.TRADE_RETCODE_INVALID_FILL),
        (OrderFilling.RETURN, OrderType.BUY_LIMIT, 10009),
        (OrderFilling.RETURN, OrderType.BUY_STOP, c.TRADE_RETCODE_INVALID_FILL),
    ],
)
def test_filling_modes_fill_fully_or_are_refused_as_mt5_market_execution_does(
    filling: OrderFilling, kind: OrderType, retcode: int
) -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    prices = {OrderType.BUY_LIMIT: px("1.08000"), OrderType.BUY_STOP: px("1.09000")}
    action = TradeAction.PENDING if kind in prices else TradeAction.DEAL
    answer = b.order_send(request(action, type=kind, filling=filling, price=prices.get(kind, 0)), at(T0 + 1))
    assert answer.retcode == retcode
    if retcode == 10009 and action is TradeAction.DEAL:
        assert b.positions[0].volume == LOT  # full liquidity: FOK and IOC fill everything


def test_a_filling_mode_the_symbol_does_not_allow_is_refused() -> None:
    b = broker(filling_mode=c.SYMBOL_FILLING_FOK)
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    answer = b.order_send(request(filling=OrderFilling.IOC), at(T0 + 1))
    assert (answer.retcode, answer.comment) == (10030, "Unsupported filling mode")


def test_comment_and_magic_travel_to_the_order_the_deals_and_the_position() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    opened = b.order_send(request(comment="AI01HQ7Z3K8R2M5N9P4T6V8X0Y", magic=42), at(T0 + 1))
    (position,) = b.positions
    assert (position.comment, position.magic, position.ticket) == (
        "AI01HQ7Z3K8R2M5N9P4T6V8X0Y",
        42,
        opened.order,
    )
    closed = b.order_send(
        request(type=OrderType.SELL, position=position.ticket, comment="close-1", magic=43), at(T0 + 2)
    )
    orders = {o.ticket: o for o in b.history_orders}
    assert (orders[opened.order].comment, orders[opened.order].magic) == ("AI01HQ7Z3K8R2M5N9P4T6V8X0Y", 42)
    assert orders[opened.order].state is OrderState.FILLED
    assert (orders[closed.order].comment, orders[closed.order].position_id) == (
        "close-1",
        position.identifier,
    )
    assert [(d.comment, d.magic, d.entry) for d in b.deals] == [
        ("AI01HQ7Z3K8R2M5N9P4T6V8X0Y", 42, DealEntry.IN),
        ("close-1", 43, DealEntry.OUT),
    ]
    assert all(d.reason == c.DEAL_REASON_EXPERT for d in b.deals)
    assert b.position_reason(position.identifier) == c.POSITION_REASON_CLIENT  # closed: no reason kept


def test_netting_adds_averages_and_reverses_one_position_per_symbol() -> None:
    b = broker(hedging=False)
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    first = b.order_send(request(volume=LOT), at(T0 + 1))
    b.on_tick(tick("EURUSD", "1.08600", "1.08610", T0 + 2))
    b.order_send(request(volume=LOT), at(T0 + 3))
    (position,) = b.positions
    assert position.volume == 2 * LOT
    assert position.price_open_raw == px("1.08560")  # (1.08510 + 1.08610) / 2
    b.on_tick(tick("EURUSD", "1.08700", "1.08710", T0 + 4))
    reverse = b.order_send(request(type=OrderType.SELL, volume=3 * LOT), at(T0 + 5))
    (reversed_,) = b.positions
    assert (reversed_.type, reversed_.volume, reversed_.identifier) == (Side.SELL, LOT, first.order)
    assert reversed_.ticket == reverse.order  # MT5 gives a reversed netting position the new order's ticket
    assert [d.entry for d in b.deals] == [DealEntry.IN, DealEntry.IN, DealEntry.INOUT]
    # Closing 2 lots bought at 1.08560 average at 1.08700: 0.00140 × 200,000 = 280 USD.
    assert b.deals[-1].profit == Decimal("280.00")
    assert b.state.balance == Decimal("10280.00")


def test_hedging_partial_close_keeps_the_ticket_and_books_the_closed_part() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    opened = b.order_send(request(volume=LOT), at(T0 + 1))
    b.on_tick(tick("EURUSD", "1.08610", "1.08620", T0 + 2))
    part = b.order_send(request(type=OrderType.SELL, volume=lots("0.4"), position=opened.order), at(T0 + 3))
    assert part.retcode == 10009
    (position,) = b.positions
    assert (position.ticket, position.volume) == (opened.order, lots("0.6"))
    # 0.4 lot from 1.08510 to bid 1.08610: 0.00100 × 40,000 = 40 USD.
    assert b.deals[-1].profit == Decimal("40.00")
    assert b.deals[-1].position_id == opened.order
    rest = b.order_send(request(type=OrderType.SELL, volume=lots("0.6"), position=opened.order), at(T0 + 4))
    assert rest.retcode == 10009
    assert b.positions == ()
    assert b.state.balance == Decimal("10100.00")  # 40 + 0.6 × 100 = 60


def test_close_by_closes_opposite_positions_at_the_open_price_of_the_other() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    long = b.order_send(request(volume=LOT, comment="long"), at(T0 + 1))
    b.on_tick(tick("EURUSD", "1.08600", "1.08610", T0 + 2))
    short = b.order_send(request(type=OrderType.SELL, volume=lots("0.5")), at(T0 + 3))
    answer = b.order_send(
        request(TradeAction.CLOSE_BY, symbol="", position=long.order, position_by=short.order, comment="cb"),
        at(T0 + 4),
    )
    assert (answer.retcode, answer.volume, answer.price) == (10009, lots("0.5"), px("1.08600"))
    out_by = b.deals[-2:]
    assert [(d.entry, d.position_id, d.price) for d in out_by] == [
        (DealEntry.OUT_BY, long.order, px("1.08600")),
        (DealEntry.OUT_BY, short.order, px("1.08600")),
    ]
    # The pair realises 0.5 lot × (1.08600 − 1.08510) = 45 USD, once.
    assert sum(d.profit for d in out_by) == Decimal("45.00")
    (rest,) = b.positions
    assert (rest.ticket, rest.volume, rest.comment) == (long.order, lots("0.5"), "long")
    assert b.history_orders[-1].type is OrderType.CLOSE_BY
    assert b.history_orders[-1].comment == "cb"


def test_close_by_is_refused_on_netting_and_for_same_side_positions() -> None:
    netting = broker(hedging=False)
    netting.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    refused = netting.order_send(request(TradeAction.CLOSE_BY, position=1, position_by=2), at(T0 + 1))
    assert refused.retcode == c.TRADE_RETCODE_INVALID
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    one, two = (b.order_send(request(volume=LOT), at(T0 + i)).order for i in (1, 2))
    same = b.order_send(request(TradeAction.CLOSE_BY, position=one, position_by=two), at(T0 + 3))
    assert same.retcode == c.TRADE_RETCODE_INVALID
    gone = b.order_send(request(TradeAction.CLOSE_BY, position=one, position_by=999), at(T0 + 4))
    assert gone.retcode == c.TRADE_RETCODE_POSITION_CLOSED


def test_commission_per_lot_per_side_is_booked_on_every_deal() -> None:
    b = broker(commission_per_lot=Decimal("3.50"))
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    opened = b.order_send(request(volume=lots("0.35")), at(T0 + 1))
    b.order_send(request(type=OrderType.SELL, volume=lots("0.35"), position=opened.order), at(T0 + 2))
    # 0.35 lot × 3.50 = 1.225 → 1.23 a side (half away from zero); the round trip loses the 1 pip spread.
    assert [d.commission for d in b.deals] == [Decimal("-1.23"), Decimal("-1.23")]
    assert b.deals[-1].profit == Decimal("-3.50")
    assert b.state.balance == Decimal("10000") - Decimal("1.23") * 2 - Decimal("3.50")


@pytest.mark.parametrize(
    ("changes", "retcode"),
    [
        ({"volume": lots("0.001")}, c.TRADE_RETCODE_INVALID_VOLUME),  # below the 0.01 step
        ({"volume": lots("0.015")}, c.TRADE_RETCODE_INVALID_VOLUME),  # off the step grid
        ({"sl": px("1.08495")}, c.TRADE_RETCODE_INVALID_STOPS),  # 5 points under the bid, level is 10
        ({"tp": px("1.08400")}, c.TRADE_RETCODE_INVALID_STOPS),  # a BUY's TP under the bid
        ({"volume": 100 * LOT}, c.TRADE_RETCODE_NO_MONEY),  # 108,510 USD of margin on 10,000
        ({"symbol": "NOPE"}, c.TRADE_RETCODE_INVALID),
        ({"type": OrderType.BUY_LIMIT}, c.TRADE_RETCODE_INVALID),  # a DEAL needs BUY or SELL
        ({"position": 424242, "type": OrderType.SELL}, c.TRADE_RETCODE_POSITION_CLOSED),
    ],
)
def test_bad_market_requests_get_mt5_retcodes_and_book_nothing(
    changes: dict[str, object], retcode: int
) -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    answer = b.order_send(request(**changes), at(T0 + 1))  # type: ignore[arg-type]
    assert answer.retcode == retcode
    assert answer.detail
    assert b.deals == ()
    assert b.positions == ()
    assert b.history_orders == ()
    assert b.order_check(request(**changes), at(T0 + 1)).retcode == retcode  # type: ignore[arg-type]


def test_a_close_larger_than_the_position_or_on_its_own_side_is_refused() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    ticket = b.order_send(request(volume=LOT), at(T0 + 1)).order
    too_big = b.order_send(request(type=OrderType.SELL, volume=2 * LOT, position=ticket), at(T0 + 2))
    assert too_big.retcode == c.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    same_side = b.order_send(request(volume=LOT, position=ticket), at(T0 + 3))
    assert same_side.retcode == c.TRADE_RETCODE_INVALID


def test_closing_never_needs_free_margin_but_opening_more_does() -> None:
    b = broker(balance="1000")
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    ticket = b.order_send(request(volume=lots("0.8")), at(T0 + 1)).order  # margin 868.08 USD
    b.on_tick(tick("EURUSD", "1.07800", "1.07810", T0 + 2))  # equity 1000 − 568 = 432 < margin
    assert b.state.margin_free < 0
    assert b.order_send(request(volume=lots("0.01")), at(T0 + 3)).retcode == c.TRADE_RETCODE_NO_MONEY
    closed = b.order_send(request(type=OrderType.SELL, volume=lots("0.8"), position=ticket), at(T0 + 4))
    assert closed.retcode == 10009
    assert b.state.balance == Decimal("432.00")


def test_requests_outside_the_fx_week_are_refused_as_market_closed_unless_always_open() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    answer = b.order_send(request(), at(SAT))
    assert (answer.retcode, answer.comment) == (c.TRADE_RETCODE_MARKET_CLOSED, "Market closed")
    around_the_clock = broker(always_open=True)
    around_the_clock.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    assert around_the_clock.order_send(request(), at(SAT)).retcode == 10009


def test_a_symbol_without_a_quote_answers_no_prices() -> None:
    b = broker()
    assert b.order_send(request(), at(T0)).retcode == c.TRADE_RETCODE_PRICE_OFF


def test_order_check_reports_the_account_after_the_deal_and_books_nothing() -> None:
    b = broker()
    b.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    check = b.order_check(request(volume=LOT), at(T0 + 1))
    assert (check.retcode, check.comment) == (0, "Done")
    assert (check.balance, check.equity, check.margin) == (
        Decimal("10000.00"),
        Decimal("10000.00"),
        Decimal("1085.10"),
    )
    assert check.margin_free == Decimal("8914.90")
    assert check.margin_level == Decimal("921.57")  # 10,000 / 1,085.10 × 100
    assert b.deals == ()
    assert b.state.margin == 0
    refused = b.order_check(request(volume=lots("0.001")), at(T0 + 1))
    assert (refused.retcode, refused.comment, refused.balance) == (10014, "Invalid volume", Decimal(0))
