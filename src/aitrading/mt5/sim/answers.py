"""What the simulated trade server answers: `TradeAnswer` (order_send), `CheckAnswer` (order_check)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import NamedTuple

import msgspec

from aitrading.model.accounts import AccountState
from aitrading.mt5 import constants as c

__all__ = ["RETCODE_TEXT", "CheckAnswer", "Ready", "Refused", "TradeAnswer", "retcode_text"]

RETCODE_TEXT: Mapping[int, str] = {
    c.TRADE_RETCODE_REQUOTE: "Requote",
    c.TRADE_RETCODE_PLACED: "Order placed",
    c.TRADE_RETCODE_DONE: "Request executed",
    c.TRADE_RETCODE_ERROR: "Request processing error",
    c.TRADE_RETCODE_INVALID: "Invalid request",
    c.TRADE_RETCODE_INVALID_VOLUME: "Invalid volume",
    c.TRADE_RETCODE_INVALID_PRICE: "Invalid price",
    c.TRADE_RETCODE_INVALID_STOPS: "Invalid stops",
    c.TRADE_RETCODE_MARKET_CLOSED: "Market closed",
    c.TRADE_RETCODE_NO_MONEY: "No money",
    c.TRADE_RETCODE_PRICE_OFF: "No prices",
    c.TRADE_RETCODE_INVALID_EXPIRATION: "Invalid expiration",
    c.TRADE_RETCODE_NO_CHANGES: "No changes",
    c.TRADE_RETCODE_FROZEN: "Order or position frozen",
    c.TRADE_RETCODE_INVALID_FILL: "Unsupported filling mode",
    c.TRADE_RETCODE_LIMIT_ORDERS: "Too many pending orders",
    c.TRADE_RETCODE_POSITION_CLOSED: "Position already closed",
    c.TRADE_RETCODE_INVALID_CLOSE_VOLUME: "Invalid close volume",
}
"""MT5's short description of each retcode the simulated server answers."""


def retcode_text(retcode: int) -> str:
    """Return MT5's short description of `retcode`."""
    return RETCODE_TEXT.get(retcode, f"Retcode {retcode}")


class TradeAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The trade server's answer to `order_send` (MT5's `OrderSendResult`, raw and exact).

    `comment` is MT5's text for the retcode, `detail` says why in words, for logs and tests.
    """

    retcode: int
    comment: str
    detail: str = ""
    deal: int = 0
    order: int = 0
    volume: int = 0
    price: int = 0
    bid: int = 0
    ask: int = 0
    request_id: int = 0


class CheckAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to `order_check`: retcode 0 and "Done" when the request would pass, with the account after.

    On a refusal the retcode says why and the money fields are 0, as MT5's `order_check` reports them.
    """

    retcode: int
    comment: str
    detail: str = ""
    balance: Decimal = Decimal(0)
    equity: Decimal = Decimal(0)
    profit: Decimal = Decimal(0)
    margin: Decimal = Decimal(0)
    margin_free: Decimal = Decimal(0)
    margin_level: Decimal | None = None


class Refused(Exception):
    """A request the server refuses with `retcode`; `detail` says why."""

    def __init__(self, retcode: int, detail: str) -> None:
        super().__init__(detail)
        self.retcode = retcode
        self.detail = detail


class Ready(NamedTuple):
    """A request that passed every check: how to work out the account after it, and how to book it.

    `account_after` is called only by `order_check` (before anything is booked), so `order_send` does not
    pay for it.
    """

    account_after: Callable[[], AccountState]
    commit: Callable[[], TradeAnswer]

    @property
    def after(self) -> AccountState:
        """The account after the request (as of now, nothing booked)."""
        return self.account_after()
