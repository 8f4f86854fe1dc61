"""Builders for the simulated-broker tests: a broker over scripted quotes, requests with raw values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mt5_helpers import MONDAY_MS

from aitrading.common.clock import NS_PER_MS
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderType, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.market import Tick
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import VOLUME_SCALE, price_raw, volume_raw
from aitrading.mt5 import constants as c
from aitrading.mt5.sim import ExecutionSettings, SimAccount, SimBroker
from aitrading.mt5.specs import default_specs

LOT = VOLUME_SCALE
T0 = MONDAY_MS  # Monday 2024-03-04 06:00 UTC
T0_NS = T0 * NS_PER_MS
DAY_MS = 86_400_000

EURGBP = SymbolSpec(
    name="EURGBP",
    digits=5,
    contract_size=Decimal(100_000),
    stops_level=10,
    currency_base="EUR",
    currency_profit="GBP",
    currency_margin="EUR",
    trade_calc_mode=c.SYMBOL_CALC_MODE_FOREX,
)


def px(text: str) -> int:
    """Return the raw price of `text`."""
    return price_raw(text)


def lots(text: str) -> int:
    """Return the raw volume of `text` lots."""
    return volume_raw(text)


def tick(symbol: str, bid: str, ask: str, ms: int) -> Tick:
    return Tick(feed="TEST", symbol=symbol, time_msc=ms, bid=price_raw(bid), ask=price_raw(ask), flags=6)


def broker(
    *symbols: str,
    hedging: bool = True,
    balance: str = "10000",
    leverage: int = 100,
    extra: tuple[SymbolSpec, ...] = (),
    **settings: Any,
) -> SimBroker:
    """Return a broker over the default specs of `symbols` (EURUSD when none) plus `extra` specs."""
    specs = default_specs(*(symbols or ("EURUSD",)))
    specs.update({spec.name: spec for spec in extra})
    margin_mode = c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING if hedging else c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
    account = SimAccount(balance=Decimal(balance), leverage=leverage, margin_mode=margin_mode)
    return SimBroker(specs, account=account, settings=ExecutionSettings(**settings))


def request(
    action: TradeAction = TradeAction.DEAL,
    symbol: str = "EURUSD",
    type: OrderType = OrderType.BUY,
    volume: int = LOT,
    **fields: Any,
) -> OrderRequest:
    """Return a request with MT5's fields; prices and volumes raw."""
    return OrderRequest(
        client_order_id=ClientOrderId("test-1"),
        tenant=TenantId("t"),
        account=AccountId("a"),
        ts_ns=T0_NS,
        symbol=symbol,
        action=action,
        type=type,
        volume=volume,
        **fields,
    )


def at(ms: int) -> int:
    """Return `ms` as ns (the broker's request time)."""
    return ms * NS_PER_MS
