"""The MetaTrader5 package's trading calls over a `SimBroker`: request dicts in, named tuples out.

Request dicts take the package's keys (`TradeRequest`'s fields). Prices become raw integers rounded to the
symbol's digits, volumes raw 1e-8 lots, `expiration` (seconds or a datetime) UTC ns; a request that is not a
dict, has a key the package does not know, or a value of the wrong type fails like the package does:
None, and `last_error()` is `(RES_E_INVALID_PARAMS, 'Invalid "key" argument')`. Everything the trade
server decides comes back as a retcode in the result.

The package's filters: `positions_get`/`orders_get` take a ticket, else a symbol, else a group mask;
`history_orders_get` takes a ticket, a position, or a `date_from`..`date_to` range of setup times (with an
optional group mask); `history_deals_get` takes an order ticket (`ticket`), a position, or a range of deal
times. Dates are the package's (datetime, or seconds since the epoch), inclusive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import OrderFilling, OrderTime, OrderType, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import (
    PRICE_DECIMALS,
    price_float,
    price_raw,
    round_price_raw,
    volume_float,
    volume_raw,
)
from aitrading.mt5 import constants as c
from aitrading.mt5._internal import INVALID_PARAMS, NOT_FOUND
from aitrading.mt5.sim._convert import in_group, ms_or_none
from aitrading.mt5.sim.answers import CheckAnswer, TradeAnswer
from aitrading.mt5.sim.book import BookOrder
from aitrading.mt5.sim.broker import SimBroker
from aitrading.mt5.types import (
    OrderCheckResult,
    OrderSendResult,
    TradeDeal,
    TradeOrder,
    TradePosition,
    TradeRequest,
)

__all__ = ["CallError", "SimTrading"]

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000
_INT_FIELDS = (
    "action",
    "magic",
    "order",
    "deviation",
    "type",
    "type_filling",
    "type_time",
    "position",
    "position_by",
)
_PRICE_FIELDS = ("price", "stoplimit", "sl", "tp")
_FIELDS = frozenset((*_INT_FIELDS, *_PRICE_FIELDS, "symbol", "volume", "expiration", "comment"))
_ENUMS: Mapping[str, type[TradeAction] | type[OrderType] | type[OrderFilling] | type[OrderTime]] = {
    "action": TradeAction,
    "type": OrderType,
    "type_filling": OrderFilling,
    "type_time": OrderTime,
}
# The terminal's requests carry no platform identity; the broker reads only MT5's fields.
_CLIENT_ID = ClientOrderId("mt5-terminal")
_TENANT = TenantId("sim")
CALC_FAILED = (c.RES_E_FAIL, "Terminal: Call failed")
_Item = TypeVar("_Item", Position, BookOrder)


class CallError(Exception):
    """A call the package would fail with None; `error` is what `last_error()` then says."""

    def __init__(self, error: tuple[int, str]) -> None:
        super().__init__(error[1])
        self.error = error


def _bad(key: str) -> CallError:
    return CallError((c.RES_E_INVALID_PARAMS, f'Invalid "{key}" argument'))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


class _Parsed:
    """A request dict checked and converted: the broker's request and the package's echo of it."""

    def __init__(self, request: OrderRequest, echo: TradeRequest) -> None:
        self.request = request
        self.echo = echo


def _validate(raw: object) -> dict[str, object]:
    """Check a request dict's keys and value types the way the package does."""
    if not isinstance(raw, dict):
        raise CallError(INVALID_PARAMS)
    for key in raw:
        if key not in _FIELDS:
            raise _bad(str(key))
    if "action" not in raw:
        raise _bad("action")
    for key in _INT_FIELDS:
        if key in raw and not _is_int(raw[key]):
            raise _bad(key)
    for key, enum in _ENUMS.items():
        if key in raw and raw[key] not in enum._value2member_map_:
            raise _bad(key)
    for key in (*_PRICE_FIELDS, "volume"):
        if key in raw and not _is_number(raw[key]):
            raise _bad(key)
    for key in ("symbol", "comment"):
        if key in raw and not isinstance(raw[key], str):
            raise _bad(key)
    return raw


