"""In-memory persistence for the trading engine (the ports of `engine.ports`), for backtests.

A backtest's books are thrown away at the end, so writing them to a database (an SQLite transaction per
order row, deal, position set, account row and audit event) only slows it down: it was ~95% of a bar
backtest's time. These keep the same objects in dictionaries instead, and the audit trail is still the
real hash chain (`storage.audit`'s canonical text and sha256, checked by the same `ChainChecker`), so the
audit of a backtest explains its trades exactly as a live one would. What the engine decides, checks and
books does not depend on which persistence it is given.

`MemoryWriter` commits an order's row and its audit event at once: the future it returns is already done,
so `submit` does not wait for a writer task.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from aitrading.common.clock import Clock, TestClock
from aitrading.common.errors import BadInputError
from aitrading.engine.limits import RiskLimits, RiskScope, RiskState
from aitrading.engine.store import StoredAccount
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.orders import Order
from aitrading.model.positions import Position
from aitrading.storage.audit.chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainChecker,
    VerifyResult,
    canonical_json,
    event_hash,
)

__all__ = ["MemoryAudit", "MemoryStore", "MemoryWriter"]

_MAX_KIND, _MAX_ACTOR = 64, 200  # as `storage.audit`
_MAX_TENANT_IDS = 1024


class _Account:
    __slots__ = ("feed", "peak_equity", "risk_reason", "risk_state", "state")

    def __init__(
        self, feed: str, state: AccountState, risk_state: RiskState, reason: str, peak: object
    ) -> None:
        self.feed, self.state, self.risk_state, self.risk_reason = feed, state, risk_state, reason
        self.peak_equity = peak


class MemoryStore:
    """The engine's books kept in memory; the same methods as `EngineStore`."""

    def __init__(self) -> None:
        self._accounts: dict[tuple[str, str], _Account] = {}
        # Deals and positions are kept apart from the account row: the engine may store them first.
        self._deals: dict[tuple[str, str], dict[int, Deal]] = {}
        self._positions: dict[tuple[str, str], list[Position]] = {}
        self._orders: dict[str, dict[str, tuple[Order, OrderRequest | None]]] = {}
        self._limits: dict[str, dict[tuple[RiskScope, str], RiskLimits]] = {}
        self.writes = 0

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
        """Insert or update the account."""
        self.writes += 1
        found = self._accounts.get((tenant, account))
        if found is None:
            self._accounts[(tenant, account)] = _Account(
                feed, state, risk_state, risk_reason[:500], peak_equity
            )
            return
        found.feed, found.state, found.risk_state = feed, state, risk_state
        found.risk_reason, found.peak_equity = risk_reason[:500], peak_equity

    async def save_order(self, order: Order, request: OrderRequest | None = None) -> None:
        """Insert or update one order (by tenant and client order id), with the request behind it."""
        self.put_order(order, request)

    def put_order(self, order: Order, request: OrderRequest | None) -> None:
        """`save_order` without the await (the writer's path)."""
        self.writes += 1
        self._orders.setdefault(order.tenant, {})[order.client_order_id] = (order, request)

    async def save_deals(self, tenant: TenantId, account: AccountId, deals: Iterable[Deal]) -> None:
        """Insert deals not stored yet (by ticket)."""
        self.writes += 1
        stored = self._deals.setdefault((tenant, account), {})
        for deal in deals:
            stored.setdefault(deal.ticket, deal)

    async def replace_positions(
        self, tenant: TenantId, account: AccountId, positions: Iterable[Position]
    ) -> None:
        """Make the stored open positions of the account exactly `positions`."""
        self.writes += 1
        self._positions[(tenant, account)] = list(positions)

    async def save_limits(
        self, tenant: TenantId, scope: RiskScope, scope_id: str, limits: RiskLimits | None, actor: str
    ) -> None:
        """Store (or with None delete) one level's limits."""
        self.writes += 1
        levels = self._limits.setdefault(tenant, {})
        if limits is None:
            levels.pop((scope, scope_id), None)
        else:
            levels[(scope, scope_id)] = limits

    async def load(
        self, tenant: TenantId
    ) -> tuple[list[StoredAccount], list[tuple[RiskScope, str, RiskLimits]]]:
        """Return a tenant's accounts (with orders, deals and positions) and its risk limits."""
        out: dict[str, StoredAccount] = {}
        for (t, account), a in self._accounts.items():
            if t == tenant:
                out[account] = StoredAccount(
                    tenant=tenant,
                    account=AccountId(account),
                    feed=a.feed,
                    state=a.state,
                    risk_state=a.risk_state,
                    risk_reason=a.risk_reason,
                    peak_equity=a.peak_equity,
                    deals=sorted(self._deals.get((t, account), {}).values(), key=_deal_order),
                    positions=list(self._positions.get((t, account), [])),
                )
        for order, request in self._orders.get(tenant, {}).values():
            stored = out.get(order.account)
            if stored is not None:
                stored.orders.append(order)
                if request is not None and not order.is_terminal:
                    stored.requests[order.client_order_id] = request
        limits = [(scope, sid, lim) for (scope, sid), lim in self._limits.get(tenant, {}).items()]
        return list(out.values()), limits

    async def tenants_with_accounts(self) -> list[TenantId]:
        """Return every tenant that has trading accounts."""
        return list(dict.fromkeys(TenantId(t) for t, _ in self._accounts))


