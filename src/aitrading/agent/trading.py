"""The trading side of an MT5 terminal, as the executor sees it, and exact conversions to and from it.

`TradingTerminal` is the part of the `MetaTrader5` module the executor calls; the real package, mt5linux
and the simulated terminal satisfy it structurally, so the agent imports none of them. The converters
turn model requests into `order_send` dicts (raw ints → the nearest float, which MT5 reads back to the
same price and volume) and MT5's named tuples back into model types (floats → exact raw ints and
`Decimal` money quantized to the account currency's digits).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from aitrading.model._exact import notional_decimal
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, MarginMode, OrderState, OrderTime, Side, TradeAction
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import money, price_float, price_raw, volume_float, volume_raw
from aitrading.model.wire import PendingOrder

__all__ = [
    "RETCODE_DONE",
    "RETCODE_DONE_PARTIAL",
    "RETCODE_ERROR",
    "RETCODE_INVALID",
    "RETCODE_NO_CHANGES",
    "RETCODE_PLACED",
    "RETCODE_REJECT",
    "SUCCESS_RETCODES",
    "TradingTerminal",
    "account_state_from_mt5",
    "deal_from_mt5",
    "order_retcode",
    "pending_from_mt5",
    "position_from_mt5",
    "request_dict",
    "spec_from_mt5",
]

# MT5's TRADE_RETCODE_* (aitrading.mt5.constants has them all; importing it would load the simulator).
RETCODE_REJECT = 10006
RETCODE_PLACED = 10008
RETCODE_DONE = 10009
RETCODE_DONE_PARTIAL = 10010
RETCODE_ERROR = 10011
RETCODE_INVALID = 10013
RETCODE_NO_CHANGES = 10025
SUCCESS_RETCODES = frozenset({RETCODE_PLACED, RETCODE_DONE, RETCODE_DONE_PARTIAL})
"""Answers that mean the trade server accepted the request (real accounts may say PLACED, demo DONE)."""

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


@runtime_checkable
class TradingTerminal(Protocol):
    """The functions of the `MetaTrader5` module the executor calls (MT5's names, arguments and results).

    Each returns None on failure; `last_error()` then says why. History functions take a `date_from` and
    `date_to` (aware UTC datetimes) or a `ticket` / `position` keyword.
    """

    def account_info(self) -> Any:
        """Return the logged-in account (`AccountInfo`) or None."""
        ...

    def order_send(self, request: dict[str, Any]) -> Any:
        """Send a trade request; return `OrderSendResult` or None."""
        ...

    def orders_get(self, *args: Any, **kwargs: Any) -> Any:
        """Return the pending orders (`TradeOrder`s) or None."""
        ...

    def positions_get(self, *args: Any, **kwargs: Any) -> Any:
        """Return the open positions (`TradePosition`s) or None."""
        ...

    def history_orders_get(self, *args: Any, **kwargs: Any) -> Any:
        """Return historical orders (`TradeOrder`s) or None."""
        ...

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any:
        """Return deals (`TradeDeal`s) or None."""
        ...

    def last_error(self) -> tuple[int, str]:
        """Return the code and description of the last failure."""
        ...


# -- model → MT5 ------------------------------------------------------------------------------------------


def request_dict(req: OrderRequest) -> dict[str, Any]:
    """Return the `order_send` dict of `req`, its client order id as the comment.

    Fields an action does not use are left out (MT5 ignores them, some brokers' gateways do not).
    """
    action = req.action
    out: dict[str, Any] = {"action": int(action), "magic": req.magic, "comment": req.client_order_id}
    if req.symbol:
        out["symbol"] = req.symbol
    if action in (TradeAction.DEAL, TradeAction.PENDING):
        out["volume"] = volume_float(req.volume)
        out["type"] = int(req.type)
        out["type_filling"] = int(req.filling)
        out["type_time"] = int(req.type_time)
        if req.deviation:
            out["deviation"] = req.deviation
    elif action is TradeAction.CLOSE_BY:
        out["type"] = int(req.type)
    if action in (TradeAction.DEAL, TradeAction.PENDING, TradeAction.MODIFY):
        out["price"] = price_float(req.price)
    if req.stoplimit:
        out["stoplimit"] = price_float(req.stoplimit)
    if action in (TradeAction.DEAL, TradeAction.PENDING, TradeAction.SLTP, TradeAction.MODIFY):
        out["sl"] = price_float(req.sl)
        out["tp"] = price_float(req.tp)
    if req.type_time in (OrderTime.SPECIFIED, OrderTime.SPECIFIED_DAY) and req.expiration_ns:
        out["expiration"] = req.expiration_ns // _NS_PER_S
        if action is TradeAction.MODIFY:
            out["type_time"] = int(req.type_time)
    for key in ("order", "position", "position_by"):
        if value := getattr(req, key):
            out[key] = value
    return out


# -- MT5 → model ------------------------------------------------------------------------------------------


def _money(value: float, digits: int) -> Decimal:
    return money(repr(float(value)), digits)


def deal_from_mt5(d: Any, digits: int) -> Deal:
    """Return the model `Deal` of an MT5 `TradeDeal`; money quantized to the account's `digits`."""
    return Deal(
        ticket=int(d.ticket),
        order=int(d.order),
        position_id=int(d.position_id),
        symbol=str(d.symbol),
        type=DealType(int(d.type)),
        entry=DealEntry(int(d.entry)),
        volume=volume_raw(float(d.volume)),
        price=price_raw(float(d.price)),
        commission=_money(d.commission, digits),
        swap=_money(d.swap, digits),
        profit=_money(d.profit, digits),
        fee=_money(d.fee, digits),
        time_ns=int(d.time_msc) * _NS_PER_MS,
        magic=int(d.magic),
        reason=int(d.reason),
        comment=str(d.comment),
    )


def position_from_mt5(p: Any, digits: int) -> Position:
    """Return the model `Position` of an MT5 `TradePosition` (its cost is open price × volume, exact)."""
    volume = volume_raw(float(p.volume))
    return Position(
        ticket=int(p.ticket),
        identifier=int(p.identifier),
        symbol=str(p.symbol),
        type=Side(int(p.type)),
        volume=volume,
        cost=notional_decimal(price_raw(float(p.price_open)) * volume),
        sl=price_raw(float(p.sl)),
        tp=price_raw(float(p.tp)),
        price_current=price_raw(float(p.price_current)),
        swap=_money(p.swap, digits),
        profit=_money(p.profit, digits),
        time_ns=int(p.time_msc) * _NS_PER_MS,
        time_update_ns=int(p.time_update_msc) * _NS_PER_MS,
        magic=int(p.magic),
        comment=str(p.comment),
    )


def pending_from_mt5(o: Any) -> PendingOrder:
    """Return the `PendingOrder` of an MT5 `TradeOrder`."""
    return PendingOrder(
        ticket=int(o.ticket),
        symbol=str(o.symbol),
        type=int(o.type),
        volume_initial=volume_raw(float(o.volume_initial)),
        volume_current=volume_raw(float(o.volume_current)),
        price_open=price_raw(float(o.price_open)),
        stoplimit=price_raw(float(o.price_stoplimit)),
        sl=price_raw(float(o.sl)),
        tp=price_raw(float(o.tp)),
        time_setup_ns=int(o.time_setup_msc) * _NS_PER_MS,
        time_expiration_ns=int(o.time_expiration) * _NS_PER_S,
        type_time=int(o.type_time),
        type_filling=int(o.type_filling),
        magic=int(o.magic),
        comment=str(o.comment),
        position_id=int(o.position_id),
    )


def account_state_from_mt5(info: Any) -> AccountState:
    """Return the model `AccountState` of an MT5 `AccountInfo` (equity and margin levels derived exactly)."""
    digits = int(info.currency_digits)
    return AccountState.of(
        login=int(info.login),
        server=str(info.server),
        currency=str(info.currency),
        digits=digits,
        leverage=int(info.leverage),
        margin_mode=MarginMode(int(info.margin_mode)),
        balance=repr(float(info.balance)),
        credit=repr(float(info.credit)),
        floating=repr(float(info.profit)),
        margin=repr(float(info.margin)),
    )


def spec_from_mt5(info: Any) -> SymbolSpec:
    """Return the model `SymbolSpec` of an MT5 `SymbolInfo` (volumes raw, contract size and swaps exact)."""
    return SymbolSpec(
        name=str(info.name),
        description=str(getattr(info, "description", "")),
        digits=int(info.digits),
        contract_size=Decimal(repr(float(info.trade_contract_size))),
        volume_min=volume_raw(float(info.volume_min)),
        volume_max=volume_raw(float(info.volume_max)),
        volume_step=volume_raw(float(info.volume_step)),
        stops_level=int(info.trade_stops_level),
        freeze_level=int(info.trade_freeze_level),
        currency_base=str(info.currency_base),
        currency_profit=str(info.currency_profit),
        currency_margin=str(info.currency_margin),
        trade_calc_mode=int(info.trade_calc_mode),
        swap_long=Decimal(repr(float(info.swap_long))),
        swap_short=Decimal(repr(float(info.swap_short))),
        typical_spread=int(getattr(info, "spread", 10)),
        path=str(getattr(info, "path", "")),
    )


def order_retcode(order: Any) -> int:
    """Return what `order_send` answered for an order found in the terminal, judged by its state."""
    state = int(order.state)
    if state == OrderState.REJECTED:
        return RETCODE_REJECT
    if state == OrderState.PARTIAL:
        return RETCODE_DONE_PARTIAL
    if state in (OrderState.STARTED, OrderState.REQUEST_ADD):
        return RETCODE_PLACED
    return RETCODE_DONE