def _expiration_ns(value: object) -> int:
    if isinstance(value, datetime):
        ms = ms_or_none(value)
        return 0 if ms is None else ms * _NS_PER_MS
    if isinstance(value, int) and not isinstance(value, bool):
        return value * _NS_PER_S
    raise _bad("expiration")


def parse_request(request: object, specs: Mapping[str, SymbolSpec], *, login: int, now_ns: int) -> _Parsed:
    """Convert a package-style request dict; raise `CallError` where the package returns None."""
    raw: dict[str, Any] = _validate(request)
    expiration_ns = _expiration_ns(raw.get("expiration", 0))
    symbol: str = raw.get("symbol", "")
    spec = specs.get(symbol)
    digits = spec.digits if spec is not None else PRICE_DECIMALS

    def price(key: str) -> int:
        value = raw.get(key, 0.0)
        return round_price_raw(price_raw(value), digits) if value else 0

    request = OrderRequest(
        client_order_id=_CLIENT_ID,
        tenant=_TENANT,
        account=AccountId(str(login)),
        ts_ns=now_ns,
        symbol=symbol,
        action=TradeAction(raw["action"]),
        type=OrderType(raw.get("type", 0)),
        volume=volume_raw(raw.get("volume", 0.0)),
        price=price("price"),
        stoplimit=price("stoplimit"),
        sl=price("sl"),
        tp=price("tp"),
        deviation=raw.get("deviation", 0),
        filling=OrderFilling(raw.get("type_filling", 0)),
        type_time=OrderTime(raw.get("type_time", 0)),
        expiration_ns=expiration_ns,
        magic=raw.get("magic", 0),
        comment=raw.get("comment", ""),
        order=raw.get("order", 0),
        position=raw.get("position", 0),
        position_by=raw.get("position_by", 0),
    )
    echo = TradeRequest(
        action=raw["action"],
        magic=raw.get("magic", 0),
        order=raw.get("order", 0),
        symbol=symbol,
        volume=float(raw.get("volume", 0.0)),
        price=float(raw.get("price", 0.0)),
        stoplimit=float(raw.get("stoplimit", 0.0)),
        sl=float(raw.get("sl", 0.0)),
        tp=float(raw.get("tp", 0.0)),
        deviation=raw.get("deviation", 0),
        type=raw.get("type", 0),
        type_filling=raw.get("type_filling", 0),
        type_time=raw.get("type_time", 0),
        expiration=expiration_ns // _NS_PER_S,
        comment=raw.get("comment", ""),
        position=raw.get("position", 0),
        position_by=raw.get("position_by", 0),
    )
    return _Parsed(request, echo)


def send_result(answer: TradeAnswer, echo: TradeRequest) -> OrderSendResult:
    """Return the package's `OrderSendResult` of a broker answer."""
    return OrderSendResult(
        retcode=answer.retcode,
        deal=answer.deal,
        order=answer.order,
        volume=volume_float(answer.volume),
        price=price_float(answer.price),
        bid=price_float(answer.bid),
        ask=price_float(answer.ask),
        comment=answer.comment,
        request_id=answer.request_id,
        request=echo,
    )


def check_result(answer: CheckAnswer, echo: TradeRequest) -> OrderCheckResult:
    """Return the package's `OrderCheckResult` of a broker check."""
    return OrderCheckResult(
        retcode=answer.retcode,
        balance=float(answer.balance),
        equity=float(answer.equity),
        profit=float(answer.profit),
        margin=float(answer.margin),
        margin_free=float(answer.margin_free),
        margin_level=0.0 if answer.margin_level is None else float(answer.margin_level),
        comment=answer.comment,
        request=echo,
    )


