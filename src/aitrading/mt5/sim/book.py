"""The simulated broker's books: account money, positions, orders, deals, counters, and their state file.

`Book` is everything a trade server must not forget: balance and credit, open positions, active pending
orders, the order and deal history, the ticket counters and the last swap rollover. With a state path the
broker saves it after every change, atomically (msgpack to a temporary file, fsync, `os.replace`, fsync of
the directory), so a process killed at any instant restarts with either the books before or after the
change, never half of one, as a real broker's server would keep them.

Prices and volumes are raw integers (1e-9, 1e-8 lots), money `Decimal`, times UTC epoch nanoseconds.
"""

from __future__ import annotations

import contextlib
import os
from decimal import Decimal
from pathlib import Path

import msgspec

from aitrading.common.errors import ConfigError
from aitrading.model.deals import Deal
from aitrading.model.enums import OrderFilling, OrderState, OrderTime, OrderType
from aitrading.model.positions import Position

__all__ = ["BOOK_VERSION", "Book", "BookOrder", "load_book", "save_book"]

BOOK_VERSION = 1
FIRST_ORDER_TICKET = 1_000_001
"""Orders and positions share one ticket range (a position's ticket is the order that opened it)."""
FIRST_DEAL_TICKET = 5_000_001


class BookOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One order as MT5's trade server keeps it (`TradeOrder`'s fields, raw and exact).

    `expiration_ns` is the request's expiration (ORDER_TIME_SPECIFIED(_DAY)), 0 when it has none.
    `reason` is an `ORDER_REASON_*`.
    """

    ticket: int
    symbol: str
    type: OrderType
    state: OrderState
    volume_initial: int
    volume_current: int
    price_open: int = 0
    price_stoplimit: int = 0
    sl: int = 0
    tp: int = 0
    price_current: int = 0
    type_filling: OrderFilling = OrderFilling.FOK
    type_time: OrderTime = OrderTime.GTC
    expiration_ns: int = 0
    magic: int = 0
    comment: str = ""
    position_id: int = 0
    position_by_id: int = 0
    reason: int = 0
    time_setup_ns: int
    time_done_ns: int = 0


class Book(msgspec.Struct, kw_only=True):
    """The mutable books of one simulated account; see the module docstring.

    `positions` are keyed by `POSITION_IDENTIFIER`, `orders` (the active pending ones) by ticket;
    `position_reasons` holds each open position's `POSITION_REASON_*`. `rollover_day` is the last server
    day (UTC epoch days) whose 00:00 rollover was processed, None before the broker saw any time.
    """

    version: int = BOOK_VERSION
    login: int
    currency: str
    hedging: bool
    balance: Decimal
    credit: Decimal = Decimal(0)
    positions: dict[int, Position] = msgspec.field(default_factory=dict)
    position_reasons: dict[int, int] = msgspec.field(default_factory=dict)
    orders: dict[int, BookOrder] = msgspec.field(default_factory=dict)
    history_orders: list[BookOrder] = msgspec.field(default_factory=list)
    deals: list[Deal] = msgspec.field(default_factory=list)
    next_order: int = FIRST_ORDER_TICKET
    next_deal: int = FIRST_DEAL_TICKET
    next_request: int = 1
    rollover_day: int | None = None

    def take_order_ticket(self) -> int:
        """Return a new order (and position) ticket."""
        ticket = self.next_order
        self.next_order += 1
        return ticket

    def take_deal_ticket(self) -> int:
        """Return a new deal ticket."""
        ticket = self.next_deal
        self.next_deal += 1
        return ticket

    def take_request_id(self) -> int:
        """Return a new request id (`OrderSendResult.request_id`)."""
        request_id = self.next_request
        self.next_request += 1
        return request_id


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Book)


def save_book(book: Book, path: Path) -> None:
    """Write `book` to `path` atomically: the file holds the old books or the new ones, never a mix."""
    data = _ENCODER.encode(book)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    # The rename is durable only once the directory entry is; some platforms cannot open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_book(path: Path) -> Book | None:
    """Return the books saved at `path`, None without such a file; raise `ConfigError` if unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        book = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"simulated broker state {path} is unreadable: {exc}") from None
    if book.version != BOOK_VERSION:
        raise ConfigError(
            f"simulated broker state {path} has version {book.version}; expected {BOOK_VERSION}"
        )
    return book
