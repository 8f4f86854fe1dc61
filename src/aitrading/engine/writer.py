"""Group commit of new order rows and their audit events.

`submit` decides in memory and hands the order row and its audit event (`order.submitted` or
`order.denied`) to `OrderWriter.write`, which returns a future. One writer task commits everything pending
— from any number of concurrent submits — in one transaction per tenant: the order rows (one upsert) and
the audit events (consecutive seqs of the tenant's chain), so a row never exists without its event or the
other way round. The future resolves once that transaction has committed; `submit` returns, and the
command goes to the agent, only then. While one batch commits the next one gathers, so batches grow with
the load and a lone submit waits for no timer.

If a batch fails, its items are retried one by one so that one bad item does not fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from aitrading.engine.store import EngineStore
from aitrading.model.commands import OrderRequest
from aitrading.model.orders import Order
from aitrading.storage.audit import AuditLog

__all__ = ["OrderWriter"]

_log = structlog.get_logger("engine.writer")


@dataclass(slots=True)
class _Item:
    order: Order
    actor: str
    kind: str
    payload: Mapping[str, Any]
    request: OrderRequest | None
    done: asyncio.Future[None]


class OrderWriter:
    """Batches order rows and audit events into one transaction per tenant; see the module docstring."""

    def __init__(self, store: EngineStore, audit: AuditLog, *, max_batch: int = 500) -> None:
        if store.db is not audit.db:
            raise ValueError("the order store and the audit log must share one database")
        self._store = store
        self._audit = audit
        self._max_batch = max_batch
        self._queue: list[_Item] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
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
        """Queue `order`'s row (with its `request`) and its audit event; return a future done once both
        are committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Item(order, actor, kind, payload, request, done))
        coid = order.client_order_id
        self._pending[coid] = done
        done.add_done_callback(lambda _f: self._forget(coid, done))
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="engine-order-writer")
        assert self._wake is not None
        self._wake.set()
        return done

    def pending(self, client_order_id: str) -> asyncio.Future[None] | None:
        """Return the future of the order's row if it is not committed yet."""
        return self._pending.get(client_order_id)

    async def close(self) -> None:
        """Commit what is queued, then stop the writer task."""
        while self._queue or self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)
            await asyncio.sleep(0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _forget(self, coid: str, done: asyncio.Future[None]) -> None:
        if self._pending.get(coid) is done:
            del self._pending[coid]

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                await self._commit(batch)

    async def _commit(self, batch: list[_Item]) -> None:
        by_tenant: dict[uuid.UUID, list[_Item]] = {}
        for item in batch:
            by_tenant.setdefault(uuid.UUID(item.order.tenant), []).append(item)
        for tid, items in by_tenant.items():
            try:
                await self._commit_tenant(tid, items)
            except Exception as exc:  # handed to the submits waiting on it
                if len(items) == 1:
                    _log.error("order_write_failed", order=items[0].order.client_order_id, error=repr(exc))
                    _settle(items, exc)
                    continue
                for item in items:  # find the bad one; the others still commit
                    try:
                        await self._commit_tenant(tid, [item])
                    except Exception as one:
                        _log.error("order_write_failed", order=item.order.client_order_id, error=repr(one))
                        _settle([item], one)
                    else:
                        _settle([item], None)
            else:
                _settle(items, None)

    async def _commit_tenant(self, tid: uuid.UUID, items: list[_Item]) -> None:
        async with self._audit.local_lock(tid), self._store.db.session(tid) as session:
            await self._store.save_orders_in(
                session, tid, [i.order for i in items], [i.request for i in items]
            )
            await self._audit.append_many_in(session, tid, [(i.actor, i.kind, i.payload) for i in items])
        self.batches += 1
        self.rows += len(items)


def _settle(items: list[_Item], exc: BaseException | None) -> None:
    for item in items:
        if item.done.done():
            continue
        if exc is None:
            item.done.set_result(None)
        else:
            item.done.set_exception(exc)