def position_tuple(p: Position, reason: int) -> TradePosition:
    """Return the package's `TradePosition` of a position."""
    return TradePosition(
        ticket=p.ticket,
        time=p.time_ns // _NS_PER_S,
        time_msc=p.time_ns // _NS_PER_MS,
        time_update=p.time_update_ns // _NS_PER_S,
        time_update_msc=p.time_update_ns // _NS_PER_MS,
        type=int(p.type),
        magic=p.magic,
        identifier=p.identifier,
        reason=reason,
        volume=volume_float(p.volume),
        price_open=float(p.price_open),
        sl=price_float(p.sl),
        tp=price_float(p.tp),
        price_current=price_float(p.price_current),
        swap=float(p.swap),
        profit=float(p.profit),
        symbol=p.symbol,
        comment=p.comment,
    )


def order_tuple(o: BookOrder) -> TradeOrder:
    """Return the package's `TradeOrder` of an order."""
    return TradeOrder(
        ticket=o.ticket,
        time_setup=o.time_setup_ns // _NS_PER_S,
        time_setup_msc=o.time_setup_ns // _NS_PER_MS,
        time_done=o.time_done_ns // _NS_PER_S,
        time_done_msc=o.time_done_ns // _NS_PER_MS,
        time_expiration=o.expiration_ns // _NS_PER_S,
        type=int(o.type),
        type_time=int(o.type_time),
        type_filling=int(o.type_filling),
        state=int(o.state),
        magic=o.magic,
        position_id=o.position_id,
        position_by_id=o.position_by_id,
        reason=o.reason,
        volume_initial=volume_float(o.volume_initial),
        volume_current=volume_float(o.volume_current),
        price_open=price_float(o.price_open),
        sl=price_float(o.sl),
        tp=price_float(o.tp),
        price_current=price_float(o.price_current),
        price_stoplimit=price_float(o.price_stoplimit),
        symbol=o.symbol,
        comment=o.comment,
    )


def deal_tuple(d: Deal) -> TradeDeal:
    """Return the package's `TradeDeal` of a deal."""
    return TradeDeal(
        ticket=d.ticket,
        order=d.order,
        time=d.time_ns // _NS_PER_S,
        time_msc=d.time_msc,
        type=int(d.type),
        entry=int(d.entry),
        magic=d.magic,
        position_id=d.position_id,
        reason=d.reason,
        volume=volume_float(d.volume),
        price=price_float(d.price),
        commission=float(d.commission),
        swap=float(d.swap),
        profit=float(d.profit),
        fee=float(d.fee),
        symbol=d.symbol,
        comment=d.comment,
    )


