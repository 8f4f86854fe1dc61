"""Persistence of the engine's books: accounts, orders, deals, positions and risk limits (SQLAlchemy).

Every write runs in a transaction scoped to the tenant (row-level security on PostgreSQL) and filters by
tenant itself too (SQLite has no row-level security). Orders and positions are stored whole as JSON next to
query columns, so a restart reloads exactly what was booked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.common.clock import Clock
from aitrading.engine.limits import RiskLimits, RiskScope, RiskState
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, MarginMode
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.orders import Order
from aitrading.model.positions import Position
from aitrading.storage.oltp import Database, Tenant
from aitrading.storage.oltp.models_trading import DealRow, OrderRow, PositionRow, RiskLimitRow, TradingAccount

__all__ = ["EngineStore", "StoredAccount"]

_json = msgspec.json.Encoder(decimal_format="string")


@dataclass(slots=True)
class StoredAccount:
    """One account as reloaded at start: its state, risk state, working orders, deals and positions."""

    tenant: TenantId
    account: AccountId
    feed: str
    state: AccountState
    risk_state: RiskState
    risk_reason: str
    peak_equity: object
    orders: list[Order] = field(default_factory=list)
    requests: dict[str, OrderRequest] = field(default_factory=dict)
    """The requests behind the working orders, by client order id (for sending them again)."""
    deals: list[Deal] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)


class EngineStore:
    """Reads and writes the engine's tables."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @property
    def db(self) -> Database:
        """The database the books live in."""
        return self._db

    def _now(self) -> datetime:
        return self._clock.utcnow()

    async def save_account(
        self,
        tenant: TenantId,
        account: AccountId,
        feed: str,
        state: AccountState,
        risk_state: RiskState,
        risk_reason: str,
        peak_equity: object,
    ) -> None:
        """Insert or update the account row."""
        tid = uuid.UUID(tenant)
        values = {
            "feed": feed,
            "login": state.login,
            "currency": state.currency,
            "digits": state.digits,
            "leverage": state.leverage,
            "margin_mode": int(state.margin_mode),
            "balance": state.balance,
            "credit": state.credit,
            "equity": state.equity,
            "margin": state.margin,
            "profit": state.profit,
            "risk_state": risk_state.value,
            "risk_reason": risk_reason[:500],
            "peak_equity": peak_equity,
            "updated_at": self._now(),
        }
        async with self._db.session(tid) as session:
            row = await session.scalar(
                sa.select(TradingAccount).where(
                    TradingAccount.tenant_id == tid, TradingAccount.account == account
                )
            )
            if row is None:
                session.add(TradingAccount(tenant_id=tid, account=account, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)

    async def save_order(self, order: Order, request: OrderRequest | None = None) -> None:
        """Insert or update one order (by tenant and client order id), with the request behind it."""
        tid = uuid.UUID(order.tenant)
        async with self._db.session(tid) as session:
            await self.save_orders_in(session, tid, [order], [request])

    async def save_orders_in(
        self,
        session: AsyncSession,
        tenant: uuid.UUID,
        orders: Sequence[Order],
        requests: Sequence[OrderRequest | None] | None = None,
    ) -> None:
        """Insert or update `orders` of `tenant` (by client order id) inside the caller's transaction.

        `requests[i]`, when given, is stored with `orders[i]` so that the command can be sent again after a
        restart (MODIFY and REMOVE cannot be rebuilt from the order they track).
        """
        if not orders:
            return
        reqs = list(requests) if requests is not None else [None] * len(orders)
        now = self._now()
        rows = {
            row.client_order_id: row
            for row in await session.scalars(
                sa.select(OrderRow).where(
                    OrderRow.tenant_id == tenant,
                    OrderRow.client_order_id.in_([o.client_order_id for o in orders]),
                )
            )
        }
        for order, request in zip(orders, reqs, strict=True):
            values = {
                "account": order.account,
                "strategy": order.strategy,
                "symbol": order.symbol,
                "type": int(order.type),
                "state": int(order.state),
                "volume": order.volume,
                "volume_filled": order.volume_filled,
                "price": order.price,
                "ticket": order.ticket,
                "retcode": order.retcode,
                "reason": order.reason,
                "data": _order_data(order, request),
                "updated_at": now,
            }
            row = rows.get(order.client_order_id)
            if row is None:
                row = rows[order.client_order_id] = OrderRow(
                    tenant_id=tenant, client_order_id=order.client_order_id, created_at=now, **values
                )
                session.add(row)
            else:
                for key, value in values.items():
                    setattr(row, key, value)

    async def save_deals(self, tenant: TenantId, account: AccountId, deals: Iterable[Deal]) -> None:
        """Insert deals not stored yet (by ticket)."""
        tid = uuid.UUID(tenant)
        deals = list(deals)
        if not deals:
            return
        async with self._db.session(tid) as session:
            known = set(
                await session.scalars(
                    sa.select(DealRow.ticket).where(
                        DealRow.tenant_id == tid,
                        DealRow.account == account,
                        DealRow.ticket.in_([d.ticket for d in deals]),
                    )
                )
            )
            for d in deals:
                if d.ticket in known:
                    continue
                known.add(d.ticket)
                session.add(
                    DealRow(
                        tenant_id=tid,
                        account=account,
                        ticket=d.ticket,
                        order=d.order,
                        position_id=d.position_id,
                        symbol=d.symbol,
                        type=int(d.type),
                        entry=int(d.entry),
                        volume=d.volume,
                        price=d.price,
                        commission=d.commission,
                        swap=d.swap,
                        profit=d.profit,
                        fee=d.fee,
                        time_ns=d.time_ns,
                        magic=d.magic,
                        reason=d.reason,
                        comment=d.comment[:64],
                    )
                )

    async def replace_positions(
        self, tenant: TenantId, account: AccountId, positions: Iterable[Position]
    ) -> None:
        """Make the stored open positions of the account exactly `positions`."""
        tid = uuid.UUID(tenant)
        now = self._now()
        async with self._db.session(tid) as session:
            await session.execute(
                sa.delete(PositionRow).where(PositionRow.tenant_id == tid, PositionRow.account == account)
            )
            for p in positions:
                session.add(
                    PositionRow(
                        tenant_id=tid,
                        account=account,
                        identifier=p.identifier,
                        symbol=p.symbol,
                        type=int(p.type),
                        volume=p.volume,
                        data=_json.encode(p).decode(),
                        updated_at=now,
                    )
                )

    async def save_limits(
        self, tenant: TenantId, scope: RiskScope, scope_id: str, limits: RiskLimits | None, actor: str
    ) -> None:
        """Store (or with None delete) one level's limits."""
        tid = uuid.UUID(tenant)
        async with self._db.session(tid) as session:
            row = await session.scalar(
                sa.select(RiskLimitRow).where(
                    RiskLimitRow.tenant_id == tid,
                    RiskLimitRow.scope == scope.value,
                    RiskLimitRow.scope_id == scope_id,
                )
            )
            if limits is None:
                if row is not None:
                    await session.delete(row)
                return
            text = _json.encode(limits).decode()
            if row is None:
                session.add(
                    RiskLimitRow(
                        tenant_id=tid,
                        scope=scope.value,
                        scope_id=scope_id,
                        limits=text,
                        updated_by=actor[:200],
                        updated_at=self._now(),
                    )
                )
            else:
                row.limits, row.updated_by, row.updated_at = text, actor[:200], self._now()

    async def load(
        self, tenant: TenantId
    ) -> tuple[list[StoredAccount], list[tuple[RiskScope, str, RiskLimits]]]:
        """Return a tenant's accounts (with working orders, deals and positions) and its risk limits."""
        tid = uuid.UUID(tenant)
        out: list[StoredAccount] = []
        async with self._db.session(tid) as session:
            for row in await session.scalars(
                sa.select(TradingAccount).where(TradingAccount.tenant_id == tid)
            ):
                state = AccountState.of(
                    login=row.login,
                    currency=row.currency,
                    leverage=row.leverage,
                    margin_mode=MarginMode(row.margin_mode),
                    balance=row.balance,
                    credit=row.credit,
                    floating=row.profit,
                    margin=row.margin,
                    digits=row.digits,
                )
                out.append(
                    StoredAccount(
                        tenant=tenant,
                        account=AccountId(row.account),
                        feed=row.feed,
                        state=state,
                        risk_state=RiskState(row.risk_state),
                        risk_reason=row.risk_reason,
                        peak_equity=row.peak_equity,
                    )
                )
            by_account = {a.account: a for a in out}
            for order_row in await session.scalars(sa.select(OrderRow).where(OrderRow.tenant_id == tid)):
                stored = by_account.get(AccountId(order_row.account))
                if stored is not None:
                    order = msgspec.json.decode(order_row.data, type=Order)
                    stored.orders.append(order)
                    request = msgspec.json.decode(order_row.data, type=_RequestOf).request
                    if request is not None and not order.is_terminal:
                        stored.requests[order.client_order_id] = request
            for deal_row in await session.scalars(
                sa.select(DealRow).where(DealRow.tenant_id == tid).order_by(DealRow.time_ns, DealRow.ticket)
            ):
                stored = by_account.get(AccountId(deal_row.account))
                if stored is not None:
                    stored.deals.append(_deal(deal_row))
            for pos_row in await session.scalars(sa.select(PositionRow).where(PositionRow.tenant_id == tid)):
                stored = by_account.get(AccountId(pos_row.account))
                if stored is not None:
                    stored.positions.append(msgspec.json.decode(pos_row.data, type=Position))
            limits = [
                (RiskScope(r.scope), r.scope_id, msgspec.json.decode(r.limits, type=RiskLimits))
                for r in await session.scalars(sa.select(RiskLimitRow).where(RiskLimitRow.tenant_id == tid))
            ]
        return out, limits

    async def tenants_with_accounts(self) -> list[TenantId]:
        """Return every tenant that has trading accounts.

        Tenants are listed first (that table has no row-level security), then each is asked inside its own
        transaction: as the app role (ADR 0015) a query across tenants sees no trading account at all.
        """
        async with self._db.session() as session:
            tenants = list(await session.scalars(sa.select(Tenant.id)))
        found: list[TenantId] = []
        for tenant in tenants:
            async with self._db.session(tenant) as session:
                if await session.scalar(sa.select(TradingAccount.id).limit(1)) is not None:
                    found.append(TenantId(str(tenant)))
        return found


class _RequestOf(msgspec.Struct):
    """The request stored next to an order's fields in `OrderRow.data` (absent in rows before it was)."""

    request: OrderRequest | None = None


def _order_data(order: Order, request: OrderRequest | None) -> str:
    """Return the order as a JSON object, with its request as one more member when there is one."""
    text = _json.encode(order).decode()
    if request is None:
        return text
    # The Order's own object, closed one member later: decoding it as an `Order` ignores `request`.
    return f'{text[:-1]},"request":{_json.encode(request).decode()}}}'


def _deal(row: DealRow) -> Deal:
    return Deal(
        ticket=row.ticket,
        order=row.order,
        position_id=row.position_id,
        symbol=row.symbol,
        type=DealType(row.type),
        entry=DealEntry(row.entry),
        volume=row.volume,
        price=row.price,
        commission=row.commission,
        swap=row.swap,
        profit=row.profit,
        fee=row.fee,
        time_ns=row.time_ns,
        magic=row.magic,
        reason=row.reason,
        comment=row.comment,
    )
