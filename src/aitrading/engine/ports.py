"""What the trading engine needs from persistence, as ports: the books' store, the audit trail and the
order writer (the row and audit event of each new order, committed before its command goes out).

Live, they are `EngineStore` and `AuditLog` on the OLTP database (SQLite or PostgreSQL) with the
group-commit `OrderWriter`. A backtest passes the in-memory ones (`engine.memory`): the same engine code
decides, checks and books; only where its rows and audit events are kept differs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from aitrading.engine.limits import RiskLimits, RiskScope, RiskState
from aitrading.engine.store import StoredAccount
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.orders import Order
from aitrading.model.positions import Position

__all__ = ["AuditTrail", "BookStore", "OrderLog"]


class BookStore(Protocol):
    """Accounts, orders, deals, positions and risk limits, per tenant (`EngineStore`, `MemoryStore`)."""

    async def save_account(
        self,
        tenant: TenantId,
        account: AccountId,
        feed: str,
        state: AccountState,
        risk_state: RiskState,
        risk_reason: str,
        peak_equity: object,
    ) -> None: ...

    async def save_order(self, order: Order, request: OrderRequest | None = None) -> None: ...

    async def save_deals(self, tenant: TenantId, account: AccountId, deals: Iterable[Deal]) -> None: ...

    async def replace_positions(
        self, tenant: TenantId, account: AccountId, positions: Iterable[Position]
    ) -> None: ...

    async def save_limits(
        self, tenant: TenantId, scope: RiskScope, scope_id: str, limits: RiskLimits | None, actor: str
    ) -> None: ...

    async def load(
        self, tenant: TenantId
    ) -> tuple[list[StoredAccount], list[tuple[RiskScope, str, RiskLimits]]]: ...

    async def tenants_with_accounts(self) -> list[TenantId]: ...


class AuditTrail(Protocol):
    """The tenants' hash-chained audit events (`AuditLog`, `MemoryAudit`)."""

    async def append(
        self, tenant_id: uuid.UUID | str, actor: str, kind: str, payload: Mapping[str, Any]
    ) -> object: ...


class OrderLog(Protocol):
    """Commits a new order's row with its audit event (`OrderWriter`, `MemoryWriter`)."""

    def write(
        self,
        order: Order,
        actor: str,
        kind: str,
        payload: Mapping[str, Any],
        request: OrderRequest | None = None,
    ) -> asyncio.Future[None]: ...

    def pending(self, client_order_id: str) -> asyncio.Future[None] | None: ...

    async def close(self) -> None: ...
