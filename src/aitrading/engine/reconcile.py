"""Reconciliation: the terminal is the truth of what happened at the broker; the engine's books follow it.

`reconcile` compares an account's books with the agent's `AccountSnapshot` and returns what to do:
- deals the books lack are booked in time order. Those of an order the engine sent (matched by the order's
  ticket or by the client order id in the deal's comment) fill that order; those the broker made by itself
  (stop loss, take profit, stop-out, swaps, balance operations) are expected; any other (a trade placed by
  hand at the terminal, say) is booked and raises an `unknown_deal` alert;
- an order still waiting for its report whose client order id the terminal lists among its pending orders
  is accepted (its report was lost);
- positions that differ in symbol, side or volume raise `position_mismatch`, and a balance that differs
  raises `balance_mismatch`; in both cases the books adopt the terminal's view. Floating profit, swap and
  margin are always taken from the terminal (they are its to compute).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aitrading.engine.books import AccountBook
from aitrading.model.deals import Deal
from aitrading.model.events import ReconciliationAlert
from aitrading.model.orders import Order
from aitrading.model.positions import Position
from aitrading.model.wire import AccountSnapshot, PendingOrder

__all__ = ["BROKER_REASONS", "ReconcilePlan", "compare_positions", "plan"]

# DEAL_REASON_* the broker produces by itself: SL 4, TP 5, SO 6, ROLLOVER 7, VMARGIN 8, SPLIT 9.
BROKER_REASONS = frozenset({4, 5, 6, 7, 8, 9})


@dataclass(slots=True)
class ReconcilePlan:
    """What reconciliation found: deals to book (with their order, if any), acceptances and alerts."""

    deals: list[tuple[Deal, Order | None]] = field(default_factory=list)
    accepted: list[tuple[Order, PendingOrder]] = field(default_factory=list)
    alerts: list[ReconciliationAlert] = field(default_factory=list)
    adopt_positions: dict[int, Position] | None = None


def _describe(positions: dict[int, Position]) -> str:
    return ", ".join(
        f"{p.identifier}:{p.symbol} {p.type.name} {p.volume}"
        for p in sorted(positions.values(), key=lambda p: p.identifier)
    )


def plan(book: AccountBook, snap: AccountSnapshot) -> ReconcilePlan:
    """Compare `book` with `snap` and return what to book, accept and report (see the module docstring)."""
    out = ReconcilePlan()
    by_comment: dict[str, Order] | None = None  # built only for a deal its ticket does not place

    def alert(kind: str, detail: str, ours: str = "", theirs: str = "", resolved: str = "") -> None:
        out.alerts.append(
            ReconciliationAlert(
                tenant=book.tenant,
                account=book.account,
                ts_ns=snap.ts_ns,
                kind=kind,
                detail=detail,
                ours=ours,
                theirs=theirs,
                resolved=resolved,
            )
        )

    for deal in sorted(snap.deals, key=lambda d: (d.time_ns, d.ticket)):
        if deal.ticket in book.deals:
            continue
        order = book.order_by_ticket(deal.order) if deal.order else None
        if order is None and deal.comment:
            if by_comment is None:
                by_comment = {o.client_order_id: o for o in book.orders.values()}
            order = by_comment.get(deal.comment)
        if order is None and deal.is_trade and deal.reason not in BROKER_REASONS:
            alert(  # a trade made by hand at the terminal, or by another program
                "unknown_deal",
                f"deal {deal.ticket} ({deal.symbol} {deal.type.name} {deal.volume}) of no engine order",
                theirs=f"order {deal.order}, comment {deal.comment!r}",
                resolved="booked",
            )
        out.deals.append((deal, order))

    listed = {p.comment: p for p in snap.orders if p.comment}
    for order in book.working_orders():
        pending = listed.get(order.client_order_id)
        if pending is not None and not order.ticket:
            out.accepted.append((order, pending))
    return out


def compare_positions(book: AccountBook, snap: AccountSnapshot) -> ReconcilePlan:
    """After the plan's deals are booked: compare positions and balance, and say what to adopt."""
    out = ReconcilePlan()
    theirs = {p.identifier: p for p in snap.positions}
    ours = book.positions

    def shape(ps: dict[int, Position]) -> dict[int, tuple[str, int, int]]:
        return {i: (p.symbol, int(p.type), p.volume) for i, p in ps.items()}

    if shape(ours) != shape(theirs):
        out.alerts.append(
            ReconciliationAlert(
                tenant=book.tenant,
                account=book.account,
                ts_ns=snap.ts_ns,
                kind="position_mismatch",
                detail="open positions differ from the terminal's",
                ours=_describe(ours),
                theirs=_describe(theirs),
                resolved="adopted the terminal's positions",
            )
        )
    out.adopt_positions = theirs
    if book.state.balance != snap.account_state.balance:
        out.alerts.append(
            ReconciliationAlert(
                tenant=book.tenant,
                account=book.account,
                ts_ns=snap.ts_ns,
                kind="balance_mismatch",
                detail="balance differs from the terminal's",
                ours=str(book.state.balance),
                theirs=str(snap.account_state.balance),
                resolved="adopted the terminal's balance",
            )
        )
    return out
