"""The simulated trade server's request handlers, one per `TRADE_ACTION_*` (semantics: `broker`'s docstring).

Each handler checks a request and returns `Ready` (the account after it and a `commit` that books it) or
raises `Refused` with the retcode. `dry` handlers (order_check) draw no slippage or requote and book nothing.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from aitrading.model.accounts import AccountState
from aitrading.model.checks import CheckResult, check_request
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderFilling, OrderState, OrderType, Side, TradeAction
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.mt5 import constants as c
from aitrading.mt5.sim import market_hours
from aitrading.mt5.sim._checks import MarginProblems
from aitrading.mt5.sim._ledger import FillPlan, Ledger
from aitrading.mt5.sim.answers import Ready, Refused, TradeAnswer, retcode_text
from aitrading.mt5.sim.book import BookOrder

__all__ = ["Requests"]

_INFINITY = Decimal("Infinity")
_LIMIT_LIKE = frozenset(
    {OrderType.BUY_LIMIT, OrderType.SELL_LIMIT, OrderType.BUY_STOP_LIMIT, OrderType.SELL_STOP_LIMIT}
)


_NEW_ORDER = (TradeAction.DEAL, TradeAction.PENDING)


def _done(
    *, deal: int = 0, order: int = 0, volume: int = 0, price: int = 0, bid: int = 0, ask: int = 0
) -> TradeAnswer:
    return TradeAnswer(
        retcode=c.TRADE_RETCODE_DONE,
        comment=retcode_text(c.TRADE_RETCODE_DONE),
        deal=deal,
        order=order,
        volume=volume,
        price=price,
        bid=bid,
        ask=ask,
    )


class Requests:
    """Check and execute requests against a `Ledger`."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._unlimited: AccountState | None = None
        self._margin_problems = MarginProblems(ledger)

    def market_open(self, now_ns: int) -> bool:
        """Tell whether requests are accepted at `now_ns`."""
        return self._ledger.settings.always_open or market_hours.is_open(now_ns // 1_000_000)

    def prepare(self, request: OrderRequest, now_ns: int, *, dry: bool, reason: int) -> Ready:
        """Check `request`; return how to book it, or raise `Refused`."""
        if request.action is TradeAction.DEAL:
            return self._deal(request, now_ns, dry, reason)
        if request.action is TradeAction.PENDING:
            return self._pending(request, now_ns, reason)
        if request.action is TradeAction.SLTP:
            return self._sltp(request, now_ns)
        if request.action is TradeAction.MODIFY:
            return self._modify(request, now_ns)
        if request.action is TradeAction.REMOVE:
            return self._remove(request, now_ns)
        return self._close_by(request, now_ns)

    # --- helpers ---------------------------------------------------------------------------------------
    def _spec(self, symbol: str) -> tuple[SymbolSpec, Tick]:
        spec = self._ledger.specs.get(symbol)
        if spec is None:
            raise Refused(c.TRADE_RETCODE_INVALID, f"unknown symbol {symbol!r}")
        tick = self._ledger.quotes.ticks.get(symbol) or Tick(feed="", symbol=symbol, time_msc=0, bid=0, ask=0)
        return spec, tick

    def _check(
        self, request: OrderRequest, spec: SymbolSpec, tick: Tick, now_ns: int, *, money: bool = False
    ) -> CheckResult:
        """Run `check_request`, with its own money check only when `money` (pending orders)."""
        account = self._ledger.state if money else self._unlimited_account()
        result = check_request(
            request,
            spec,
            tick,
            account,
            now_ms=now_ns // 1_000_000,
            market_open=self.market_open(now_ns),
            rates=self._ledger.quotes,
            money=money,
        )
        if not result.ok:
            raise Refused(result.retcode, result.comment)
        if not money and request.action in _NEW_ORDER:
            problem = self._margin_problems.find(spec, request.type.side, tick)
            if problem:  # check_request's own step 8 would have said so
                raise Refused(c.TRADE_RETCODE_ERROR, f"cannot compute margin: {problem}")
        return result

    def _state_now(self) -> AccountState:
        return self._ledger.state

    def _unlimited_account(self) -> AccountState:
        """The account with an infinite free margin, which switches check_request's NO_MONEY off where the
        whole-account check rules. check_request then reads only its leverage, currency and digits besides
        (fixed for the account), so one such state serves every request."""
        account = self._unlimited
        if account is None:
            account = self._unlimited = msgspec.structs.replace(self._ledger.state, margin_free=_INFINITY)
        return account

    def _filling(self, request: OrderRequest) -> None:
        allowed = self._ledger.settings.filling_mode
        kind, filling = request.type, request.filling
        if filling == OrderFilling.FOK:
            ok = bool(allowed & c.SYMBOL_FILLING_FOK)
        elif filling == OrderFilling.IOC:
            ok = bool(allowed & c.SYMBOL_FILLING_IOC)
        elif filling == OrderFilling.BOC:
            ok = bool(allowed & c.SYMBOL_FILLING_BOC) and kind in _LIMIT_LIKE
        elif filling == OrderFilling.RETURN:
            # Market execution allows RETURN only for limit and stop-limit orders (MT5's fill-policy table).
            ok = kind in _LIMIT_LIKE
        else:
            raise KeyError(filling)
        if not ok:
            raise Refused(
                c.TRADE_RETCODE_INVALID_FILL, f"ORDER_FILLING_{filling.name} is not allowed for {kind.name}"
            )

    def _after_fill(self, plan: FillPlan) -> AccountState:
        state = self._ledger.state
        used, _ = self._ledger.margin_after(plan)
        deal = plan.deal
        balance = state.balance + deal.balance_change
        equity = state.equity + deal.commission
        return state.updated(balance=balance, floating=equity - balance - state.credit, margin=used)

    def _convertible(self, symbol: str) -> None:
        missing = self._ledger.missing_rate(symbol)
        if missing:
            raise Refused(c.TRADE_RETCODE_ERROR, f"cannot value {symbol} in account money: {missing}")

    def _position(self, ticket: int) -> Position:
        found = self._ledger.find_position(ticket)
        if found is None:
            raise Refused(c.TRADE_RETCODE_POSITION_CLOSED, f"position {ticket} is not open")
        return found

    def _frozen(self, spec: SymbolSpec, distance: int, what: str) -> None:
        """Refuse with FROZEN when `distance` (raw, from the market) is within the freeze level."""
        if spec.freeze_level and distance <= spec.freeze_level * spec.point_raw:
            raise Refused(
                c.TRADE_RETCODE_FROZEN, f"{what} is within the freeze level of {spec.freeze_level} points"
            )

    # --- TRADE_ACTION_DEAL ------------------------------------------------------------------------------
    def _deal(self, request: OrderRequest, now_ns: int, dry: bool, reason: int) -> Ready:
        ledger = self._ledger
        book = ledger.book
        target = None
        if request.position:
            target = self._position(request.position)
            if not request.symbol:
                request = msgspec.structs.replace(request, symbol=target.symbol)
        spec, tick = self._spec(request.symbol)
        self._check(request, spec, tick, now_ns)
        self._filling(request)
        side = request.type.side
        if target is not None:
            if target.symbol != request.symbol or target.type is side:
                raise Refused(
                    c.TRADE_RETCODE_INVALID,
                    f"a {side.name} {request.symbol} deal cannot close position {target.ticket}",
                )
            if request.volume > target.volume:
                raise Refused(
                    c.TRADE_RETCODE_INVALID_CLOSE_VOLUME,
                    f"volume {request.volume} exceeds position {target.ticket}'s {target.volume}",
                )
        self._convertible(request.symbol)
        price = side.entry_price(tick.bid, tick.ask)
        if not dry:
            price = ledger.slipped(price, side, spec)
        if request.price and (price - request.price) * side.sign > request.deviation * spec.point_raw:
            raise Refused(
                c.TRADE_RETCODE_REQUOTE, f"price moved beyond {request.deviation} points of {request.price}"
            )
        if (
            not dry
            and ledger.settings.requote_probability
            and ledger.rng.random() < ledger.settings.requote_probability
        ):
            raise Refused(c.TRADE_RETCODE_REQUOTE, "requoted")
        order = BookOrder(
            ticket=book.next_order,
            symbol=request.symbol,
            type=request.type,
            state=OrderState.STARTED,
            volume_initial=request.volume,
            volume_current=request.volume,
            price_open=price,
            price_current=price,
            sl=request.sl,
            tp=request.tp,
            type_filling=request.filling,
            type_time=request.type_time,
            magic=request.magic,
            comment=request.comment,
            reason=reason,
            time_setup_ns=now_ns,
        )
        hedged_target = target.identifier if target is not None and book.hedging else 0
        plan = ledger.plan_fill(
            order, side, request.volume, price, now_ns, target=hedged_target, reason=reason
        )
        if ledger.no_money(plan):
            used, free = ledger.margin_after(plan)
            raise Refused(
                c.TRADE_RETCODE_NO_MONEY, f"free margin after the deal would be {free} (margin {used})"
            )

        def commit() -> TradeAnswer:
            book.take_order_ticket()
            deal = ledger.commit(plan)
            ledger.archive(order, OrderState.FILLED, now_ns, volume_current=0, position_id=deal.position_id)
            return _done(
                deal=deal.ticket,
                order=order.ticket,
                volume=deal.volume,
                price=price,
                bid=tick.bid,
                ask=tick.ask,
            )

        return Ready(lambda: self._after_fill(plan), commit)

    # --- TRADE_ACTION_PENDING ---------------------------------------------------------------------------
    def _pending(self, request: OrderRequest, now_ns: int, reason: int) -> Ready:
        ledger = self._ledger
        book = ledger.book
        spec, tick = self._spec(request.symbol)
        checked = self._check(request, spec, tick, now_ns, money=True)
        self._filling(request)
        if len(book.orders) >= ledger.account.limit_orders:
            raise Refused(
                c.TRADE_RETCODE_LIMIT_ORDERS, f"{len(book.orders)} pending orders is the account's limit"
            )
        side = request.type.side
        order = BookOrder(
            ticket=book.next_order,
            symbol=request.symbol,
            type=request.type,
            state=OrderState.PLACED,
            volume_initial=request.volume,
            volume_current=request.volume,
            price_open=request.price,
            price_stoplimit=request.stoplimit,
            sl=request.sl,
            tp=request.tp,
            price_current=side.entry_price(tick.bid, tick.ask),
            type_filling=request.filling,
            type_time=request.type_time,
            expiration_ns=request.expiration_ns,
            magic=request.magic,
            comment=request.comment,
            reason=reason,
            time_setup_ns=now_ns,
        )

        def after() -> AccountState:
            state = ledger.state
            return state.updated(margin=state.margin + checked.margin)

        def commit() -> TradeAnswer:
            book.take_order_ticket()
            book.orders[order.ticket] = order
            ledger.dirty = True
            return _done(order=order.ticket, volume=order.volume_initial, bid=tick.bid, ask=tick.ask)

        return Ready(after, commit)

    # --- TRADE_ACTION_SLTP ------------------------------------------------------------------------------
    def _sltp(self, request: OrderRequest, now_ns: int) -> Ready:
        ledger = self._ledger
        if request.position:
            position = self._position(request.position)
        elif ledger.book.hedging:
            raise Refused(c.TRADE_RETCODE_INVALID, "TRADE_ACTION_SLTP on a hedging account needs `position`")
        else:
            found = ledger.netting_position(request.symbol)
            if found is None:
                raise Refused(c.TRADE_RETCODE_POSITION_CLOSED, f"no {request.symbol} position is open")
            position = found
        request = self._same_symbol(request, position.symbol)
        spec, tick = self._spec(position.symbol)
        # The stops rules of a market order of the position's side are the rules for the position's stops.
        probe = msgspec.structs.replace(
            request,
            action=TradeAction.DEAL,
            type=OrderType(position.type.value),
            volume=spec.volume_min,
            price=0,
            stoplimit=0,
            filling=OrderFilling.FOK,
            position=0,
        )
        self._check(probe, spec, tick, now_ns)
        if (request.sl, request.tp) == (position.sl, position.tp):
            raise Refused(c.TRADE_RETCODE_NO_CHANGES, "sl and tp are already these")
        price = position.type.exit_price(tick.bid, tick.ask)
        for name, stop in (("sl", position.sl), ("tp", position.tp)):
            if stop:
                self._frozen(spec, abs(price - stop), f"the position's {name}")
        changed = msgspec.structs.replace(position, sl=request.sl, tp=request.tp, time_update_ns=now_ns)

        def commit() -> TradeAnswer:
            ledger.book.positions[position.identifier] = changed
            ledger.dirty = True
            return _done(bid=tick.bid, ask=tick.ask)

        return Ready(self._state_now, commit)

    def _same_symbol(self, request: OrderRequest, symbol: str) -> OrderRequest:
        if not request.symbol:
            return msgspec.structs.replace(request, symbol=symbol)
        if request.symbol != symbol:
            raise Refused(
                c.TRADE_RETCODE_INVALID, f"the request is for {request.symbol}, its target for {symbol}"
            )
        return request

    # --- TRADE_ACTION_MODIFY / REMOVE -------------------------------------------------------------------
    def _pending_order(self, request: OrderRequest) -> BookOrder:
        order = self._ledger.book.orders.get(request.order)
        if order is None:
            raise Refused(c.TRADE_RETCODE_INVALID, f"order {request.order} is not an active pending order")
        return order

    def _frozen_order(self, order: BookOrder, spec: SymbolSpec, tick: Tick) -> None:
        side = order.type.side
        market = side.entry_price(tick.bid, tick.ask)
        self._frozen(spec, abs(market - order.price_open), f"order {order.ticket}")

    def _modify(self, request: OrderRequest, now_ns: int) -> Ready:
        ledger = self._ledger
        order = self._pending_order(request)
        request = self._same_symbol(request, order.symbol)
        spec, tick = self._spec(order.symbol)
        stoplimit = request.stoplimit if order.type.is_stop_limit else 0
        probe = msgspec.structs.replace(
            request,
            action=TradeAction.PENDING,
            type=order.type,
            volume=order.volume_current,
            stoplimit=stoplimit,
            filling=order.type_filling,
        )
        self._check(probe, spec, tick, now_ns)
        self._frozen_order(order, spec, tick)
        changes = {
            "price_open": request.price,
            "price_stoplimit": stoplimit,
            "sl": request.sl,
            "tp": request.tp,
            "type_time": request.type_time,
            "expiration_ns": request.expiration_ns,
        }
        if all(getattr(order, name) == value for name, value in changes.items()):
            raise Refused(c.TRADE_RETCODE_NO_CHANGES, f"order {order.ticket} already has these values")
        changed = msgspec.structs.replace(order, **changes)

        def commit() -> TradeAnswer:
            ledger.book.orders[order.ticket] = changed
            ledger.dirty = True
            return _done(order=order.ticket, bid=tick.bid, ask=tick.ask)

        return Ready(self._state_now, commit)

    def _remove(self, request: OrderRequest, now_ns: int) -> Ready:
        ledger = self._ledger
        order = self._pending_order(request)
        request = self._same_symbol(request, order.symbol)
        spec, tick = self._spec(order.symbol)
        self._check(request, spec, tick, now_ns)
        self._frozen_order(order, spec, tick)

        def commit() -> TradeAnswer:
            ledger.archive(order, OrderState.CANCELED, now_ns)
            return _done(order=order.ticket, bid=tick.bid, ask=tick.ask)

        return Ready(self._state_now, commit)

    # --- TRADE_ACTION_CLOSE_BY --------------------------------------------------------------------------
    def _close_by(self, request: OrderRequest, now_ns: int) -> Ready:
        ledger = self._ledger
        book = ledger.book
        if not book.hedging:
            raise Refused(c.TRADE_RETCODE_INVALID, "TRADE_ACTION_CLOSE_BY is for hedging accounts")
        position, by = self._position(request.position), self._position(request.position_by)
        if position.symbol != by.symbol or position.type is by.type:
            raise Refused(
                c.TRADE_RETCODE_INVALID,
                f"positions {position.ticket} and {by.ticket} are not opposite in one symbol",
            )
        request = self._same_symbol(request, position.symbol)
        spec, tick = self._spec(position.symbol)
        self._check(request, spec, tick, now_ns)
        self._convertible(position.symbol)
        volume = min(position.volume, by.volume)
        price = by.price_open_raw

        def commit() -> TradeAnswer:
            order = BookOrder(
                ticket=book.take_order_ticket(),
                symbol=position.symbol,
                type=OrderType.CLOSE_BY,
                state=OrderState.STARTED,
                volume_initial=volume,
                volume_current=volume,
                price_open=price,
                price_current=price,
                magic=request.magic,
                comment=request.comment,
                position_id=position.identifier,
                position_by_id=by.identifier,
                reason=c.ORDER_REASON_EXPERT,
                time_setup_ns=now_ns,
            )
            first = None
            for closed in (position, by):
                side: Side = closed.type.opposite
                plan = ledger.plan_fill(
                    order, side, volume, price, now_ns, target=closed.identifier, out_by=True
                )
                deal = ledger.commit(plan)
                first = first or deal
            ledger.archive(order, OrderState.FILLED, now_ns, volume_current=0)
            assert first is not None
            return _done(
                deal=first.ticket, order=order.ticket, volume=volume, price=price, bid=tick.bid, ask=tick.ask
            )

        return Ready(self._state_now, commit)
