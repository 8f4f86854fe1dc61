"""What comes back from the agents: order reports, account snapshots (reconciliation) and presence.

- `OrderReport` (`ord.rpt.<tenant>.<account>`): the terminal's answer to one command. A refusal rejects an
  order still waiting for its answer; an acceptance places it, its deals are booked (positions and money
  move, the order fills) and a command that changed something else (SLTP, MODIFY, REMOVE) is closed.
- `AccountSnapshot` (`acct.snap.<tenant>.<account>`): the terminal's view, reconciled by `engine.reconcile`
  (the first one registers the account).
- `AgentPresence` (`agent.presence.<tenant>`): an account's agent came online, so commands still waiting for
  a report are sent again; the agent answers one it already executed from its journal or the terminal's
  history, so nothing runs twice. An account whose symbol specs have not come yet is asked for them.
- `SymbolSpecs` (`acct.specs.<tenant>.<account>`): the terminal's `symbol_info` of the account's symbols;
  from then on that account's orders are checked (volume limits, stops level, margin) and its positions
  valued with them, and symbols it did not report fall back to the kernel's default specs.

`Execution` is the half of `TradingEngine` that handles these; it shares the engine's state (`EngineCore`).
"""

from __future__ import annotations

import structlog

from aitrading.engine import reconcile
from aitrading.engine.books import AccountBook
from aitrading.engine.core import EngineCore, plain
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.deals import Deal
from aitrading.model.enums import OrderState, OrderType, TradeAction
from aitrading.model.events import (
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderModified,
    OrderPartiallyFilled,
    OrderRejected,
)
from aitrading.model.ids import order_command_subject
from aitrading.model.orders import Order, OrderStateError
from aitrading.model.wire import (
    AccountSnapshot,
    AgentPresence,
    OrderReport,
    SpecsRequest,
    SymbolSpecs,
    specs_request_subject,
)

__all__ = ["Execution"]

_log = structlog.get_logger("engine")

_OK_RETCODES = frozenset({10008, 10009, 10010})  # PLACED, DONE, DONE_PARTIAL


def _fills(order: Order, deal: Deal) -> bool:
    """Tell whether `deal` fills `order` (once): a CLOSE_BY makes two deals and is filled by the one of its
    `position` (the other closes `position_by`)."""
    if not deal.is_trade or deal.ticket in order.deals or not order.volume:
        return False
    return order.type is not OrderType.CLOSE_BY or deal.position_id == order.position_id


def _deal_time(deal: Deal) -> tuple[int, int]:
    return deal.time_ns, deal.ticket


