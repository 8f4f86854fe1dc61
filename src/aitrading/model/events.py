"""Domain events on the bus: orders, positions, accounts, components, rejected ticks.

A tenant's events carry `tenant` and `account` and go to `ord.evt.<tenant>.<account>`; every event carries
`ts_ns` (UTC epoch ns, from the injected clock). Order events drive `orders.transition` (its docstring
draws the state machine).
"""

from __future__ import annotations

from decimal import Decimal

from aitrading.common.bus.codec import Message
from aitrading.common.lifecycle import ComponentState
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.positions import Position

__all__ = [
    "AccountRiskStateChanged",
    "AccountUpdated",
    "ComponentStateChanged",
    "OrderAccepted",
    "OrderCancelSubmitted",
    "OrderCanceled",
    "OrderDenied",
    "OrderEvent",
    "OrderExpired",
    "OrderFilled",
    "OrderModified",
    "OrderModifySubmitted",
    "OrderPartiallyFilled",
    "OrderRejected",
    "OrderSubmitted",
    "PositionChanged",
    "PositionClosed",
    "PositionOpened",
    "ReconciliationAlert",
    "TickRejected",
]


class OrderSubmitted(Message, frozen=True):
    """The request passed the risk checks and went to the terminal."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    request: OrderRequest


class OrderDenied(Message, frozen=True):
    """The platform refused the order before sending it (`reason` is a stable code such as `max_volume`)."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    reason: str
    text: str = ""


class OrderAccepted(Message, frozen=True):
    """The trade server accepted the order and gave it `ticket` (retcode DONE or PLACED)."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    ticket: int
    retcode: int = 10009


class OrderRejected(Message, frozen=True):
    """The trade server refused the request (`retcode` is MT5's `TRADE_RETCODE_*`).

    A refused new order ends REJECTED; a refused modify or cancel leaves the order as it was.
    """

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    retcode: int
    text: str = ""


class OrderPartiallyFilled(Message, frozen=True):
    """A deal filled part of the order; some volume is still open."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    deal: Deal


class OrderFilled(Message, frozen=True):
    """A deal filled the rest of the order."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    deal: Deal


class OrderModifySubmitted(Message, frozen=True):
    """A change of a pending order's prices or expiry went to the terminal (raw prices, 0 = none)."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    price: int
    stoplimit: int = 0
    sl: int = 0
    tp: int = 0
    expiration_ns: int = 0


class OrderModified(Message, frozen=True):
    """The trade server changed the pending order's prices or expiry to these."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    price: int
    stoplimit: int = 0
    sl: int = 0
    tp: int = 0
    expiration_ns: int = 0


class OrderCancelSubmitted(Message, frozen=True):
    """A request to remove the pending order went to the terminal."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int


class OrderCanceled(Message, frozen=True):
    """The order was removed (by request, or the unfilled rest of an IOC order)."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int
    reason: str = ""


class OrderExpired(Message, frozen=True):
    """The pending order reached its expiry."""

    tenant: TenantId
    account: AccountId
    client_order_id: ClientOrderId
    ts_ns: int


OrderEvent = (
    OrderSubmitted
    | OrderDenied
    | OrderAccepted
    | OrderRejected
    | OrderPartiallyFilled
    | OrderFilled
    | OrderModifySubmitted
    | OrderModified
    | OrderCancelSubmitted
    | OrderCanceled
    | OrderExpired
)


class PositionOpened(Message, frozen=True):
    """A deal opened `position`."""

    tenant: TenantId
    account: AccountId
    ts_ns: int
    position: Position
    deal: int


class PositionChanged(Message, frozen=True):
    """A deal added to or reduced the position (or reversed it on a netting account); `realised` is booked."""

    tenant: TenantId
    account: AccountId
    ts_ns: int
    position: Position
    deal: int
    realised: Decimal = Decimal(0)


class PositionClosed(Message, frozen=True):
    """A deal closed `position` (shown as it was just before) at raw `price_close`, realising `realised`."""

    tenant: TenantId
    account: AccountId
    ts_ns: int
    position: Position
    deal: int
    price_close: int
    realised: Decimal


class AccountUpdated(Message, frozen=True):
    """The account's balance, equity or margin changed."""

    tenant: TenantId
    account: AccountId
    ts_ns: int
    state: AccountState


class AccountRiskStateChanged(Message, frozen=True):
    """The risk engine moved an account to ACTIVE, REDUCING (only risk-reducing orders) or HALTED."""

    tenant: TenantId
    account: AccountId
    ts_ns: int
    state: str
    reason: str


class ReconciliationAlert(Message, frozen=True):
    """The engine's books and the terminal (the truth of what happened at the broker) disagreed.

    `kind` is a stable code (`position_mismatch`, `unknown_deal`, `balance_mismatch`, `order_missing`, …);
    `ours` and `theirs` describe both sides; `resolved` says what the engine did (it adopts the terminal's
    view and books what it missed).
    """

    tenant: TenantId
    account: AccountId
    ts_ns: int
    kind: str
    detail: str
    ours: str = ""
    theirs: str = ""
    resolved: str = ""


class ComponentStateChanged(Message, frozen=True):
    """A component of a service changed lifecycle state (published by the kernel, read by the hub)."""

    service: str
    component: str
    state: ComponentState
    ts_ns: int
    reason: str = ""


class TickRejected(Message, frozen=True):
    """The data bridge refused a tick (`reason` is a stable code such as `crossed` or `stale`)."""

    feed: str
    symbol: str
    ts_ns: int
    reason: str
    time_msc: int = 0
    detail: str = ""
