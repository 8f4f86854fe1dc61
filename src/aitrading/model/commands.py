"""Trade commands: `OrderRequest` is MT5's `TradeRequest` plus who asks; `TradeCommand` carries one on the bus
(`ord.cmd.<tenant>.<account>`).

One request type covers every `TRADE_ACTION_*`, as MT5's does: new market and pending orders, SL/TP
changes, modifications and removals of pending orders, and close-by. `OrderRequest` keeps MT5's field names
(`type` included), which is why it is a plain struct inside a message: bus messages use `type` as their tag.
`request_problems` finds what is structurally wrong before anything else looks at a request; the risk
engine turns problems into `OrderDenied`.
"""

from __future__ import annotations

import msgspec

from aitrading.common.bus.codec import Message
from aitrading.model.enums import OrderFilling, OrderTime, OrderType, TradeAction
from aitrading.model.ids import (
    MT5_COMMENT_MAX,
    AccountId,
    ClientOrderId,
    StrategyId,
    TenantId,
    client_order_id,
)

__all__ = ["OrderRequest", "TradeCommand", "request_problems"]


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A trade request for one trading account.

    Prices (`price`, `stoplimit`, `sl`, `tp`) are raw (1e-9), 0 meaning none (and "at market" for
    `price` of a DEAL); `volume` is raw (1e-8 lots); `deviation` is in points. `order` names the pending
    order a MODIFY or REMOVE acts on; `position` and `position_by` name positions (hedging closes, SLTP,
    CLOSE_BY). `expiration_ns` is UTC epoch ns, used with ORDER_TIME_SPECIFIED(_DAY). `ts_ns` is when the
    request was made.
    """

    client_order_id: ClientOrderId
    tenant: TenantId
    account: AccountId
    ts_ns: int
    symbol: str
    action: TradeAction
    type: OrderType = OrderType.BUY
    volume: int = 0
    price: int = 0
    stoplimit: int = 0
    sl: int = 0
    tp: int = 0
    deviation: int = 0
    filling: OrderFilling = OrderFilling.FOK
    type_time: OrderTime = OrderTime.GTC
    expiration_ns: int = 0
    magic: int = 0
    comment: str = ""
    strategy: StrategyId | None = None
    order: int = 0
    position: int = 0
    position_by: int = 0

    @property
    def opens_order(self) -> bool:
        """True when the request creates a new order (DEAL, PENDING, CLOSE_BY)."""
        return self.action in (TradeAction.DEAL, TradeAction.PENDING, TradeAction.CLOSE_BY)


class TradeCommand(Message, frozen=True):
    """A trade request for the trading engine to risk-check and execute."""

    request: OrderRequest

    @property
    def tenant(self) -> TenantId:
        """The tenant the request is for."""
        return self.request.tenant

    @property
    def account(self) -> AccountId:
        """The trading account the request is for."""
        return self.request.account


def request_problems(req: OrderRequest) -> tuple[str, ...]:
    """Return what is structurally wrong with `req` (empty when nothing is); no market or account checks."""
    last_req, last = _LAST_CHECKED[0]
    if last_req is req and type(req) is OrderRequest:
        return last  # the same (frozen) request again: the engine, `Order.from_request`, the checks
    problems = _problems(req)
    _LAST_CHECKED[0] = (req, problems)
    return problems


_LAST_CHECKED: list[tuple[OrderRequest | None, tuple[str, ...]]] = [(None, ())]
"""The last request `request_problems` looked at and its answer (one slot, replaced whole). An order's
request passes the engine's decision, `Order.from_request`, the engine's `check_request` and, in-process,
the terminal's: frozen, with immutable fields, it has the same problems each time."""


def _problems(req: OrderRequest) -> tuple[str, ...]:
    problems: list[str] = []
    try:
        client_order_id(req.client_order_id)
    except ValueError as exc:
        problems.append(str(exc))
    if len(req.comment) > MT5_COMMENT_MAX:
        problems.append(f"comment is {len(req.comment)} characters; MT5 keeps {MT5_COMMENT_MAX}")
    if not req.symbol and req.action is not TradeAction.REMOVE:
        problems.append("symbol is missing")
    if req.deviation < 0 or req.magic < 0 or req.volume < 0:
        problems.append("volume, deviation and magic must not be negative")
    action = req.action
    if action in (TradeAction.DEAL, TradeAction.PENDING) and req.volume <= 0:
        problems.append("volume must be positive")
    if action is TradeAction.DEAL:
        if not req.type.is_market:
            problems.append(f"TRADE_ACTION_DEAL needs type BUY or SELL, not {req.type.name}")
        if req.stoplimit:
            problems.append("stoplimit is only for stop-limit pending orders")
    elif action is TradeAction.PENDING:
        problems.extend(_pending_problems(req))
    elif action in (TradeAction.MODIFY, TradeAction.REMOVE) and req.order <= 0:
        problems.append(f"TRADE_ACTION_{action.name} needs the ticket of the order in `order`")
    elif action is TradeAction.CLOSE_BY and (
        req.position <= 0 or req.position_by <= 0 or req.position == req.position_by
    ):
        problems.append("TRADE_ACTION_CLOSE_BY needs two different positions in `position` and `position_by`")
    return tuple(problems)


def _pending_problems(req: OrderRequest) -> list[str]:
    problems: list[str] = []
    if not req.type.is_pending:
        problems.append(f"TRADE_ACTION_PENDING needs a limit, stop or stop-limit type, not {req.type.name}")
    if req.price == 0:
        problems.append("a pending order needs a price")
    if req.type.is_stop_limit and req.stoplimit == 0:
        problems.append(f"{req.type.name} needs a stoplimit price")
    if not req.type.is_stop_limit and req.stoplimit:
        problems.append("stoplimit is only for stop-limit pending orders")
    if req.type_time in (OrderTime.SPECIFIED, OrderTime.SPECIFIED_DAY) and req.expiration_ns <= 0:
        problems.append(f"ORDER_TIME_{req.type_time.name} needs expiration_ns")
    return problems