class Execution(EngineCore):
    """Reports, snapshots and presence of the agents, applied to the books."""

    async def on_report(self, rep: OrderReport) -> None:
        """Apply what the agent reports of one command."""
        await self._locked(self._on_report(rep))

    async def _on_report(self, rep: OrderReport) -> None:
        book = self.book(rep.tenant, rep.account)
        if book is None:
            raise KeyError(f"report for unknown account {rep.tenant}/{rep.account}")
        order = book.orders.get(rep.client_order_id)
        if order is None:
            raise KeyError(f"report for unknown order {rep.client_order_id}")
        self.counters["reports"] += 1
        now = self._clock.now_ns()
        await self._audit.append(
            rep.tenant,
            "agent",
            "order.report",
            {
                "client_order_id": rep.client_order_id,
                "retcode": rep.retcode,
                "order": rep.order,
                "deal": rep.deal,
                "recovered": rep.recovered,
                "comment": rep.comment,
                "deals": [d.ticket for d in rep.deals],
            },
        )
        if order.is_terminal and order.state is not OrderState.FILLED:
            return
        if rep.retcode not in _OK_RETCODES:
            if order.state is OrderState.REQUEST_ADD:
                event: OrderEvent = OrderRejected(
                    tenant=rep.tenant,
                    account=rep.account,
                    client_order_id=rep.client_order_id,
                    ts_ns=now,
                    retcode=rep.retcode,
                    text=rep.comment,
                )
                await self._apply(book, order, event)
            return
        # A MODIFY/REMOVE/SLTP is tracked as an order of its own, but the ticket in its report is its
        # target's: only orders the command opened take the ticket.
        if order.state is OrderState.REQUEST_ADD:
            request = self._request_of(order)
            if request is None or request.opens_order:
                await self._accept(book, order, rep.order, now, rep.retcode)
        deals = rep.deals
        for deal in sorted(deals, key=_deal_time) if len(deals) > 1 else deals:
            await self._book_deal(book, deal, book.orders[rep.client_order_id])
        order = book.orders[rep.client_order_id]
        if not order.is_terminal:  # a terminal order has nothing to finish (`_finish_command` says so)
            await self._finish_command(book, order, now)
        await self._save_positions(book)

    async def _finish_command(self, book: AccountBook, order: Order, now: int) -> None:
        """Close a command that changed something else (SLTP, MODIFY, REMOVE) once the terminal did it."""
        request = self._request_of(order)
        if request is None or request.opens_order or order.is_terminal:
            return
        target = book.order_by_ticket(request.order) if request.order else None
        if target is not None and not target.is_terminal and target is not order:
            try:
                await self._change_target(book, order, request, target, now)
            except OrderStateError as exc:  # the target moved on meanwhile (filled, say): nothing to change
                _log.warning("engine.target_unchanged", order=target.client_order_id, error=str(exc))
        await self._apply(
            book,
            book.orders[order.client_order_id],
            OrderCanceled(
                tenant=book.tenant,
                account=book.account,
                client_order_id=order.client_order_id,
                ts_ns=now,
                reason=f"TRADE_ACTION_{request.action.name} done",
            ),
        )

    async def _change_target(
        self, book: AccountBook, order: Order, request: OrderRequest, target: Order, now: int
    ) -> None:
        """Apply a done REMOVE or MODIFY to the pending order it named."""
        tenant, account, coid = book.tenant, book.account, target.client_order_id
        if request.action is TradeAction.REMOVE:
            reason = f"removed by {order.client_order_id}"
            event: OrderEvent = OrderCanceled(
                tenant=tenant, account=account, client_order_id=coid, ts_ns=now, reason=reason
            )
        elif request.action is TradeAction.MODIFY:
            event = OrderModified(
                tenant=tenant,
                account=account,
                client_order_id=coid,
                ts_ns=now,
                price=request.price or target.price,
                stoplimit=request.stoplimit or target.stoplimit,
                sl=request.sl,
                tp=request.tp,
                expiration_ns=request.expiration_ns or target.expiration_ns,
            )
        else:
            return
        await self._apply(book, target, event)

    async def _book_deal(self, book: AccountBook, deal: Deal, order: Order | None) -> None:
        """Book `deal` once (stored, audited, positions and money moved) and fill `order` with it once."""
        new = deal.ticket not in book.deals
        events = book.book_deal(deal, self._profit_fn(book), self._clock.now_ns()) if new else []
        if new:
            await self._store.save_deals(book.tenant, book.account, [deal])
            await self._audit.append(book.tenant, "broker", "deal.booked", plain(deal))
        if order is not None and _fills(order, deal):
            remaining = order.volume - order.volume_filled
            cls = OrderFilled if deal.volume >= remaining else OrderPartiallyFilled
            fill = cls(
                tenant=book.tenant,
                account=book.account,
                client_order_id=order.client_order_id,
                ts_ns=self._clock.now_ns(),
                deal=deal,
            )
            try:
                await self._apply(book, order, fill)
            except OrderStateError as exc:
                _log.warning("engine.fill_refused", order=order.client_order_id, error=str(exc))
        for event in events:
            self._emit(book, event)
        if new:
            await self._after_money_change(book)

    async def on_snapshot(self, snap: AccountSnapshot) -> None:
        """Reconcile the books with the terminal's view (registering the account the first time)."""
        await self._locked(self._on_snapshot(snap))

    async def _on_snapshot(self, snap: AccountSnapshot) -> None:
        key = (snap.tenant, snap.account)
        book = self.books.get(key)
        if book is None:
            feed = self._feeds.get(key, "")
            book = self.books[key] = AccountBook(snap.tenant, snap.account, feed, snap.account_state)
            book.online = True
            for deal in snap.deals:
                book.deals[deal.ticket] = deal
            book.positions = {p.identifier: p for p in snap.positions}
            await self._store.save_deals(snap.tenant, snap.account, snap.deals)
            await self._save_positions(book)
            await self._save_account(book)
            await self._audit.append(
                snap.tenant, "engine", "account.registered", {"account": snap.account, "feed": feed}
            )
            return
        todo = reconcile.plan(book, snap)
        for order, pending in todo.accepted:
            await self._accept(book, order, pending.ticket, snap.ts_ns)
        for deal, linked in todo.deals:
            if linked is not None and linked.state is OrderState.REQUEST_ADD:
                await self._accept(book, linked, deal.order, snap.ts_ns)
            await self._book_deal(book, deal, None if linked is None else book.orders[linked.client_order_id])
        after = reconcile.compare_positions(book, snap)
        for alert in [*todo.alerts, *after.alerts]:
            self.counters["alerts"] += 1
            await self._audit.append(book.tenant, "reconciler", "reconcile.alert", plain(alert))
            self._emit(book, alert)
            _log.warning("engine.reconcile_alert", kind=alert.kind, detail=alert.detail)
        book.adopt(snap.account_state, after.adopt_positions or {})
        await self._save_positions(book)
        await self._save_account(book)

    async def on_presence(self, presence: AgentPresence) -> None:
        """Note which accounts are online; resend to them the commands still waiting for a report."""
        await self._locked(self._on_presence(presence))

    async def _on_presence(self, presence: AgentPresence) -> None:
        for account in presence.accounts:
            key = (presence.tenant, account)
            if account in presence.feeds:
                self._feeds[key] = presence.feeds[account]
            book = self.books.get(key)
            if book is None:
                continue
            if account in presence.feeds and not book.feed:
                book.feed = presence.feeds[account]
                await self._save_account(book)  # a snapshot may have registered it before its feed was known
            book.online = presence.online
            if not presence.online:
                continue
            if key not in self._account_specs:
                self._ask_specs(book)
            for order in book.working_orders():
                if order.state is not OrderState.REQUEST_ADD:
                    continue
                request = self._request_of(order)
                if request is None:
                    continue
                self.counters["resent"] += 1
                await self._audit.append(
                    book.tenant, "engine", "order.resent", {"client_order_id": order.client_order_id}
                )
                self._outbox.append(
                    (order_command_subject(book.tenant, book.account), TradeCommand(request=request))
                )

    async def on_specs(self, msg: SymbolSpecs) -> None:
        """Take the symbol specs an account's terminal reported; its orders are checked and valued by them."""
        await self._locked(self._on_specs(msg))

    async def _on_specs(self, msg: SymbolSpecs) -> None:
        key = (msg.tenant, msg.account)
        if key not in self.books:
            raise KeyError(f"symbol specs for unknown account {msg.tenant}/{msg.account}")
        reported = self._account_specs.setdefault(key, {})
        changed = sorted(s.name for s in msg.specs if reported.get(s.name) != s)
        reported.update({s.name: s for s in msg.specs})
        known = self._profit_fns.get(key)
        if known is not None:  # it keeps the specs it was given, and its books their marks
            known[1].forget_specs()
        if changed:
            await self._audit.append(
                msg.tenant, "agent", "account.specs", {"account": msg.account, "symbols": changed}
            )

    def _ask_specs(self, book: AccountBook) -> None:
        """Ask the account's agent for its terminal's symbol specs (it also sends them on connecting)."""
        ask = SpecsRequest(tenant=book.tenant, account=book.account)
        self._outbox.append((specs_request_subject(book.tenant, book.account), ask))

    def _request_of(self, order: Order) -> OrderRequest | None:
        """Return the request behind `order`: kept in memory and stored with the order (reloaded at start).

        A row written before requests were stored has none; a new market or pending order is rebuilt from
        the order then. Nothing else is (a MODIFY or REMOVE tracked as an order cannot be told apart).
        """
        request = self._requests.get((order.tenant, order.account, order.client_order_id))
        if request is not None or not order.symbol or order.type.value > 7 or order.volume <= 0:
            return request
        return OrderRequest(
            client_order_id=order.client_order_id,
            tenant=order.tenant,
            account=order.account,
            ts_ns=order.time_setup_ns,
            symbol=order.symbol,
            action=TradeAction.DEAL if order.type.is_market else TradeAction.PENDING,
            type=order.type,
            volume=order.volume,
            price=order.price,
            stoplimit=order.stoplimit,
            sl=order.sl,
            tp=order.tp,
            filling=order.filling,
            type_time=order.type_time,
            expiration_ns=order.expiration_ns,
            magic=order.magic,
            comment=order.comment,
            strategy=order.strategy,
            position=order.position_id,
        )
