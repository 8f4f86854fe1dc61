"""Builders of model objects for the model tests (plain functions, no mocks)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, OrderType, Side, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.orders import Order
from aitrading.model.values import VOLUME_SCALE, price_raw

TENANT = TenantId("acme")
ACCOUNT = AccountId("acc-1")
CID = ClientOrderId("AI01HZZZZZZZZZZZZZZZZZZZZZZ")
T0 = 1_704_067_200_000_000_000
LOT = VOLUME_SCALE
CONTRACT = Decimal(100_000)


def request(**changes: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": CID,
        "tenant": TENANT,
        "account": ACCOUNT,
        "ts_ns": T0,
        "symbol": "EURUSD",
        "action": TradeAction.DEAL,
        "type": OrderType.BUY,
        "volume": LOT,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def order(**changes: Any) -> Order:
    return Order.from_request(request(**changes))


def deal(
    ticket: int,
    side: Side,
    volume: int,
    price: int,
    *,
    symbol: str = "EURUSD",
    entry: DealEntry = DealEntry.IN,
    position_id: int = 0,
    order_ticket: int = 0,
    time_ns: int = T0,
) -> Deal:
    return Deal(
        ticket=ticket,
        order=order_ticket,
        position_id=position_id,
        symbol=symbol,
        type=DealType(side.value),
        entry=entry,
        volume=volume,
        price=price,
        time_ns=time_ns,
    )


def eurusd(text: str) -> int:
    return price_raw(text)


def common(ts: int = T0) -> dict[str, Any]:
    return {"tenant": TENANT, "account": ACCOUNT, "client_order_id": CID, "ts_ns": ts}
