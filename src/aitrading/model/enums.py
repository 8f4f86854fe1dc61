"""MT5's trading enumerations with MT5's numeric values, so a value crosses the terminal boundary unchanged.

Names drop MT5's prefix (`ORDER_TYPE_BUY_LIMIT` is `OrderType.BUY_LIMIT`); values are the ones the official
`MetaTrader5` package returns and accepts.
"""

from __future__ import annotations

import enum

__all__ = [
    "DealEntry",
    "DealType",
    "MarginMode",
    "OrderFilling",
    "OrderState",
    "OrderTime",
    "OrderType",
    "PositionType",
    "Side",
    "TradeAction",
]


class Side(enum.IntEnum):
    """Direction of a position or a trade; values are `POSITION_TYPE_*` (and `DEAL_TYPE_*`/`ORDER_TYPE_*`)."""

    BUY = 0
    SELL = 1

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL."""
        return 1 - 2 * self  # on the int value (BUY 0, SELL 1): read for every position on every quote

    @property
    def opposite(self) -> Side:
        """The other side."""
        return Side.SELL if self is Side.BUY else Side.BUY

    def entry_price(self, bid: int, ask: int) -> int:
        """Price at which this side opens: a BUY pays the ask, a SELL gets the bid."""
        return bid if self else ask  # SELL is 1, BUY 0

    def exit_price(self, bid: int, ask: int) -> int:
        """Price at which a position of this side closes (and is marked): BUY at the bid, SELL at the ask."""
        return ask if self else bid  # SELL is 1, BUY 0


PositionType = Side
"""`POSITION_TYPE_BUY` = 0, `POSITION_TYPE_SELL` = 1."""


class OrderType(enum.IntEnum):
    """`ORDER_TYPE_*`."""

    BUY = 0
    SELL = 1
    BUY_LIMIT = 2
    SELL_LIMIT = 3
    BUY_STOP = 4
    SELL_STOP = 5
    BUY_STOP_LIMIT = 6
    SELL_STOP_LIMIT = 7
    CLOSE_BY = 8

    @property
    def side(self) -> Side:
        """The side this order trades; `CLOSE_BY` has none and raises `ValueError`."""
        side = _ORDER_SIDES.get(self)
        if side is None:
            raise ValueError("a CLOSE_BY order has no side of its own")
        return side

    @property
    def is_market(self) -> bool:
        """True for BUY and SELL (executed at once with TRADE_ACTION_DEAL)."""
        return self <= 1  # compared as the int it is (`.value` is a descriptor call)

    @property
    def is_pending(self) -> bool:
        """True for limit, stop and stop-limit orders (placed with TRADE_ACTION_PENDING)."""
        return 2 <= self <= 7

    @property
    def is_stop_limit(self) -> bool:
        """True for BUY_STOP_LIMIT and SELL_STOP_LIMIT, the only types that use `stoplimit`."""
        return 6 <= self <= 7


_ORDER_SIDES: dict[OrderType, Side] = {t: Side(t.value % 2) for t in OrderType if t is not OrderType.CLOSE_BY}
"""The side of each order type but CLOSE_BY, looked up (`Side(...)` is a slow enum call; fills use it)."""
_SIDES = (Side.BUY, Side.SELL)


class OrderFilling(enum.IntEnum):
    """`ORDER_FILLING_*`."""

    FOK = 0
    IOC = 1
    RETURN = 2
    BOC = 3


class OrderTime(enum.IntEnum):
    """`ORDER_TIME_*`: how long a pending order lives."""

    GTC = 0
    DAY = 1
    SPECIFIED = 2
    SPECIFIED_DAY = 3


class TradeAction(enum.IntEnum):
    """`TRADE_ACTION_*`."""

    DEAL = 1
    PENDING = 5
    SLTP = 6
    MODIFY = 7
    REMOVE = 8
    CLOSE_BY = 10


class OrderState(enum.IntEnum):
    """`ORDER_STATE_*`."""

    STARTED = 0
    PLACED = 1
    CANCELED = 2
    PARTIAL = 3
    FILLED = 4
    REJECTED = 5
    EXPIRED = 6
    REQUEST_ADD = 7
    REQUEST_MODIFY = 8
    REQUEST_CANCEL = 9

    @property
    def is_terminal(self) -> bool:
        """True once nothing can happen to the order any more."""
        return self in _TERMINAL


_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED})


class DealType(enum.IntEnum):
    """`DEAL_TYPE_*` (MT5 spells the last three `DEAL_DIVIDEND`, `DEAL_DIVIDEND_FRANKED`, `DEAL_TAX`)."""

    BUY = 0
    SELL = 1
    BALANCE = 2
    CREDIT = 3
    CHARGE = 4
    CORRECTION = 5
    BONUS = 6
    COMMISSION = 7
    COMMISSION_DAILY = 8
    COMMISSION_MONTHLY = 9
    COMMISSION_AGENT_DAILY = 10
    COMMISSION_AGENT_MONTHLY = 11
    INTEREST = 12
    BUY_CANCELED = 13
    SELL_CANCELED = 14
    DIVIDEND = 15
    DIVIDEND_FRANKED = 16
    TAX = 17

    @property
    def is_trade(self) -> bool:
        """True for BUY and SELL, the only deals that move positions."""
        return self <= 1

    @property
    def side(self) -> Side:
        """The side of a trade deal; other deal types raise `ValueError`."""
        if self > 1:
            raise ValueError(f"a {self.name} deal has no side")
        return _SIDES[self]


class DealEntry(enum.IntEnum):
    """`DEAL_ENTRY_*`: what a deal did to its position."""

    IN = 0
    OUT = 1
    INOUT = 2
    OUT_BY = 3


class MarginMode(enum.IntEnum):
    """`ACCOUNT_MARGIN_MODE_*`: one position per symbol (netting, exchange) or many (hedging)."""

    RETAIL_NETTING = 0
    EXCHANGE = 1
    RETAIL_HEDGING = 2

    @property
    def is_hedging(self) -> bool:
        """True when each deal IN opens its own position."""
        return self is MarginMode.RETAIL_HEDGING
