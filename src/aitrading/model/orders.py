"""Orders and their explicit state machine, with MT5's `ORDER_STATE_*` as the states.

`transition(order, event)` is the only way an order changes. It refuses an event its state does not allow
with `OrderStateError` (FILLED → CANCELED, a fill beyond the volume, …). Fills accumulate exactly; their
average price is an exact fraction. Redelivered events are harmless (the bus delivers at least once): a
fill whose deal the order has booked, an acceptance with the ticket it has, and a terminal event repeating
the terminal state the order is in all return the order unchanged.

    event                   legal in                                    leads to
    OrderSubmitted          STARTED                                     REQUEST_ADD
    OrderDenied             STARTED                                     REJECTED
    OrderAccepted           REQUEST_ADD                                 PLACED
    OrderRejected           REQUEST_ADD                                 REJECTED
                            REQUEST_MODIFY, REQUEST_CANCEL              PLACED or PARTIAL, as it was
    Order(Partially)Filled  REQUEST_ADD, PLACED, PARTIAL, REQUEST_*     PARTIAL (REQUEST_* stay) or FILLED
    OrderModifySubmitted    PLACED, PARTIAL                             REQUEST_MODIFY
    OrderModified           PLACED, PARTIAL, REQUEST_MODIFY             PLACED or PARTIAL, new prices
    OrderCancelSubmitted    PLACED, PARTIAL, REQUEST_MODIFY             REQUEST_CANCEL
    OrderCanceled           REQUEST_ADD, PLACED, PARTIAL, REQUEST_*     CANCELED
    OrderExpired            PLACED, PARTIAL, REQUEST_*                  EXPIRED

A request that fails `request_problems` never becomes an `Order`: the engine answers it with `OrderDenied`.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec

from aitrading.common.errors import BadInputError
from aitrading.model._exact import notional_decimal, notional_from_decimal, notional_raw
from aitrading.model.commands import OrderRequest, request_problems
from aitrading.model.enums import OrderFilling, OrderState, OrderTime, OrderType, TradeAction
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
from aitrading.model.ids import AccountId, ClientOrderId, StrategyId, TenantId
from aitrading.model.values import PRICE_SCALE

__all__ = [
    "Order",
    "OrderFilling",
    "OrderRequest",
    "OrderState",
    "OrderStateError",
    "OrderTime",
    "OrderType",
    "TradeAction",
    "allowed_states",
    "request_problems",
    "transition",
]

_S = OrderState
_ZERO = Decimal(0)
_WORKING = frozenset({_S.REQUEST_ADD, _S.PLACED, _S.PARTIAL, _S.REQUEST_MODIFY, _S.REQUEST_CANCEL})
_ALLOWED: dict[type[OrderEvent], frozenset[OrderState]] = {
    OrderSubmitted: frozenset({_S.STARTED}),
    OrderDenied: frozenset({_S.STARTED}),
    OrderAccepted: frozenset({_S.REQUEST_ADD}),
    OrderRejected: frozenset({_S.REQUEST_ADD, _S.REQUEST_MODIFY, _S.REQUEST_CANCEL}),
    OrderPartiallyFilled: _WORKING,
    OrderFilled: _WORKING,
    OrderModifySubmitted: frozenset({_S.PLACED, _S.PARTIAL}),
    OrderModified: frozenset({_S.PLACED, _S.PARTIAL, _S.REQUEST_MODIFY}),
    OrderCancelSubmitted: frozenset({_S.PLACED, _S.PARTIAL, _S.REQUEST_MODIFY}),
    OrderCanceled: _WORKING,
    OrderExpired: _WORKING - {_S.REQUEST_ADD},
}
_TERMINAL_BY: dict[type[OrderEvent], OrderState] = {
    OrderDenied: _S.REJECTED,
    OrderRejected: _S.REJECTED,
    OrderCanceled: _S.CANCELED,
    OrderExpired: _S.EXPIRED,
}


class OrderStateError(BadInputError):
    """The event cannot happen to the order in its current state."""


def allowed_states(event_type: type[OrderEvent]) -> frozenset[OrderState]:
    """Return the states in which an event of `event_type` is legal (besides harmless redeliveries)."""
    return _ALLOWED[event_type]


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """One order of one account as the platform knows it.

    `volume` and `volume_filled` are raw (1e-8 lots), prices raw (1e-9), times UTC epoch ns.
    `filled_cost` is Σ price × lots of the fills, exact; `deals` the tickets of the deals booked.
    """

    client_order_id: ClientOrderId
    tenant: TenantId
    account: AccountId
    symbol: str
    type: OrderType
    state: OrderState = OrderState.STARTED
    volume: int
    volume_filled: int = 0
    filled_cost: Decimal = _ZERO
    price: int = 0
    stoplimit: int = 0
    sl: int = 0
    tp: int = 0
    filling: OrderFilling = OrderFilling.FOK
    type_time: OrderTime = OrderTime.GTC
    expiration_ns: int = 0
    magic: int = 0
    comment: str = ""
    strategy: StrategyId | None = None
    ticket: int = 0
    position_id: int = 0
    position_by: int = 0
    deals: tuple[int, ...] = ()
    retcode: int = 0
    reason: str = ""
    time_setup_ns: int
    time_update_ns: int = 0
    time_done_ns: int = 0

    @classmethod
    def from_request(cls, req: OrderRequest) -> Order:
        """Return the STARTED order for a DEAL, PENDING or CLOSE_BY request; raise `BadInputError` else."""
        if not req.opens_order:
            raise BadInputError(f"TRADE_ACTION_{req.action.name} changes an existing order or position")
        problems = request_problems(req)
        if problems:
            raise BadInputError(f"order {req.client_order_id}: {'; '.join(problems)}")
        return cls(
            client_order_id=req.client_order_id,
            tenant=req.tenant,
            account=req.account,
            symbol=req.symbol,
            type=OrderType.CLOSE_BY if req.action is TradeAction.CLOSE_BY else req.type,
            volume=req.volume,
            price=req.price,
            stoplimit=req.stoplimit,
            sl=req.sl,
            tp=req.tp,
            filling=req.filling,
            type_time=req.type_time,
            expiration_ns=req.expiration_ns,
            magic=req.magic,
            comment=req.comment,
            strategy=req.strategy,
            position_id=req.position,
            position_by=req.position_by,
            time_setup_ns=req.ts_ns,
            time_update_ns=req.ts_ns,
        )

    @property
    def volume_remaining(self) -> int:
        """Raw volume still to fill."""
        return self.volume - self.volume_filled

    @property
    def avg_fill_price(self) -> Fraction | None:
        """The exact volume-weighted average fill price in price units, None before the first fill."""
        if not self.volume_filled:
            return None
        return Fraction(notional_from_decimal(self.filled_cost), self.volume_filled * PRICE_SCALE)

    @property
    def is_terminal(self) -> bool:
        """True once the order is FILLED, CANCELED, REJECTED or EXPIRED."""
        return self.state.is_terminal


def transition(order: Order, event: OrderEvent) -> Order:
    """Return `order` after `event`; raise `OrderStateError` if the event is illegal in its state."""
    if (event.client_order_id, event.tenant, event.account) != (
        order.client_order_id,
        order.tenant,
        order.account,
    ):
        raise BadInputError(
            f"{type(event).__name__} for {event.tenant}/{event.account}/{event.client_order_id} "
            f"applied to order {order.tenant}/{order.account}/{order.client_order_id}"
        )
    # Every order is submitted and accepted: what `_steps` comes to for those, `_redelivered` finding nothing.
    state = order.state
    if (
        type(event) is OrderAccepted
        and isinstance(event, OrderAccepted)  # (for the type checker)
        and state is _S.REQUEST_ADD
        and not (order.ticket and event.ticket == order.ticket)
    ):
        return msgspec.structs.replace(
            order, state=_S.PLACED, time_update_ns=event.ts_ns, ticket=event.ticket, retcode=event.retcode
        )
    if (
        type(event) is OrderSubmitted
        and isinstance(event, OrderSubmitted)
        and state is _S.STARTED
        and event.request.client_order_id == order.client_order_id
    ):
        return msgspec.structs.replace(order, state=_S.REQUEST_ADD, time_update_ns=event.ts_ns)
    return _steps(order, event)


def _steps(order: Order, event: OrderEvent) -> Order:
    """`transition` of an event that concerns `order`, step by step."""
    if isinstance(event, OrderPartiallyFilled | OrderFilled):
        return _fill(order, event)
    again = _redelivered(order, event)
    if again is not None:
        return again
    _require(order, event, order.state in _ALLOWED[type(event)])
    if isinstance(event, OrderSubmitted):
        same = event.request.client_order_id == order.client_order_id
        _require(order, event, same, "it carries another order's request")
        return _with(order, event, _S.REQUEST_ADD)
    if isinstance(event, OrderDenied):
        reason = f"{event.reason}: {event.text}" if event.text else event.reason
        return _with(order, event, _S.REJECTED, done=True, reason=reason)
    if isinstance(event, OrderAccepted):
        return _with(order, event, _S.PLACED, ticket=event.ticket, retcode=event.retcode)
    if isinstance(event, OrderRejected):
        if order.state is _S.REQUEST_ADD:
            return _with(order, event, _S.REJECTED, done=True, retcode=event.retcode, reason=event.text)
        return _with(order, event, _live(order), retcode=event.retcode, reason=event.text)
    if isinstance(event, OrderModifySubmitted):
        return _with(order, event, _S.REQUEST_MODIFY)
    if isinstance(event, OrderModified):
        return _with(
            order,
            event,
            _live(order),
            price=event.price,
            stoplimit=event.stoplimit,
            sl=event.sl,
            tp=event.tp,
            expiration_ns=event.expiration_ns,
        )
    if isinstance(event, OrderCancelSubmitted):
        return _with(order, event, _S.REQUEST_CANCEL)
    if isinstance(event, OrderCanceled):
        return _with(order, event, _S.CANCELED, done=True, reason=event.reason)
    return _with(order, event, _S.EXPIRED, done=True)


def _fill(order: Order, event: OrderPartiallyFilled | OrderFilled) -> Order:
    deal = event.deal
    if deal.ticket in order.deals:
        return order
    # The reasons are formatted only for a refusal (this runs for every fill).
    _require(order, event, order.state in _WORKING)
    if not (deal.is_trade and deal.volume > 0):
        _require(order, event, False, f"deal {deal.ticket} is no trade with volume")
    if order.type is not OrderType.CLOSE_BY and deal.side is not order.type.side:
        _require(order, event, False, f"deal {deal.ticket} is {deal.side.name}")
    filled = order.volume_filled + deal.volume
    if filled > order.volume:
        _require(order, event, False, f"filling {deal.volume} more would make {filled} of {order.volume}")
    complete = filled == order.volume
    _require(
        order,
        event,
        complete == isinstance(event, OrderFilled),
        "OrderFilled must fill the rest and OrderPartiallyFilled must leave some open",
    )
    if complete:
        state = _S.FILLED
    elif order.state in (_S.REQUEST_MODIFY, _S.REQUEST_CANCEL):
        state = order.state  # the modify or cancel is still on its way
    else:
        state = _S.PARTIAL
    cost = notional_from_decimal(order.filled_cost) + notional_raw(deal.price, deal.volume)
    return _with(
        order,
        event,
        state,
        done=complete,
        volume_filled=filled,
        filled_cost=notional_decimal(cost),
        deals=(*order.deals, deal.ticket),
        ticket=order.ticket or deal.order,
        position_id=order.position_id or deal.position_id,
    )


def _redelivered(order: Order, event: OrderEvent) -> Order | None:
    """Return the order if `event` is a harmless repeat (or a late acceptance), else None."""
    if isinstance(event, OrderAccepted):
        if order.ticket and event.ticket == order.ticket:
            return order
        if order.state in (_S.PARTIAL, _S.FILLED) and not order.ticket:  # the fill overtook the result
            return _with(order, event, order.state, ticket=event.ticket, retcode=event.retcode)
    if order.state.is_terminal and _TERMINAL_BY.get(type(event)) is order.state:
        return order
    return None


def _live(order: Order) -> OrderState:
    return _S.PARTIAL if order.volume_filled else _S.PLACED


def _require(order: Order, event: OrderEvent, ok: bool, why: str = "") -> None:
    if not ok:
        detail = f": {why}" if why else ""
        name = type(event).__name__
        state = order.state.name
        raise OrderStateError(f"order {order.client_order_id} is {state}; {name} cannot apply{detail}")


def _with(
    order: Order, event: OrderEvent, state: OrderState, *, done: bool = False, **changes: object
) -> Order:
    if done:
        changes["time_done_ns"] = event.ts_ns
    return msgspec.structs.replace(order, state=state, time_update_ns=event.ts_ns, **changes)
