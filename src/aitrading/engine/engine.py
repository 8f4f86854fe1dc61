"""The trading engine: orders in, risk-checked commands out to the agents, books kept from what they report.

Hot path of `submit`, under the engine lock and in memory: structural checks → MT5 pre-trade checks
(`model.checks`: retcodes; CLOSE_BY: hedging accounts and two open opposite positions) → risk limits
(`engine.risk`) → the order (REQUEST_ADD) is booked. Its row and its audit event then go to the group-commit
writer (`engine.writer`: one transaction for both, shared with concurrent submits); once they are durable
`submit` returns and the `TradeCommand` goes out on `ord.cmd.<tenant>.<account>`. A refusal is an
`OrderDenied` event with its reason, persisted and audited like an acceptance; `submit` never raises for a
bad order.

What comes back (`engine.execution`): `OrderReport`s on `ord.rpt.*.*`, `AccountSnapshot`s on `acct.snap.*.*`
(reconciliation: `engine.reconcile`), `AgentPresence` on `agent.presence.*` (commands still waiting for a
report are sent again, also after a restart: their requests are stored with them) and `SymbolSpecs` on
`acct.specs.*.*` (the account's terminal's specs). Ticks on `md.tick.*.*` value the positions of the accounts
on that feed only (books are indexed by feed). Every event goes out on `ord.evt.<tenant>.<account>` and every
decision into the tenant's audit chain. State and plumbing shared by both halves are in `engine.core`.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import msgspec
import structlog

from aitrading.common.bus.codec import Message
from aitrading.common.errors import BadInputError
from aitrading.engine.books import AccountBook
from aitrading.engine.core import MarketOpenFn, SubmitResult, plain
from aitrading.engine.execution import Execution
from aitrading.engine.limits import RiskLimits, RiskScope, RiskState
from aitrading.model.checks import Retcode, check_request
from aitrading.model.commands import OrderRequest, TradeCommand, request_problems
from aitrading.model.enums import TradeAction
from aitrading.model.events import OrderDenied, OrderSubmitted
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.market import Tick
from aitrading.model.orders import Order, OrderStateError, transition
from aitrading.model.positions import Position
from aitrading.model.wire import AccountSnapshot, AgentPresence, OrderReport, SymbolSpecs

__all__ = ["ClientOrderIdTaken", "MarketOpenFn", "SubmitResult", "TradingEngine"]


class ClientOrderIdTaken(BadInputError):
    """The client order id names an order of another account of the tenant (ids are the tenant's)."""


_log = structlog.get_logger("engine")

RISK_RETCODE = 10006  # TRADE_RETCODE_REJECT: the platform refused before the broker saw it
POSITION_CLOSED_RETCODE = 10036  # TRADE_RETCODE_POSITION_CLOSED: no open position with that identifier


class TradingEngine(Execution):
    """Orders, risk, execution through agents, books and reconciliation for every tenant's accounts.

    Built as `TradingEngine(bus, store, audit, clock, specs, market_open=...)` on the database, or with the
    in-memory ports and `writer=` (`engine.memory`, for backtests); the state and plumbing are in
    `engine.core`, the handling of reports, snapshots and presence in `engine.execution`.
    """

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
            await self._bus.subscribe("acct.specs.*.*", self._on_message),
        ]
        for book in self.books.values():  # agents connected before this start already sent theirs
            self._ask_specs(book)
        out, self._outbox = self._outbox, []
        await self._publish(out)

    async def stop(self) -> None:
        """Unsubscribe, and commit the order rows still queued."""
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []
        await self._writer.close()
        await asyncio.gather(*self._background, return_exceptions=True)

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
            for coid, request in stored.requests.items():
                self._requests[(tenant, stored.account, coid)] = request
            self.books[(tenant, stored.account)] = book

    # --- submitting --------------------------------------------------------------------------------------
    async def submit(self, req: OrderRequest, actor: str) -> SubmitResult:
        """Check `req` and send it to the account's agent, or deny it; see the module docstring.

        The decision is made under the engine lock, in memory; the order row and its audit event are then
        committed by the group-commit writer (`engine.writer`) and only once they are durable does `submit`
        return and the command go out.
        """
        async with self._lock:
            result, durable = self._decide(req, actor)
            out, self._outbox = self._outbox, []
        if durable is not None:
            try:
                if durable.done():  # committed already (`engine.memory`): what awaiting it would give
                    durable.result()
                else:
                    await asyncio.shield(durable)
            except asyncio.CancelledError:  # the caller gave up; the decision stands and still goes out
                task = asyncio.get_running_loop().create_task(self._publish_when(durable, result.order, out))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                raise
            except Exception:
                self._forget_unwritten(result.order)
                raise
        await self._publish(out)
        return result

    async def _publish_when(
        self, durable: asyncio.Future[None], order: Order, out: list[tuple[str, Message]]
    ) -> None:
        try:
            await durable
        except Exception:
            self._forget_unwritten(order)
            return
        await self._publish(out)

    def _decide(self, req: OrderRequest, actor: str) -> tuple[SubmitResult, asyncio.Future[None] | None]:
        book = self.book(req.tenant, req.account)
        if book is None:
            raise KeyError(f"no trading account {req.account!r}")
        existing = book.orders.get(req.client_order_id)
        if existing is not None:  # the same request again (a client retry): answer what happened
            result = SubmitResult(existing, existing.retcode or int(Retcode.DONE), existing.reason)
            return result, self._writer.pending(req.client_order_id)
        for other in self.accounts_of(req.tenant):  # an order's row is the tenant's by its id
            if other is not book and req.client_order_id in other.orders:
                raise ClientOrderIdTaken(
                    f"client_order_id {req.client_order_id} is already used in account {other.account}"
                )
        now = self._clock.now_ns()
        problems = request_problems(req)
        order = self._new_order(req, problems)
        verdict = self._precheck(req, book, now, problems)
        if verdict is None and req.action is TradeAction.DEAL and req.position:
            closing = self._closing_order(book, req)
            if closing is not None:  # under the lock: two closes at once cannot both pass
                verdict = (
                    int(Retcode.CLOSE_ORDER_EXIST),
                    "close_order_exist",
                    f"order {closing.client_order_id} is already closing position {req.position}",
                )
        if verdict is None:
            denial = self.risk.check(
                req, book, self.last_tick(book.feed, req.symbol), self._notional_of(book)
            )
            if denial is not None:
                verdict = (RISK_RETCODE, denial.reason, f"{denial.text} ({denial.scope} limit)")
        if verdict is not None:
            retcode, reason, text = verdict
            return self._deny(book, order, req, actor, retcode, reason, text, now)
        self.risk.record(req)
        self._requests[(req.tenant, req.account, req.client_order_id)] = req
        if req.action is TradeAction.CLOSE_BY:  # it closes the smaller volume of the two (fills once)
            pair = (_position(book, req.position), _position(book, req.position_by))
            order = msgspec.structs.replace(order, volume=min(p.volume for p in pair if p is not None))
        submitted = OrderSubmitted(
            tenant=req.tenant,
            account=req.account,
            client_order_id=req.client_order_id,
            ts_ns=now,
            request=req,
        )
        order = transition(order, submitted)
        book.put_order(order)
        durable = self._writer.write(order, actor, "order.submitted", {"request": plain(req)}, req)
        self.counters["submitted"] += 1
        self._outbox.append((book.command_subject, TradeCommand(request=req)))
        self._emit(book, submitted)
        return SubmitResult(order, int(Retcode.DONE)), durable

    def _forget_unwritten(self, order: Order) -> None:
        """The order's row could not be written: forget the order, so that a retry decides afresh."""
        book = self.book(order.tenant, order.account)
        if book is not None and book.orders.get(order.client_order_id) is order:
            book.drop_order(order.client_order_id)
        self._requests.pop((order.tenant, order.account, order.client_order_id), None)

    def _closing_order(self, book: AccountBook, req: OrderRequest) -> Order | None:
        """A working order of `book` whose request closes the position `req` closes (MT5's 10039)."""
        for order in book.working_orders():
            other = self._requests.get((book.tenant, book.account, order.client_order_id))
            if other is not None and other.action is TradeAction.DEAL and other.position == req.position:
                return order
        return None

    def _new_order(self, req: OrderRequest, problems: tuple[str, ...]) -> Order:
        if req.opens_order and not problems:
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

    def _precheck(
        self, req: OrderRequest, book: AccountBook, now: int, problems: tuple[str, ...] | None = None
    ) -> tuple[int, str, str] | None:
        if problems is None:
            problems = request_problems(req)
        if problems:
            return int(Retcode.INVALID), "invalid_request", "; ".join(problems)
        if req.action is TradeAction.REMOVE:
            return None
        if req.action is TradeAction.CLOSE_BY:
            refused = _close_by_refusal(req, book)
            if refused is not None:
                return refused
        spec = self.spec_of(book, req.symbol)
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
            rates=self._rates(book.feed),
        )
        if result.retcode != Retcode.DONE:
            return int(result.retcode), Retcode(result.retcode).name.lower(), result.comment
        return None

    def _deny(
        self,
        book: AccountBook,
        order: Order,
        req: OrderRequest,
        actor: str,
        retcode: int,
        reason: str,
        text: str,
        now: int,
    ) -> tuple[SubmitResult, asyncio.Future[None]]:
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
        payload = {"reason": reason, "retcode": retcode, "text": text, "request": plain(req)}
        durable = self._writer.write(order, actor, "order.denied", payload)
        self.counters["denied"] += 1
        self._emit(book, denied)
        return SubmitResult(order, retcode, reason, text), durable

    # --- messages from the bus -----------------------------------------------------------------------------
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
            elif isinstance(msg, SymbolSpecs):
                await self.on_specs(msg)
        except (OrderStateError, KeyError, ValueError) as exc:
            _log.warning("engine.message_refused", subject=subject, error=str(exc))

    async def on_tick(self, tick: Tick) -> None:
        """Keep the last tick; value the positions of accounts on that feed; update risk states."""
        self._ticks[(tick.feed, tick.symbol)] = tick
        books = self.books_on(tick.feed)
        for book in books:  # a loop, not `any` over a generator: on every tick
            if book.positions:
                break
        else:
            return
        lock = self._lock
        # `_waiters` is asyncio's (3.11–3.13); were it ever renamed, every tick would take the locked path.
        if lock.locked() or getattr(lock, "_waiters", True):  # a change under way or waiting: take turns
            await self._locked(self._on_tick(tick))
            return
        # The lock is free and nobody waits for it, and nothing else runs before this awaits: marking now
        # is what `_locked` would do (acquire at once, mark, release). A risk state change has to await its
        # audit record and account row: the lock is taken then (at once, too) for the rest of the tick.
        symbol, bid, ask = tick.symbol, tick.bid, tick.ask
        for book in books:
            if not book.positions:
                continue
            if book.mark(symbol, bid, ask, self._profit_fn(book), self._clock.now_ns()):
                changed = self.risk.evaluate(book)
                if changed is not None:
                    async with lock:
                        await self._risk_changed(book, changed)
                        self._account_updated(book, from_tick=True)
                        await self._mark_books(books[books.index(book) + 1 :], tick)
                        out, self._outbox = self._outbox, []
                    if out:
                        await self._publish(out)
                    return
                self._account_updated(book, from_tick=True)
        out = self._outbox
        if out:  # most ticks produce nothing to publish (and keep the empty outbox)
            self._outbox = []
            await self._publish(out)

    async def _on_tick(self, tick: Tick) -> None:
        self._ticks[(tick.feed, tick.symbol)] = tick
        await self._mark_books(self.books_on(tick.feed), tick)

    async def _mark_books(self, books: list[AccountBook], tick: Tick) -> None:
        for book in books:
            if not book.positions:
                continue
            if book.mark(tick.symbol, tick.bid, tick.ask, self._profit_fn(book), self._clock.now_ns()):
                await self._after_money_change(book, from_tick=True)

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
        payload["limits"] = None if limits is None else plain(limits)
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
            await self._audit.append(tenant, actor, "risk.state", plain(changed))
            self._emit(book, changed)
            await self._save_account(book)
        return book


def _close_by_refusal(req: OrderRequest, book: AccountBook) -> tuple[int, str, str] | None:
    """Refuse a CLOSE_BY as MT5 would: hedging accounts only, two open opposite positions of one symbol."""
    if not book.hedging:
        return int(Retcode.INVALID), "hedging_only", "TRADE_ACTION_CLOSE_BY is for hedging accounts"
    position, by = _position(book, req.position), _position(book, req.position_by)
    if position is None or by is None:
        ticket = req.position if position is None else req.position_by
        return POSITION_CLOSED_RETCODE, "position_closed", f"position {ticket} is not open"
    if position.symbol != by.symbol or position.type is by.type or req.symbol != position.symbol:
        text = f"positions {position.ticket} and {by.ticket} are not opposite positions of {req.symbol}"
        return int(Retcode.INVALID), "not_opposite", text
    return None


def _position(book: AccountBook, ticket: int) -> Position | None:
    """Return the open position with `ticket` (its identifier on hedging accounts, as a rule)."""
    found = book.positions.get(ticket)
    return found or next((p for p in book.positions.values() if p.ticket == ticket), None)