def _deal_order(deal: Deal) -> tuple[int, int]:
    return deal.time_ns, deal.ticket


class MemoryAudit:
    """Per-tenant hash-chained audit events in memory: the same chain `AuditLog` writes, same hashes."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._chains: dict[uuid.UUID, list[AuditRecord]] = {}
        self._tenant_ids: dict[str, uuid.UUID] = {}  # parsed once: every event of a run names its tenant
        self._ts, self._ts_ns = clock.utcnow(), clock.now_ns()

    async def append(
        self, tenant_id: uuid.UUID | str, actor: str, kind: str, payload: Mapping[str, Any]
    ) -> AuditRecord:
        """Append one event to the tenant's chain and return it."""
        return self.append_now(tenant_id, actor, kind, payload)

    def append_now(
        self, tenant_id: uuid.UUID | str, actor: str, kind: str, payload: Mapping[str, Any]
    ) -> AuditRecord:
        """`append` without the await."""
        tid, text = self._checked(tenant_id, actor, kind, payload)
        chain = self._chain(tid)
        if chain:
            last = chain[-1]
            seq, prev = last.seq + 1, last.hash
        else:
            seq, prev = 1, GENESIS_HASH
        ts = self._now()
        record = AuditRecord(
            tid, seq, ts, actor, kind, text, prev, event_hash(prev, seq, ts, actor, kind, text)
        )
        chain.append(record)
        return record

    def _checked(
        self, tenant_id: uuid.UUID | str, actor: str, kind: str, payload: Mapping[str, Any]
    ) -> tuple[uuid.UUID, str]:
        """Return the tenant's id and the payload's canonical text; raise `BadInputError` for a bad event."""
        tid = tenant_id if isinstance(tenant_id, uuid.UUID) else self._tenant_id(tenant_id)
        if not kind or len(kind) > _MAX_KIND:
            raise BadInputError(f"audit kind must be 1-{_MAX_KIND} characters, got {kind!r}")
        if not actor or len(actor) > _MAX_ACTOR:
            raise BadInputError(f"audit actor must be 1-{_MAX_ACTOR} characters, got {actor!r}")
        try:
            return tid, canonical_json(payload if type(payload) is dict else dict(payload))
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"audit payload is not canonical JSON: {exc}") from exc

    def _chain(self, tid: uuid.UUID) -> list[AuditRecord]:
        chain = self._chains.get(tid)
        if chain is None:
            chain = self._chains[tid] = []
        return chain

    def _now(self) -> datetime:
        """`clock.utcnow()`; a `TestClock`'s, made once per instant (the events of one decision share it)."""
        clock = self._clock
        if type(clock) is not TestClock:
            return clock.utcnow()
        ns = clock.now_ns()
        if ns != self._ts_ns:
            self._ts, self._ts_ns = clock.utcnow(), ns
        return self._ts

    def _tenant_id(self, text: str) -> uuid.UUID:
        found = self._tenant_ids.get(text)
        if found is None:
            found = uuid.UUID(text)  # raises ValueError for a malformed id, as before
            if len(self._tenant_ids) < _MAX_TENANT_IDS:
                self._tenant_ids[text] = found
        return found

    def records(self, tenant_id: uuid.UUID | str) -> list[AuditRecord]:
        """Return the tenant's events in seq order."""
        tid = tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(tenant_id)
        return list(self._chains.get(tid, []))

    def verify(self, tenant_id: uuid.UUID | str) -> VerifyResult:
        """Verify the tenant's chain (the check `AuditLog.verify` makes)."""
        checker = ChainChecker()
        checker.feed(self.records(tenant_id))
        return checker.result()


class MemoryWriter:
    """Commits an order's row and its audit event at once (`OrderWriter`'s contract, without a task)."""

    def __init__(self, store: MemoryStore, audit: MemoryAudit) -> None:
        self._store, self._audit = store, audit
        self.batches = 0
        self.rows = 0

    def write(
        self,
        order: Order,
        actor: str,
        kind: str,
        payload: Mapping[str, Any],
        request: OrderRequest | None = None,
    ) -> asyncio.Future[None]:
        """Store `order` with `request` and append its audit event; return a done future (failed if the
        event is refused, and then the row is not stored either)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._audit.append_now(order.tenant, actor, kind, payload)
        except BadInputError as exc:
            done.set_exception(exc)
            return done
        self._store.put_order(order, request)
        self.batches += 1
        self.rows += 1
        done.set_result(None)
        return done

    def pending(self, client_order_id: str) -> asyncio.Future[None] | None:
        """Nothing is ever waiting to be committed."""
        return None

    async def close(self) -> None:
        """Nothing to flush."""
