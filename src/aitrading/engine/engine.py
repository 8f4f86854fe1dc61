"""The trading engine: orders in, risk-checked commands out to the agents, books kept from what they report.

Hot path of `submit`: structural checks → MT5 pre-trade checks (`model.checks`: retcodes) → risk limits
(`engine.risk`) → the order is persisted (REQUEST_ADD) and audited → a `TradeCommand` goes out on
`ord.cmd.<tenant>.<account>`. A refusal is an `OrderDenied` event with its reason, persisted and audited
like an acceptance; `submit` never raises for a bad order.

What comes back: `OrderReport`s on `ord.rpt.*.*` (accepted/rejected, deals → fills, positions, balance),
`AccountSnapshot`s on `acct.snap.*.*` (reconciliation: `engine.reconcile`), `AgentPresence` on
`agent.presence.*` (an account's agent came online: commands still waiting for a report are sent again —
the agent answers a command it already executed from its journal or the terminal's history, so nothing
runs twice), and ticks on `md.tick.*.*` (floating P&L, equity, risk state). Every event goes out on
`ord.evt.<tenant>.<account>` and every decision into the tenant's audit chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple, TypeVar

import msgspec
import structlog

from aitrading.common.bus import Bus, Subscription
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.engine import reconcile
from aitrading.engine.books import AccountBook, account_profit_fn
from aitrading.engine.limits import RiskLimits, RiskScope, RiskState
from aitrading.engine.risk import RiskEngine
from aitrading.engine.store import EngineStore
from aitrading.model import calc
from aitrading.model.checks import Retcode, check_request
from aitrading.model.commands import OrderRequest, TradeCommand, request_problems
from aitrading.model.deals import Deal
from aitrading.model.enums import OrderState, TradeAction
from aitrading.model.events import (
    AccountUpdated,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSubmitted,
)
from aitrading.model.ids import (
    AccountId,
    TenantId,
    order_command_subject,
    order_event_subject,
)
from aitrading.model.market import Tick
from aitrading.model.orders import Order, OrderStateError, transition
from aitrading.model.positions import ProfitFn
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE
from aitrading.model.wire import AccountSnapshot, AgentPresence, OrderReport
from aitrading.storage.audit import AuditLog

__all__ = ["MarketOpenFn", "SubmitResult", "TradingEngine"]

_log = structlog.get_logger("engine")
_T = TypeVar("_T")

MarketOpenFn = Callable[[str, str, int], bool]
"""(feed, symbol, now_ns) → whether the symbol trades now."""

_OK_RETCODES = frozenset({10008, 10009, 10010})  # PLACED, DONE, DONE_PARTIAL
RISK_RETCODE = 10006  # TRADE_RETCODE_REJECT: the platform refused before the broker saw it
_ACCOUNT_EVENT_NS = 250_000_000  # at most 4 AccountUpdated per second per account from ticks


class SubmitResult(NamedTuple):
    """What `submit` did: the order as it now stands, the retcode, and the denial reason if refused."""

    order: Order
    retcode: int
    reason: str = ""
    text: str = ""

    @property
    def denied(self) -> bool:
        """True when the platform refused the order."""
        return self.order.state is OrderState.REJECTED


class _Rates:
    def __init__(self, engine: TradingEngine, feed: str) -> None:
        self._engine, self._feed = engine, feed

    def quote(self, symbol: str) -> tuple[int, int] | None:
        tick = self._engine.last_tick(self._feed, symbol)
        return None if tick is None else (tick.bid, tick.ask)


class TradingEngine:
    """Orders, risk, execution through agents, books and reconciliation for every tenant's accounts."""

    def __init__(
        self,
        bus: Bus,
        store: EngineStore,
        audit: AuditLog,
        clock: Clock,
        specs: Mapping[str, SymbolSpec],
        *,
        market_open: MarketOpenFn | None = None,
    ) -> None:
        self._bus = bus
        self._store = store
        self._audit = audit
        self._clock = clock
        self._specs = dict(specs)
        self._market_open = market_open or (lambda _feed, _symbol, _now: True)
        self.risk = RiskEngine(clock)
        self.books: dict[tuple[str, str], AccountBook] = {}
        self._feeds: dict[tuple[str, str], str] = {}
        self._ticks: dict[tuple[str, str], Tick] = {}
        self._profit_fns: dict[tuple[str, str], ProfitFn] = {}
        self._last_account_event: dict[tuple[str, str], int] = {}
        self._subs: list[Subscription] = []
        self._requests: dict[str, OrderRequest] = {}
        self._outbox: list[tuple[str, Message]] = []
        self._lock = asyncio.Lock()
        self.counters: dict[str, int] = {"submitted": 0, "denied": 0, "reports": 0, "alerts": 0, "resent": 0}

    # --- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Reload the books and subscribe to reports, snapshots, presence and ticks."""
        for tenant in await self._store.tenants_with_accounts():
            await self.load_tenant(tenant)
        self._subs = [
            await self._bus.subscribe("ord.rpt.*.*", self._on_message),
            await self._bus.subscribe("acct.snap.*.*", self._on_message),
            await self._bus.subscribe("agent.presence.*", self._on_message),
            await self._bus.subscribe("md.tick.*.*", self._on_message),
        ]

    async def stop(self) -> None:
        """Unsubscribe."""
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []

    async def load_tenant(self, tenant: TenantId) -> None:
        """Load one tenant's accounts, orders, deals, positions and limits from the store."""
        accounts, limits = await self._store.load(tenant)
        for scope, scope_id, lim in limits:
            self.risk.set_limits(scope, tenant, scope_id, lim)
        for stored in accounts:
            book = AccountBook(tenant, stored.account, stored.feed, stored.state)
            for order in stored.orders:
                book.put_order(order)
            for deal in stored.deals:
                book.deals[deal.ticket] = deal
            book.positions = {p.identifier: p for p in stored.positions}
            book.risk_state, book.risk_reason = stored.risk_state, stored.risk_reason
            book.peak_equity = max(stored.state.equity, Decimal(str(stored.peak_equity)))
            self.books[(tenant, stored.account)] = book

    # --- queries -----------------------------------------------------------------------------------------
    def last_tick(self, feed: str, symbol: str) -> Tick | None:
        """Return the last tick of `symbol` on `feed`."""
        return self._ticks.get((feed, symbol))

    def book(self, tenant: str, account: str) -> AccountBook | None:
        """Return the books of one account of `tenant` (None if the tenant has no such account)."""
        return self.books.get((tenant, account))

    def accounts_of(self, tenant: str) -> list[AccountBook]:
        """Return the tenant's accounts."""
        return [b for (t, _), b in self.books.items() if t == tenant]

    def spec(self, symbol: str) -> SymbolSpec:
        """Return the symbol's spec; raise `KeyError` if unknown."""
        return self._specs[symbol]

    def _profit_fn(self, book: AccountBook) -> ProfitFn:
        key = (book.tenant, book.account)
        fn = self._profit_fns.get(key)
        if fn is None:
            fn = self._profit_fns[key] = account_profit_fn(
                self.spec, book.state.currency, _Rates(self, book.feed), book.state.digits
            )
        return fn

    def notional(self, book: AccountBook) -> Callable[[str, int, int], Decimal]:
        """Return |lots × contract size × price| of a symbol in the account currency."""
        rates = _Rates(self, book.feed)

        def value(symbol: str, volume: int, price: int) -> Decimal:
            spec = self.spec(symbol)
            amount = (
                Fraction(volume, VOLUME_SCALE) * Fraction(spec.contract_size) * Fraction(price, PRICE_SCALE)
            )
            try:
                rate = calc.conversion_rate(
                    spec.currency_profit,
                    book.state.currency,
                    rates,
                    use_ask_direct=True,
                    use_ask_inverse=False,
                )
            except ValueError:
                rate = Fraction(1)
            return calc.to_money(abs(amount * rate), book.state.digits)

        return value

    # --- submitting --------------------------------------------------------------------------------------
    async def submit(self, req: OrderRequest, actor: str) -> SubmitResult:
        """Check `req` and send it to the account's agent, or deny it; see the module docstring."""
        return await self._locked(self._submit(req, actor))

    async def _locked(self, work: Awaitable[_T]) -> _T:
        """Run `work` alone, then publish what it produced (outside the lock, so that a subscriber that
        answers at once — the in-process bus delivers inline — cannot deadlock on the engine)."""
        async with self._lock:
            result = await work
            out, self._outbox = self._outbox, []
        for subject, msg in out:
            await self._bus.publish(subject, msg)
        return result

    async def _submit(self, req: OrderRequest, actor: str) -> SubmitResult:
        book = self.book(req.tenant, req.account)
        if book is None:
            raise KeyError(f"no trading account {req.account!r}")
        existing = book.orders.get(req.client_order_id)
        if existing is not None:  # the same request again (a client retry): answer what happened
            return SubmitResult(existing, existing.retcode or int(Retcode.DONE), existing.reason)
        now = self._clock.now_ns()
        order = self._new_order(req)
        verdict = self._precheck(req, book, now)
        if verdict is None:
            denial = self.risk.check(req, book, self.last_tick(book.feed, req.symbol), self.notional(book))
            if denial is not None:
                verdict = (RISK_RETCODE, denial.reason, f"{denial.text} ({denial.scope} limit)")
        if verdict is not None:
            retcode, reason, text = verdict
            return await self._deny(book, order, req, actor, retcode, reason, text, now)
        self.risk.record(req)
        self._requests[req.client_order_id] = req
        submitted = OrderSubmitted(
            tenant=req.tenant,
            account=req.account,
            client_order_id=req.client_order_id,
            ts_ns=now,
            request=req,
        )
        order = transition(order, submitted)
        book.put_order(order)
        await self._store.save_order(order)
        await self._audit.append(req.tenant, actor, "order.submitted", {"request": _plain(req)})
        self.counters["submitted"] += 1
        self._outbox.append((order_command_subject(req.tenant, req.account), TradeCommand(request=req)))
        await self._emit(book, submitted)
        return SubmitResult(order, int(Retcode.DONE))

    def _new_order(self, req: OrderRequest) -> Order:
        if req.opens_order and not request_problems(req):
            return Order.from_request(req)
        # Changes to existing orders/positions and malformed requests are tracked as orders of their own.
        return Order(
            client_order_id=req.client_order_id,
            tenant=req.tenant,
            account=req.account,
            symbol=req.symbol,
            type=req.type,
            volume=max(req.volume, 0),
            price=req.price,
            sl=req.sl,
            tp=req.tp,
            magic=req.magic,
            comment=req.comment,
            strategy=req.strategy,
            position_id=req.position,
            time_setup_ns=req.ts_ns,
            time_update_ns=req.ts_ns,
        )

    def _precheck(self, req: OrderRequest, book: AccountBook, now: int) -> tuple[int, str, str] | None:
        problems = request_problems(req)
        if problems:
            return int(Retcode.INVALID), "invalid_request", "; ".join(problems)
        if req.action is TradeAction.REMOVE:
            return None
        spec = self._specs.get(req.symbol)
        if spec is None:
            return int(Retcode.INVALID), "unknown_symbol", f"unknown symbol {req.symbol!r}"
        tick = self.last_tick(book.feed, req.symbol)
        if tick is None:
            return int(Retcode.PRICE_OFF), "no_quote", f"no quote for {req.symbol} on {book.feed} yet"
        result = check_request(
            req,
            spec,
            tick,
            book.state,
            now_ms=now // 1_000_000,
            market_open=self._market_open(book.feed, req.symbol, now),
            rates=_Rates(self, book.feed),
        )
        if result.retcode != Retcode.DONE:
            return int(result.retcode), Retcode(result.retcode).name.lower(), result.comment
        return None

    async def _deny(
        self,
        book: AccountBook,
        order: Order,
        req: OrderRequest,
        actor: str,
        retcode: int,
        reason: str,
        text: str,
        now: int,
    ) -> SubmitResult:
        denied = OrderDenied(
            tenant=req.tenant,
            account=req.account,
            client_order_id=req.client_order_id,
            ts_ns=now,
            reason=reason,
            text=text,
        )
        order = msgspec.structs.replace(transition(order, denied), retcode=retcode)
        book.put_order(order)
        await self._store.save_order(order)
        await self._audit.append(
            req.tenant,
            actor,
            "order.denied",
            {"reason": reason, "retcode": retcode, "text": text, "request": _plain(req)},
        )
        self.counters["denied"] += 1
        await self._emit(book, denied)
        return SubmitResult(order, retcode, reason, text)

    # --- what comes back ---------------------------------------------------------------------------------
    async def _on_message(self, subject: str, msg: Message) -> None:
        try:
            if isinstance(msg, Tick):
                await self.on_tick(msg)
            elif isinstance(msg, OrderReport):
                await self.on_report(msg)
            elif isinstance(msg, AccountSnapshot):
                await self.on_snapshot(msg)
            elif isinstance(msg, AgentPresence):
                await self.on_presence(msg)
        except (OrderStateError, KeyError, ValueError) as exc:
            _log.warning("engine.message_refused", subject=subject, error=str(exc))

    async def on_tick(self, tick: Tick) -> None:
        """Keep the last tick; value the positions of accounts on that feed; update risk states."""
        self._ticks[(tick.feed, tick.symbol)] = tick
        if any(b.feed == tick.feed and b.positions for b in self.books.values()):
            await self._locked(self._on_tick(tick))

    async def _on_tick(self, tick: Tick) -> None:
        feed = tick.feed
        self._ticks[(feed, tick.symbol)] = tick
        for book in self.books.values():
            if book.feed != feed or not book.positions:
                continue
            if book.mark(tick.symbol, tick.bid, tick.ask, self._profit_fn(book), self._clock.now_ns()):
                await self._after_money_change(book, from_tick=True)

    async def _after_money_change(self, book: AccountBook, *, from_tick: bool = False) -> None:
        changed = self.risk.evaluate(book)
        if changed is not None:
            await self._audit.append(book.tenant, "risk-engine", "risk.state", _plain(changed))
            await self._emit(book, changed)
            await self._save_account(book)
        now = self._clock.now_ns()
        key = (book.tenant, book.account)
        if from_tick and now - self._last_account_event.get(key, 0) < _ACCOUNT_EVENT_NS:
            return
        self._last_account_event[key] = now
        await self._emit(
            book, AccountUpdated(tenant=book.tenant, account=book.account, ts_ns=now, state=book.state)
        )

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
        if order.state is OrderState.REQUEST_ADD:
            await self._accept(book, order, rep.order, now, rep.retcode)
        for deal in sorted(rep.deals, key=lambda d: (d.time_ns, d.ticket)):
            await self._book_deal(book, deal, book.orders[rep.client_order_id])
        await self._finish_command(book, book.orders[rep.client_order_id], now)
        await self._save_positions(book)

    async def _finish_command(self, book: AccountBook, order: Order, now: int) -> None:
        """Close a command that changed something else (SLTP, MODIFY, REMOVE) once the terminal did it."""
        request = self._requests.get(order.client_order_id)
        if request is None or request.opens_order or order.is_terminal:
            return
        if request.action is TradeAction.REMOVE:
            target = book.order_by_ticket(request.order)
            if target is not None and not target.is_terminal:
                await self._apply(
                    book,
                    target,
                    OrderCanceled(
                        tenant=book.tenant,
                        account=book.account,
                        client_order_id=target.client_order_id,
                        ts_ns=now,
                        reason=f"removed by {order.client_order_id}",
                    ),
                )
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

    async def _book_deal(self, book: AccountBook, deal: Deal, order: Order | None) -> None:
        """Book `deal` once (stored, audited, positions and money moved) and fill `order` with it once."""
        new = deal.ticket not in book.deals
        events = book.book_deal(deal, self._profit_fn(book), self._clock.now_ns()) if new else []
        if new:
            await self._store.save_deals(book.tenant, book.account, [deal])
            await self._audit.append(book.tenant, "broker", "deal.booked", _plain(deal))
        if order is not None and deal.is_trade and deal.ticket not in order.deals and order.volume:
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
            await self._emit(book, event)
        if new:
            await self._after_money_change(book)

    async def _accept(
        self, book: AccountBook, order: Order, ticket: int, ts_ns: int, retcode: int = int(Retcode.DONE)
    ) -> Order:
        """The terminal took the order (its report said so, or reconciliation found it there)."""
        accepted = OrderAccepted(
            tenant=book.tenant,
            account=book.account,
            client_order_id=order.client_order_id,
            ts_ns=ts_ns,
            ticket=ticket,
            retcode=retcode,
        )
        return await self._apply(book, order, accepted)

    async def _apply(self, book: AccountBook, order: Order, event: OrderEvent) -> Order:
        updated = transition(order, event)
        book.put_order(updated)
        await self._store.save_order(updated)
        await self._audit.append(
            book.tenant,
            "engine",
            "order.state",
            {
                "client_order_id": order.client_order_id,
                "event": type(event).__name__,
                "state": updated.state.name,
            },
        )
        await self._emit(book, event)
        return updated

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
            await self._audit.append(book.tenant, "reconciler", "reconcile.alert", _plain(alert))
            await self._emit(book, alert)
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
            book.online = presence.online
            if not presence.online:
                continue
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

    def _request_of(self, order: Order) -> OrderRequest | None:
        """Return the request behind `order` (kept in memory; rebuilt from the order after a restart)."""
        request = self._requests.get(order.client_order_id)
        if request is not None or not order.symbol or order.type.value > 7:
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

    # --- risk administration -----------------------------------------------------------------------------
    async def set_limits(
        self, tenant: TenantId, scope: RiskScope, scope_id: str, limits: RiskLimits | None, actor: str
    ) -> None:
        """Set one level's limits (persisted and audited)."""
        await self._locked(self._set_limits(tenant, scope, scope_id, limits, actor))

    async def _set_limits(
        self, tenant: TenantId, scope: RiskScope, scope_id: str, limits: RiskLimits | None, actor: str
    ) -> None:
        self.risk.set_limits(scope, tenant, scope_id, limits)
        await self._store.save_limits(tenant, scope, scope_id, limits, actor)
        payload: dict[str, Any] = {"scope": scope.value, "scope_id": scope_id}
        payload["limits"] = None if limits is None else _plain(limits)
        await self._audit.append(tenant, actor, "risk.limits", payload)
        for book in self.accounts_of(tenant):
            await self._after_money_change(book)

    async def set_risk_state(
        self, tenant: TenantId, account: AccountId, state: RiskState, actor: str, why: str
    ) -> AccountBook:
        """Set an account's risk state by hand (halt it, or lift a halt); audited."""
        return await self._locked(self._set_risk_state(tenant, account, state, actor, why))

    async def _set_risk_state(
        self, tenant: TenantId, account: AccountId, state: RiskState, actor: str, why: str
    ) -> AccountBook:
        book = self.book(tenant, account)
        if book is None:
            raise KeyError(f"no trading account {account!r}")
        changed = self.risk.reset(book, state, why or f"set by {actor}")
        if changed is not None:
            await self._audit.append(tenant, actor, "risk.state", _plain(changed))
            await self._emit(book, changed)
            await self._save_account(book)
        return book

    # --- plumbing ----------------------------------------------------------------------------------------
    async def _emit(self, book: AccountBook, event: Message) -> None:
        self._outbox.append((order_event_subject(book.tenant, book.account), event))

    async def _save_account(self, book: AccountBook) -> None:
        await self._store.save_account(
            book.tenant,
            book.account,
            book.feed,
            book.state,
            book.risk_state,
            book.risk_reason,
            book.peak_equity,
        )

    async def _save_positions(self, book: AccountBook) -> None:
        await self._store.replace_positions(book.tenant, book.account, book.positions.values())


def _plain(value: object) -> Any:
    """Return `value` as JSON-ready builtins: structs (bus messages too) as objects, Decimals as strings."""
    if isinstance(value, msgspec.Struct):
        return {f: _plain(getattr(value, f)) for f in value.__struct_fields__}
    return msgspec.to_builtins(value, enc_hook=str)
