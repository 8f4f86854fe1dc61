"""Positions and the pure functions that apply deals to them, on netting and on hedging accounts.

**Average-price rule (exact).** A position carries `cost`, the sum of price × lots of its open volume, as
an exact `Decimal` (1e-17 resolution: a raw price times a raw volume). Opening or adding at price p for
volume v adds p × v; so after adds only, `price_open = cost / volume` is exactly Σpᵢvᵢ / Σvᵢ. Reducing by q
of V removes q × price_open, rounded half-even to the nearest 1e-17 price × lots so `cost` stays exact and
finite; a full close removes all of what is left. Hence, for every sequence of deals and any mark price P,
realised profit + floating profit equals the cash-flow profit Σ side × (P − pᵢ) × vᵢ of the deals (when
profit is linear in the price difference, as MT5's formulas are); no FIFO lots are kept.

Profit comes from an injected `ProfitFn`, so the trading engine can plug in MT5's formulas (currency
conversion, calculation modes); `linear_profit` is the plain (close − open) × lots × contract size.
Commission, swap and fee stay on the deals: the caller books them. A changed position is revalued at the
deal's price until the next tick re-marks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction

import msgspec

from aitrading.common.errors import BadInputError, NotFoundError
from aitrading.model._exact import (
    div_half_even,
    fraction_to_decimal,
    notional_decimal,
    notional_from_decimal,
    notional_raw,
)
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, PositionType, Side
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE

__all__ = [
    "Position",
    "PositionType",
    "ProfitFn",
    "apply_deal_hedging",
    "apply_deal_netting",
    "floating_profit",
    "linear_profit",
    "mark",
    "netting_entry",
]

_ZERO = Decimal(0)

ProfitFn = Callable[[str, Side, int, Fraction, Fraction], Decimal]
"""`profit_fn(symbol, side, volume_raw, price_open, price_close)` → profit in the account currency.

