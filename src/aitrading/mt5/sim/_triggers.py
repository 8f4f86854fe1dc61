"""What time and ticks do to the simulated broker's books: rollovers, expirations, triggers, stop-out.

`on_time` charges the swaps of each 00:00 (UTC) rollover passed — the night ending on a Wednesday counts
three (MT5's `SYMBOL_SWAP_ROLLOVER3DAYS`), weekend nights none — and expires pending orders. `on_tick`
triggers pending orders and SL/TP of the tick's symbol, revalues the account and stops out while the margin
level is at or below the stop-out level. Swaps are `SymbolSpec.swap_long`/`swap_short` points per lot per
night, converted to account money like profit; they accumulate on the position and are booked by the deal
that closes it.
"""

from __future__ import annotations

from fractions import Fraction

import msgspec

from aitrading.model.calc import conversion_rate, to_money
from aitrading.model.enums import OrderState, OrderType, Side
from aitrading.model.market import Tick
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, price_decimal
from aitrading.mt5 import constants as c
from aitrading.mt5.sim._ledger import NS_PER_DAY, Ledger, expiry_ns
from aitrading.mt5.sim.book import BookOrder

__all__ = ["on_tick", "on_time"]

_COMMENT_MAX = 31


def _price_text(raw: int, spec: SymbolSpec) -> str:
    return f"{price_decimal(raw):.{spec.digits}f}"


def on_time(ledger: Ledger, now_ns: int) -> None:
    """Process the rollovers and expirations due by `now_ns`."""
    book = ledger.book
    day = now_ns // NS_PER_DAY
    if book.rollover_day != day:  # else nothing to roll over (every quote but the day's first)
        if book.rollover_day is None:
            book.rollover_day = day
            ledger.dirty = True
        while book.rollover_day < day:
            book.rollover_day += 1
            _rollover(ledger, book.rollover_day)
            ledger.dirty = True
    if not book.orders:
        return
    for order in list(book.orders.values()):
        expires = expiry_ns(order)
        if expires and now_ns >= expires:
            ledger.archive(order, OrderState.EXPIRED, expires)


def _rollover(ledger: Ledger, day: int) -> None:
    """Charge the swaps of the night that ends at 00:00 of `day`; Wednesday's counts three nights."""
    weekday = (day - 1 + 3) % 7  # Monday = 0; epoch day 0 (1970-01-01) was a Thursday
    if weekday >= 5:
        return
    nights = 3 if weekday == 2 else 1
    digits = ledger.account.currency_digits
    for key, p in list(ledger.book.positions.items()):
        spec = ledger.specs[p.symbol]
        points = spec.swap_long if p.type is Side.BUY else spec.swap_short
        if not points:
            continue
        amount = (
            Fraction(points)
            * Fraction(spec.point_raw, PRICE_SCALE)
            * Fraction(p.volume, VOLUME_SCALE)
            * Fraction(spec.contract_size)
            * nights
        )
        loss = amount < 0
        try:
            rate = conversion_rate(
                spec.currency_profit,
                ledger.account.currency,
                ledger.quotes,
                use_ask_direct=loss,
                use_ask_inverse=not loss,
            )
        except ValueError:
            continue  # no conversion quote: the night goes uncharged rather than guessed
        charge = to_money(amount * rate, digits)
        ledger.book.positions[key] = msgspec.structs.replace(p, swap=p.swap + charge)


def on_tick(ledger: Ledger, tick: Tick) -> None:
    """Take a new quote: trigger pending orders and SL/TP, revalue, stop out if the margin is gone."""
    ledger.quotes.ticks[tick.symbol] = tick
    if tick.bid <= 0 or tick.ask <= 0 or tick.bid > tick.ask:
        return
    time_ns = tick.time_msc * 1_000_000
    book = ledger.book
    if book.orders:
        _trigger_orders(ledger, tick, time_ns)
    if book.positions:
        _trigger_stops(ledger, tick, time_ns)
        ledger.revalue(tick.symbol)
        if ledger.stop_out:
            _stop_out(ledger, time_ns)
    elif ledger.dirty:
        ledger.revalue()


