"""HTTP schemas of the engine API: Create and Public models; prices, volumes and money as exact strings."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from aitrading.engine.books import AccountBook
from aitrading.model.deals import Deal
from aitrading.model.orders import Order
from aitrading.model.positions import Position
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE

__all__ = [
    "AccountPublic",
    "DealPublic",
    "OrderCreate",
    "OrderModify",
    "OrderPublic",
    "PositionClose",
    "PositionPublic",
    "RiskStateUpdate",
    "SubmitPublic",
    "account_public",
    "deal_public",
    "order_public",
    "position_public",
]

OrderTypeName = Literal[
    "BUY", "SELL", "BUY_LIMIT", "SELL_LIMIT", "BUY_STOP", "SELL_STOP", "BUY_STOP_LIMIT", "SELL_STOP_LIMIT"
]
# Bounds keep every value inside the 64-bit integers it is stored as (prices ×1e9, volumes ×1e8): a
# request beyond them is a 422 naming the field, never a database overflow.
MAX_PRICE = Decimal(1_000_000_000)
MAX_LOTS = Decimal(1_000_000_000)
_Price = Field(
    default=None, ge=0, le=MAX_PRICE, description="exact decimal price, e.g. '1.10250'", examples=["1.10250"]
)


def _price(raw: int) -> str | None:
    return None if not raw else str(Decimal(raw) / PRICE_SCALE)


def _volume(raw: int) -> str:
    return str(Decimal(raw) / VOLUME_SCALE)


class OrderCreate(BaseModel):
    """A new market or pending order (MT5's TRADE_ACTION_DEAL / TRADE_ACTION_PENDING)."""

    account: str = Field(min_length=1, max_length=64)
    symbol: str = Field(min_length=1, max_length=64)
    type: OrderTypeName
    volume: Decimal = Field(gt=0, le=MAX_LOTS, description="lots, e.g. '0.10'")
    price: Decimal | None = _Price
    stoplimit: Decimal | None = _Price
    sl: Decimal | None = _Price
    tp: Decimal | None = _Price
    deviation: int = Field(default=20, ge=0, le=10_000, description="points")
    filling: Literal["FOK", "IOC", "RETURN"] = "FOK"
    expiration: int | None = Field(
        default=None, ge=0, le=9_000_000_000, description="UTC epoch seconds (ORDER_TIME_SPECIFIED)"
    )
    magic: int = Field(default=0, ge=0, le=2**63 - 1)
    client_order_id: str | None = Field(default=None, max_length=31, pattern=r"^[A-Za-z0-9_.:-]{1,31}$")
    strategy: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class OrderModify(BaseModel):
    """New price, SL or TP of a pending order (TRADE_ACTION_MODIFY)."""

    price: Decimal | None = _Price
    sl: Decimal | None = _Price
    tp: Decimal | None = _Price


class PositionClose(BaseModel):
    """Close all of a position, or `volume` lots of it.

    With a `client_order_id` the close is idempotent: sent again (a lost answer), it is answered with what
    happened to the first, even once the position is gone.
    """

    volume: Decimal | None = Field(default=None, gt=0, le=MAX_LOTS)
    deviation: int = Field(default=50, ge=0, le=10_000, description="points")
    magic: int | None = Field(default=None, ge=0, le=2**63 - 1, description="default: the position's")
    client_order_id: str | None = Field(default=None, max_length=31, pattern=r"^[A-Za-z0-9_.:-]{1,31}$")
    strategy: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class PositionCloseBy(BaseModel):
    """Close a position by an opposite one of the same symbol (hedging accounts; MT5's CLOSE_BY)."""

    by: int = Field(gt=0, le=2**63 - 1, description="the opposite position (`position_by`)")
    magic: int = Field(default=0, ge=0, le=2**63 - 1)


class RiskStateUpdate(BaseModel):
    """Halt an account, make it reduce-only, or lift that."""

    state: Literal["ACTIVE", "REDUCING", "HALTED"]
    reason: str = Field(default="", max_length=300)


class OrderPublic(BaseModel):
    """An order as the engine knows it."""

    client_order_id: str
    account: str
    symbol: str
    type: str
    state: str
    volume: str
    volume_filled: str
    price: str | None
    sl: str | None
    tp: str | None
    ticket: int
    retcode: int
    reason: str
    strategy: str | None
    deals: list[int]
    magic: int = 0
    position: int = 0
    """MT5's ORDER_POSITION_ID: the position it closes, or the one its fill opened or changed (0: none)."""


class SubmitPublic(BaseModel):
    """What happened to a submitted request: accepted (sent to the terminal) or denied with MT5's retcode."""

    accepted: bool
    retcode: int
    reason: str
    text: str
    order: OrderPublic


class PositionPublic(BaseModel):
    """An open position."""

    identifier: int
    ticket: int
    symbol: str
    type: str
    volume: str
    price_open: str
    price_current: str | None
    sl: str | None
    tp: str | None
    profit: str
    swap: str
    magic: int = 0
    comment: str = ""


class DealPublic(BaseModel):
    """A deal the broker made."""

    ticket: int
    order: int
    position_id: int
    symbol: str
    type: str
    entry: str
    volume: str
    price: str | None
    profit: str
    commission: str
    swap: str
    time_ns: int
    comment: str


class AccountPublic(BaseModel):
    """A trading account: money, risk state and whether its agent is online."""

    account: str
    feed: str
    currency: str
    leverage: int
    hedging: bool
    balance: str
    credit: str
    equity: str
    profit: str
    margin: str
    margin_free: str
    margin_level: str | None
    risk_state: str
    risk_reason: str
    online: bool


def order_public(o: Order) -> OrderPublic:
    """Return the public view of an order."""
    return OrderPublic(
        client_order_id=o.client_order_id,
        account=o.account,
        symbol=o.symbol,
        type=o.type.name,
        state=o.state.name,
        volume=_volume(o.volume),
        volume_filled=_volume(o.volume_filled),
        price=_price(o.price),
        sl=_price(o.sl),
        tp=_price(o.tp),
        ticket=o.ticket,
        retcode=o.retcode,
        reason=o.reason,
        strategy=o.strategy,
        deals=list(o.deals),
        magic=o.magic,
        position=o.position_id,
    )


def position_public(p: Position) -> PositionPublic:
    """Return the public view of a position."""
    return PositionPublic(
        identifier=p.identifier,
        ticket=p.ticket,
        symbol=p.symbol,
        type=p.type.name,
        volume=_volume(p.volume),
        price_open=str(Decimal(p.price_open.numerator) / Decimal(p.price_open.denominator)),
        price_current=_price(p.price_current),
        sl=_price(p.sl),
        tp=_price(p.tp),
        profit=str(p.profit),
        swap=str(p.swap),
        magic=p.magic,
        comment=p.comment,
    )


def deal_public(d: Deal) -> DealPublic:
    """Return the public view of a deal."""
    return DealPublic(
        ticket=d.ticket,
        order=d.order,
        position_id=d.position_id,
        symbol=d.symbol,
        type=d.type.name,
        entry=d.entry.name,
        volume=_volume(d.volume),
        price=_price(d.price),
        profit=str(d.profit),
        commission=str(d.commission),
        swap=str(d.swap),
        time_ns=d.time_ns,
        comment=d.comment,
    )


def account_public(b: AccountBook) -> AccountPublic:
    """Return the public view of an account."""
    s = b.state
    return AccountPublic(
        account=b.account,
        feed=b.feed,
        currency=s.currency,
        leverage=s.leverage,
        hedging=b.hedging,
        balance=str(s.balance),
        credit=str(s.credit),
        equity=str(s.equity),
        profit=str(s.profit),
        margin=str(s.margin),
        margin_free=str(s.margin_free),
        margin_level=None if s.margin_level is None else str(s.margin_level),
        risk_state=b.risk_state.value,
        risk_reason=b.risk_reason,
        online=b.online,
    )