Prices are exact `Fraction`s in price units (an average open price need not be a terminating decimal);
`volume_raw` is in 1e-8 lots; `side` is the side of the position being valued.
"""


def linear_profit(contract_size: Decimal | Mapping[str, Decimal]) -> ProfitFn:
    """Return the profit function (close − open) × lots × contract size, negated for SELL, exact.

    `contract_size` is one size for every symbol or a size per symbol.
    """

    def profit(symbol: str, side: Side, volume: int, price_open: Fraction, price_close: Fraction) -> Decimal:
        size = contract_size if isinstance(contract_size, Decimal) else contract_size[symbol]
        amount = (price_close - price_open) * Fraction(volume, VOLUME_SCALE) * Fraction(size)
        return fraction_to_decimal(amount * side.sign)

    return profit


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """An open position (MT5's `TradePosition`) with its exact cost; see the module docstring.

    `ticket` may change on a netting reversal; `identifier` (MT5's `POSITION_IDENTIFIER`) never does.
    `volume`, `sl`, `tp` and `price_current` are raw; `profit` is the floating profit at `price_current`.
    """

    ticket: int
    identifier: int
    symbol: str
    type: Side
    volume: int
    cost: Decimal
    sl: int = 0
    tp: int = 0
    price_current: int = 0
    swap: Decimal = _ZERO
    profit: Decimal = _ZERO
    time_ns: int = 0
    time_update_ns: int = 0
    magic: int = 0
    comment: str = ""

    @property
    def cost_raw(self) -> int:
        """`cost` in raw notional units (raw price × raw volume)."""
        return notional_from_decimal(self.cost)

    @property
    def price_open(self) -> Fraction:
        """The exact average open price, in price units."""
        return Fraction(self.cost_raw, self.volume * PRICE_SCALE)

    @property
    def price_open_raw(self) -> int:
        """The average open price as a raw price, rounded half-even to 1e-9."""
        return div_half_even(self.cost_raw, self.volume)

    @property
    def signed_volume(self) -> int:
        """Raw volume, negative for SELL."""
        return self.volume * self.type.sign


def floating_profit(position: Position, price: int, profit_fn: ProfitFn) -> Decimal:
    """Return the profit of closing all of `position` at raw `price`."""
    return profit_fn(
        position.symbol, position.type, position.volume, position.price_open, Fraction(price, PRICE_SCALE)
    )


def mark(position: Position, price: int, profit_fn: ProfitFn, time_ns: int = 0) -> Position:
    """Return `position` valued at raw `price` (its exit price: bid for BUY, ask for SELL)."""
    return msgspec.structs.replace(
        position,
        price_current=price,
        profit=floating_profit(position, price, profit_fn),
        time_update_ns=time_ns or position.time_update_ns,
    )


def netting_entry(position: Position | None, side: Side, volume: int) -> DealEntry:
    """Return the `DEAL_ENTRY_*` a deal of `side` and raw `volume` gets on a netting account."""
    if position is None or position.type is side:
        return DealEntry.IN
    return DealEntry.OUT if volume <= position.volume else DealEntry.INOUT


def apply_deal_netting(
    position: Position | None, deal: Deal, profit_fn: ProfitFn
) -> tuple[Position | None, Decimal]:
    """Apply a trade deal to the one position of its symbol; return the new position and realised profit.

    Same side adds and re-averages; the opposite side reduces, closes (→ None) or reverses (the rest opens
    on the other side at the deal price, keeping the identifier and taking the deal's order as ticket).
    The deal's `entry` is not consulted; `netting_entry` says what it should be.
    """
    _check_trade(deal)
    if position is None:
        return _open(deal, deal.volume), _ZERO
    if deal.symbol != position.symbol:
        raise BadInputError(f"deal {deal.ticket} is for {deal.symbol}, the position for {position.symbol}")
    if deal.position_id and deal.position_id != position.identifier:
        raise BadInputError(
            f"deal {deal.ticket} names position {deal.position_id}; the {deal.symbol} position is "
            f"{position.identifier}"
        )
    if deal.side is position.type:
        cost = position.cost_raw + notional_raw(deal.price, deal.volume)
        added = msgspec.structs.replace(
            position,
            volume=position.volume + deal.volume,
            cost=notional_decimal(cost),
        )
        return mark(added, deal.price, profit_fn, deal.time_ns), _ZERO
    closed = min(deal.volume, position.volume)
    rest, realised = _reduce(position, closed, deal, profit_fn)
    if deal.volume > closed:
        reversed_ = _open(deal, deal.volume - closed)
        rest = msgspec.structs.replace(reversed_, identifier=position.identifier)
    return rest, realised


def apply_deal_hedging(
    positions: Mapping[int, Position], deal: Deal, profit_fn: ProfitFn
) -> tuple[dict[int, Position], Decimal]:
    """Apply a trade deal to a hedging account's positions (keyed by identifier).

    Each IN deal opens its own position; OUT and OUT_BY reduce or close the position named by the deal's
    `position_id`. Hedging accounts never reverse, so INOUT is refused.
    """
    _check_trade(deal)
    book = dict(positions)
    if deal.entry is DealEntry.IN:
        opened = _open(deal, deal.volume)
        if opened.identifier in book:
            raise BadInputError(f"deal {deal.ticket} opens position {opened.identifier}, which is open")
        book[opened.identifier] = opened
        return book, _ZERO
    if deal.entry is DealEntry.INOUT:
        raise BadInputError(f"deal {deal.ticket} is INOUT; hedging accounts do not reverse positions")
    position = book.get(deal.position_id)
    if position is None:
        raise NotFoundError(f"deal {deal.ticket} closes position {deal.position_id}, which is not open")
    if deal.symbol != position.symbol or deal.side is position.type:
        raise BadInputError(
            f"deal {deal.ticket} ({deal.side.name} {deal.symbol}) cannot close the "
            f"{position.type.name} {position.symbol} position {position.identifier}"
        )
    if deal.volume > position.volume:
        raise BadInputError(
            f"deal {deal.ticket} closes {deal.volume} of position {position.identifier}, which has "
            f"{position.volume}"
        )
    rest, realised = _reduce(position, deal.volume, deal, profit_fn)
    if rest is None:
        del book[position.identifier]
    else:
        book[position.identifier] = rest
    return book, realised


def _check_trade(deal: Deal) -> None:
    if not deal.is_trade:
        raise BadInputError(f"deal {deal.ticket} is {deal.type.name}; only BUY and SELL deals move positions")
    if deal.volume <= 0:
        raise BadInputError(f"deal {deal.ticket} has volume {deal.volume}; it must be positive")
    if not deal.symbol:
        raise BadInputError(f"deal {deal.ticket} has no symbol")


def _open(deal: Deal, volume: int) -> Position:
    return Position(
        ticket=deal.order or deal.ticket,
        identifier=deal.position_id or deal.order or deal.ticket,
        symbol=deal.symbol,
        type=deal.side,
        volume=volume,
        cost=notional_decimal(notional_raw(deal.price, volume)),
        price_current=deal.price,
        time_ns=deal.time_ns,
        time_update_ns=deal.time_ns,
        magic=deal.magic,
        comment=deal.comment,
    )


def _reduce(
    position: Position, volume: int, deal: Deal, profit_fn: ProfitFn
) -> tuple[Position | None, Decimal]:
    """Close `volume` of `position` at the deal's price; return what is left (None if nothing)."""
    cost = position.cost_raw
    removed = cost if volume == position.volume else div_half_even(cost * volume, position.volume)
    realised = profit_fn(
        position.symbol,
        position.type,
        volume,
        Fraction(removed, volume * PRICE_SCALE),
        Fraction(deal.price, PRICE_SCALE),
    )
    if volume == position.volume:
        return None, realised
    rest = msgspec.structs.replace(
        position,
        volume=position.volume - volume,
        cost=notional_decimal(cost - removed),
    )
    return mark(rest, deal.price, profit_fn, deal.time_ns), realised
