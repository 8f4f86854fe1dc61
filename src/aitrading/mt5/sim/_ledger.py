"""The simulated broker's books: fills, positions and pending-order expiry, on top of its valuation.

Every fill goes through `plan_fill` (pure: the deal and the positions after it) and `commit` (books it), so
request checks can try a fill without booking it. What the books are worth (profit, margin, swap, the
account state) is `aitrading.mt5.sim._valuation`'s.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

import msgspec

from aitrading.model._exact import notional_decimal, notional_raw
from aitrading.model.calc import money_of, to_money
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, OrderState, OrderTime, OrderType, Side
from aitrading.model.positions import Position, apply_deal_hedging, apply_deal_netting, netting_entry
from aitrading.model.symbols import SymbolSpec
from aitrading.mt5 import constants as c
from aitrading.mt5.sim._valuation import Quotes, Valuation
from aitrading.mt5.sim.book import BookOrder

__all__ = ["FillPlan", "Ledger", "Quotes", "expiry_ns"]

NS_PER_DAY = 86_400_000_000_000
_ZERO = Decimal(0)
_DEAL_TYPES = (DealType.BUY, DealType.SELL)  # by `Side` (an enum call per fill costs more)
_CLOSING = (DealEntry.OUT, DealEntry.OUT_BY)


class FillPlan(NamedTuple):
    """A fill worked out but not booked: its deal, the positions and their reasons after it."""

    deal: Deal
    positions: dict[int, Position]
    reasons: dict[int, int]


def expiry_ns(order: BookOrder) -> int:
    """Return when a pending order expires (UTC epoch ns), 0 for good-till-cancelled."""
    if order.type_time is OrderTime.DAY:
        return (order.time_setup_ns // NS_PER_DAY + 1) * NS_PER_DAY
    if order.type_time is OrderTime.SPECIFIED:
        return order.expiration_ns
    if order.type_time is OrderTime.SPECIFIED_DAY:
        return (order.expiration_ns // NS_PER_DAY + 1) * NS_PER_DAY
    return 0


class Ledger(Valuation):
    """The books of one account and the arithmetic on them (see the module docstring)."""

    # --- fills -----------------------------------------------------------------------------------------
    def netting_position(self, symbol: str) -> Position | None:
        """Return the one position of `symbol` on a netting account."""
        return next((p for p in self.book.positions.values() if p.symbol == symbol), None)

    def find_position(self, ticket: int) -> Position | None:
        """Return the open position with this ticket (or identifier)."""
        book = self.book
        found = book.positions.get(ticket)
        if found is not None:
            return found
        return next((p for p in book.positions.values() if p.ticket == ticket), None)

    def plan_fill(
        self,
        order: BookOrder,
        side: Side,
        volume: int,
        price: int,
        time_ns: int,
        *,
        target: int = 0,
        out_by: bool = False,
        reason: int = c.DEAL_REASON_EXPERT,
    ) -> FillPlan:
        """Work out the deal of `order` trading `volume` at `price`, without booking it.

        `target` names the position a hedging fill closes (0 opens a new one); netting fills net against
        the symbol's position. SL/TP of the order go onto the position the fill opens or adds to.
        """
        book = self.book
        positions = dict(book.positions)
        if book.hedging:
            current = positions.get(target) if target else None
            entry = (DealEntry.OUT_BY if out_by else DealEntry.OUT) if target else DealEntry.IN
            position_id = target or order.ticket
        else:
            current = self.netting_position(order.symbol)
            entry = netting_entry(current, side, volume)
            position_id = current.identifier if current is not None else order.ticket
        swap = self._swap_share(current, volume) if entry is not DealEntry.IN else _ZERO
        deal = Deal(
            ticket=book.next_deal,
            order=order.ticket,
            position_id=position_id,
            symbol=order.symbol,
            type=_DEAL_TYPES[side],
            entry=entry,
            volume=volume,
            price=price,
            commission=self.commission(volume),
            swap=swap,
            time_ns=time_ns,
            magic=order.magic,
            reason=reason,
            comment=order.comment,
        )
        positions, realised = self._fill_positions(positions, current, deal, position_id)
        deal = msgspec.structs.replace(deal, profit=realised)
        reasons = dict(book.position_reasons)
        after = positions.get(position_id)
        if after is None:
            reasons.pop(position_id, None)
        else:
            if entry in _CLOSING and current is not None:
                after = msgspec.structs.replace(after, swap=current.swap - swap)
            elif order.sl or order.tp:
                after = msgspec.structs.replace(after, sl=order.sl or after.sl, tp=order.tp or after.tp)
            if entry is DealEntry.INOUT or (entry is DealEntry.IN and current is None):
                reasons[position_id] = order.reason if order.reason <= c.POSITION_REASON_EXPERT else 0
            if current is None:  # opened at the deal price: its cost is price × volume (`positions._open`)
                self._know_cost(after.cost, notional_raw(price, volume))
            positions[position_id] = after
        return FillPlan(deal, positions, reasons)

    def _fill_positions(
        self, positions: dict[int, Position], current: Position | None, deal: Deal, position_id: int
    ) -> tuple[dict[int, Position], Decimal]:
        """Apply `deal` to `positions` (a copy of the book's, changed in place where quicker) as
        `model.positions` does; return the positions after it and the profit it realises. `current` is the
        position it closes or nets against, `position_id` the position it books to."""
        volume, price, side = deal.volume, deal.price, deal.side
        if volume <= 0 or not deal.symbol:  # refused by `positions.apply_deal_*`
            return self._apply_deal(positions, current, deal)
        if current is None:
            if deal.entry is not DealEntry.IN or not position_id or position_id in positions:
                return self._apply_deal(positions, current, deal)
            # A new position (every open): `positions._open`, without the checks this deal passes.
            ticket = deal.order or deal.ticket
            positions[position_id] = Position(
                ticket=ticket,
                identifier=position_id,
                symbol=deal.symbol,
                type=side,
                volume=volume,
                cost=notional_decimal(notional_raw(price, volume)),
                price_current=price,
                time_ns=deal.time_ns,
                time_update_ns=deal.time_ns,
                magic=deal.magic,
                comment=deal.comment,
            )
            return positions, _ZERO
        if (
            deal.entry in _CLOSING
            and volume == current.volume
            and current.type is not side
            and current.symbol == deal.symbol
            and position_id == current.identifier
        ):
            # A whole position closed (every close by ticket): what `apply_deal_hedging`/`_netting` do
            # then — drop it and realise its profit at the deal price — with the profit in integers.
            del positions[current.identifier]
            return positions, self._profit_at(current, price)
        return self._apply_deal(positions, current, deal)

    def _apply_deal(
        self, positions: dict[int, Position], current: Position | None, deal: Deal
    ) -> tuple[dict[int, Position], Decimal]:
        """Apply `deal` to `positions` with `model.positions` (`current`: the position it nets against on a
        netting account); return the positions after it and the profit it realises."""
        if self.book.hedging:
            return apply_deal_hedging(positions, deal, self.profit_fn)
        after_netting, realised = apply_deal_netting(current, deal, self.profit_fn)
        if current is not None:
            del positions[current.identifier]
        if after_netting is not None:
            positions[after_netting.identifier] = after_netting
        return positions, realised

    def _swap_share(self, current: Position | None, volume: int) -> Decimal:
        """Return the part of `current`'s swap a deal closing up to `volume` of it books."""
        if current is None or not current.swap:
            return _ZERO
        closing = min(volume, current.volume)
        if closing == current.volume:
            return current.swap
        return to_money(Fraction(current.swap) * closing / current.volume, self.account.currency_digits)

    def commit(self, plan: FillPlan) -> Deal:
        """Book a planned fill: the deal, the positions, the balance."""
        book = self.book
        deal = plan.deal
        if deal.ticket != book.take_deal_ticket():
            raise RuntimeError("a fill was planned against other books")
        book.deals.append(deal)
        book.positions = plan.positions
        book.position_reasons = plan.reasons
        book.balance += deal.balance_change
        self.dirty = True
        return deal

    def margin_after(self, plan: FillPlan) -> tuple[Decimal, Decimal]:
        """Return (margin, free margin) the account would have after `plan`.

        Equity is taken as today's plus the deal's commission: a fill at the current exit price moves
        profit and swap from floating to balance without changing equity.
        """
        digits = self.account.currency_digits
        margin = money_of(*self._margin(plan.positions.values()), digits)
        return margin, self.equity + plan.deal.commission - margin

    def no_money(self, plan: FillPlan) -> bool:
        """Tell whether `plan` needs margin the account lacks (a fill that frees margin never does)."""
        if not plan.positions:  # no margin after it: `margin_after` would give 0, which exceeds no margin
            return False
        margin, free = self.margin_after(plan)
        return margin > self._margin_money() and free < 0  # `state.margin`, without building the state

    def archive(self, order: BookOrder, state: OrderState, time_ns: int, **changes: object) -> BookOrder:
        """Move `order` to the history in its final `state`."""
        self.book.orders.pop(order.ticket, None)
        done = msgspec.structs.replace(order, state=state, time_done_ns=time_ns, **changes)
        self.book.history_orders.append(done)
        self.dirty = True
        return done

    def close_position(
        self, position: Position, price: int, time_ns: int, *, reason: int, comment: str, volume: int = 0
    ) -> Deal:
        """Close `volume` (all when 0) of `position` at `price` by a server order (SL, TP, stop-out)."""
        volume = volume or position.volume
        side = position.type.opposite
        order = BookOrder(
            ticket=self.book.take_order_ticket(),
            symbol=position.symbol,
            type=OrderType(side.value),
            state=OrderState.STARTED,
            volume_initial=volume,
            volume_current=volume,
            price_open=price,
            price_current=price,
            magic=position.magic,
            comment=comment,
            position_id=position.identifier,
            reason=reason,
            time_setup_ns=time_ns,
        )
        plan = self.plan_fill(order, side, volume, price, time_ns, target=position.identifier, reason=reason)
        deal = self.commit(plan)
        self.archive(order, OrderState.FILLED, time_ns, volume_current=0)
        return deal

    def slipped(self, price: int, side: Side, spec: SymbolSpec) -> int:
        """Return `price` moved against `side` by a seeded random 0..slippage_points points."""
        points = self.settings.slippage_points
        if not points:
            return price
        # `randrange(n + 1)` is `randint(0, n)` (the same draw from the generator) with one call less.
        return price + side.sign * self.rng.randrange(points + 1) * spec.point_raw