def _trigger_stops(ledger: Ledger, tick: Tick, time_ns: int) -> None:
    symbol, bid, ask = tick.symbol, tick.bid, tick.ask
    for p in ledger.book.positions.values():
        if (p.sl or p.tp) and p.symbol == symbol:
            price = ask if p.type else bid  # `exit_price`: SELL (1) at the ask, BUY (0) at the bid
            sign = p.type.sign
            if (p.sl and (price - p.sl) * sign <= 0) or (p.tp and (p.tp - price) * sign <= 0):
                break
    else:
        return  # no stop hit (most quotes): the loop below would close nothing
    spec = ledger.specs[symbol]
    if ledger.missing_rate(symbol):
        return  # cannot book the profit yet: the stops fire on a tick once the conversion is quoted
    for p in sorted(ledger.book.positions.values(), key=lambda p: p.ticket):
        if p.symbol != tick.symbol:
            continue
        price = p.type.exit_price(tick.bid, tick.ask)
        if p.sl and (price - p.sl) * p.type.sign <= 0:
            reason, comment = c.DEAL_REASON_SL, f"[sl {_price_text(p.sl, spec)}]"
        elif p.tp and (p.tp - price) * p.type.sign <= 0:
            reason, comment = c.DEAL_REASON_TP, f"[tp {_price_text(p.tp, spec)}]"
        else:
            continue
        ledger.close_position(p, price, time_ns, reason=reason, comment=comment)


def _trigger_orders(ledger: Ledger, tick: Tick, time_ns: int) -> None:
    bid, ask = tick.bid, tick.ask
    if ledger.missing_rate(tick.symbol):
        return  # cannot value the fill yet: the orders trigger on a tick once the conversion is quoted
    for placed in sorted(ledger.book.orders.values(), key=lambda o: o.ticket):
        if placed.symbol != tick.symbol:
            continue
        order, kind, price = placed, placed.type, placed.price_open
        if (kind is OrderType.BUY_STOP_LIMIT and ask >= price) or (
            kind is OrderType.SELL_STOP_LIMIT and bid <= price
        ):
            # The stop part triggered: the order becomes a limit order at its stop-limit price.
            kind = OrderType.BUY_LIMIT if kind is OrderType.BUY_STOP_LIMIT else OrderType.SELL_LIMIT
            order = msgspec.structs.replace(
                order, type=kind, price_open=order.price_stoplimit, price_stoplimit=0
            )
            ledger.book.orders[order.ticket] = order
            ledger.dirty = True
            price = order.price_open
        hit = {
            OrderType.BUY_LIMIT: ask <= price,
            OrderType.SELL_LIMIT: bid >= price,
            OrderType.BUY_STOP: ask >= price,
            OrderType.SELL_STOP: bid <= price,
        }.get(kind, False)
        if hit:
            _fill_pending(ledger, order, tick, time_ns)


def _fill_pending(ledger: Ledger, order: BookOrder, tick: Tick, time_ns: int) -> None:
    side = order.type.side
    price = side.entry_price(tick.bid, tick.ask)
    if order.type in (OrderType.BUY_STOP, OrderType.SELL_STOP):
        price = ledger.slipped(price, side, ledger.specs[order.symbol])
    plan = ledger.plan_fill(order, side, order.volume_current, price, time_ns, reason=order.reason)
    if ledger.no_money(plan):
        ledger.archive(order, OrderState.REJECTED, time_ns, price_current=price)
        return
    deal = ledger.commit(plan)
    ledger.archive(
        order,
        OrderState.FILLED,
        time_ns,
        volume_current=0,
        price_current=price,
        position_id=deal.position_id,
    )
    ledger.revalue(order.symbol)


def _stop_out(ledger: Ledger, time_ns: int) -> None:
    """Close the most losing position while the margin level is at or below the stop-out level."""
    so_level = ledger.account.margin_so_so
    while ledger.book.positions:
        if not ledger.level_at_most(so_level):
            return
        state = ledger.state
        level = state.margin_level
        candidates = [
            p
            for p in ledger.book.positions.values()
            if p.symbol in ledger.quotes.ticks and not ledger.missing_rate(p.symbol)
        ]
        if not candidates:
            return
        worst = min(candidates, key=lambda p: (p.profit + p.swap, p.ticket))
        tick = ledger.quotes.ticks[worst.symbol]
        comment = f"[so {level}%/{state.equity}/{state.margin}]"[:_COMMENT_MAX]
        price = worst.type.exit_price(tick.bid, tick.ask)
        ledger.close_position(worst, price, time_ns, reason=c.DEAL_REASON_SO, comment=comment)
        ledger.revalue()
