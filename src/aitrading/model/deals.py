"""Deals: what the trade server did (MT5's `TradeDeal`), the only thing that moves positions and balance."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from aitrading.model.enums import DealEntry, DealType, Side

__all__ = ["Deal", "DealEntry", "DealType"]

_ZERO = Decimal(0)


class Deal(msgspec.Struct, frozen=True, kw_only=True):
    """One deal, as MT5's `history_deals_get` reports it.

    `volume` is raw (1e-8 lots), `price` raw (1e-9); `commission`, `swap`, `profit` and `fee` are money in
    the account currency, already rounded by the server. `time_ns` is UTC epoch nanoseconds (MT5's
    `time_msc` × 1e6). Balance, credit and other non-trade deals have no symbol, volume or price.
    """

    ticket: int
    order: int = 0
    position_id: int = 0
    symbol: str = ""
    type: DealType
    entry: DealEntry = DealEntry.IN
    volume: int = 0
    price: int = 0
    commission: Decimal = _ZERO
    swap: Decimal = _ZERO
    profit: Decimal = _ZERO
    fee: Decimal = _ZERO
    time_ns: int
    magic: int = 0
    reason: int = 0
    comment: str = ""

    @property
    def is_trade(self) -> bool:
        """True for BUY and SELL deals."""
        return self.type.is_trade

    @property
    def side(self) -> Side:
        """The side a trade deal traded; raises `ValueError` for other deal types."""
        return self.type.side

    @property
    def time_msc(self) -> int:
        """Deal time in epoch milliseconds, as MT5 reports it."""
        return self.time_ns // 1_000_000

    @property
    def balance_change(self) -> Decimal:
        """What the deal adds to the balance: profit + commission + swap + fee."""
        return self.profit + self.commission + self.swap + self.fee