def _optional_int(value: object, key: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(key)
    return value


def _optional_str(value: object, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _bad(key)
    return value


def _range_ns(date_from: object, date_to: object) -> tuple[int, int]:
    first, last = ms_or_none(date_from), ms_or_none(date_to)
    if first is None or last is None:
        raise CallError(INVALID_PARAMS)
    return first * _NS_PER_MS, (last + 1) * _NS_PER_MS - 1


class SimTrading:
    """The trading half of the simulated terminal: every call takes the current time first."""

    def __init__(self, broker: SimBroker, login: int) -> None:
        self.broker = broker
        self.login = login

    def order_send(self, now_ns: int, request: object) -> OrderSendResult:
        parsed = parse_request(request, self.broker.specs, login=self.login, now_ns=now_ns)
        return send_result(self.broker.order_send(parsed.request, now_ns), parsed.echo)

    def order_check(self, now_ns: int, request: object) -> OrderCheckResult:
        parsed = parse_request(request, self.broker.specs, login=self.login, now_ns=now_ns)
        return check_result(self.broker.order_check(parsed.request, now_ns), parsed.echo)

    def _calc_args(
        self, action: object, symbol: object, volume: object, *prices: object
    ) -> tuple[OrderType, str, int, list[int]]:
        if not _is_int(action) or not 0 <= action <= int(OrderType.SELL_STOP_LIMIT):  # type: ignore[operator]
            raise _bad("action")
        if not isinstance(symbol, str):
            raise _bad("symbol")
        spec = self.broker.specs.get(symbol)
        if spec is None:
            raise CallError(NOT_FOUND)
        if not _is_number(volume) or volume <= 0:  # type: ignore[operator]
            raise _bad("volume")
        raws = []
        for name, value in zip(("price_open", "price_close"), prices, strict=False):
            if not _is_number(value) or value < 0:  # type: ignore[operator]
                raise _bad(name)
            raws.append(round_price_raw(price_raw(value), spec.digits))  # type: ignore[arg-type]
        return OrderType(action), symbol, volume_raw(volume), raws  # type: ignore[arg-type]

    def order_calc_margin(
        self, now_ns: int, action: object, symbol: object, volume: object, price: object
    ) -> float:
        kind, name, raw_volume, (raw_price,) = self._calc_args(action, symbol, volume, price)
        try:
            return float(self.broker.calc_margin(kind, name, raw_volume, raw_price))
        except ValueError:
            raise CallError(CALC_FAILED) from None

    def order_calc_profit(
        self,
        now_ns: int,
        action: object,
        symbol: object,
        volume: object,
        price_open: object,
        price_close: object,
    ) -> float:
        kind, name, raw_volume, (opened, closed) = self._calc_args(
            action, symbol, volume, price_open, price_close
        )
        try:
            return float(self.broker.calc_profit(kind, name, raw_volume, opened, closed))
        except ValueError:
            raise CallError(CALC_FAILED) from None

    def positions_get(
        self, now_ns: int, symbol: object = None, group: object = None, ticket: object = None
    ) -> tuple[TradePosition, ...]:
        chosen = _select(self.broker.positions, symbol, group, ticket)
        return tuple(position_tuple(p, self.broker.position_reason(p.identifier)) for p in chosen)

    def orders_get(
        self, now_ns: int, symbol: object = None, group: object = None, ticket: object = None
    ) -> tuple[TradeOrder, ...]:
        return tuple(order_tuple(o) for o in _select(self.broker.orders, symbol, group, ticket))

    def history_orders_get(
        self, now_ns: int, date_from: object, date_to: object, group: object, ticket: object, position: object
    ) -> tuple[TradeOrder, ...]:
        orders = self.broker.history_orders
        by_ticket, by_position = _optional_int(ticket, "ticket"), _optional_int(position, "position")
        if by_ticket is not None:
            return tuple(order_tuple(o) for o in orders if o.ticket == by_ticket)
        if by_position is not None:
            return tuple(order_tuple(o) for o in orders if o.position_id == by_position)
        first, last = _range_ns(date_from, date_to)
        mask = _optional_str(group, "group")
        return tuple(
            order_tuple(o)
            for o in orders
            if first <= o.time_setup_ns <= last and (mask is None or in_group(o.symbol, mask))
        )

    def history_deals_get(
        self, now_ns: int, date_from: object, date_to: object, group: object, ticket: object, position: object
    ) -> tuple[TradeDeal, ...]:
        deals = self.broker.deals
        by_order, by_position = _optional_int(ticket, "ticket"), _optional_int(position, "position")
        if by_order is not None:
            return tuple(deal_tuple(d) for d in deals if d.order == by_order)
        if by_position is not None:
            return tuple(deal_tuple(d) for d in deals if d.position_id == by_position)
        first, last = _range_ns(date_from, date_to)
        mask = _optional_str(group, "group")
        return tuple(
            deal_tuple(d)
            for d in deals
            if first <= d.time_ns <= last and (mask is None or in_group(d.symbol, mask))
        )


def _select(items: Iterable[_Item], symbol: object, group: object, ticket: object) -> list[_Item]:
    by_ticket = _optional_int(ticket, "ticket")
    by_symbol = _optional_str(symbol, "symbol")
    mask = _optional_str(group, "group")
    if by_ticket is not None:
        return [item for item in items if item.ticket == by_ticket]
    if by_symbol is not None:
        return [item for item in items if item.symbol == by_symbol]
    if mask is not None:
        return [item for item in items if in_group(item.symbol, mask)]
    return list(items)
