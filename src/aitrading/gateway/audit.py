"""Security events of the gateway (RBAC denials, MFA step-up required, rate limiting) into the audit log.

The request path only puts an event on a bounded queue (`put_nowait`, no awaiting); one background task
writes them to the hash-chained `AuditLog` and logs each. A full queue drops the new event and counts it
(`aitrading_gateway_audit_dropped_total`): a flood must not slow the gateway or grow its memory. Rate-limit
refusals are audited at most once per principal per `rate_limited_every_s`, since a client hammering past its
limit would otherwise write thousands of identical events.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from aitrading.common import metrics
from aitrading.common.auth import Principal
from aitrading.common.clock import Clock

__all__ = ["AuditSink", "SecurityAuditor", "SecurityEvent"]

_log = structlog.get_logger("gateway.audit")
_NS = 1_000_000_000

_DROPPED = metrics.counter(
    "gateway_audit_dropped", "Security events dropped because the audit queue was full"
)
_WRITTEN = metrics.counter("gateway_audit_written", "Security events written to the audit log")
_FAILED = metrics.counter("gateway_audit_failed", "Security events the audit log refused (logged instead)")


class AuditSink(Protocol):
    """Where events go: `aitrading.storage.audit.AuditLog` has this method."""

    async def append(
        self, tenant_id: uuid.UUID | str, actor: str, kind: str, payload: Mapping[str, Any]
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One security event as queued."""

    tenant: str | None
    actor: str
    kind: str
    payload: dict[str, Any]


class SecurityAuditor:
    """Queues security events on the request path and writes them from a background task."""

    def __init__(
        self,
        sink: AuditSink | None,
        clock: Clock,
        *,
        max_queue: int = 10_000,
        rate_limited_every_s: float = 60,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._queue: asyncio.Queue[SecurityEvent] = asyncio.Queue(max_queue)
        self._every_ns = int(rate_limited_every_s * _NS)
        self._last_limited: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def record(self, principal: Principal, kind: str, payload: dict[str, Any]) -> bool:
        """Queue an event without waiting; False when it was dropped (queue full or coalesced)."""
        if kind == "gateway.rate_limited" and self._every_ns:
            now = self._clock.monotonic_ns()
            last = self._last_limited.get(principal.subject)
            if last is not None and now - last < self._every_ns:
                return False
            if len(self._last_limited) >= 100_000:  # bound the memory of who was audited when
                self._last_limited.clear()
            self._last_limited[principal.subject] = now
        event = SecurityEvent(principal.tenant, principal.subject[:200], kind, payload)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            _DROPPED.inc()
            return False
        return True

    def start(self) -> None:
        """Start the writer task (in the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="gateway-audit")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to `timeout_s`), then stop the writer."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _drain(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._write(event)
            finally:
                self._queue.task_done()

    async def _write(self, event: SecurityEvent) -> None:
        _log.warning(event.kind, actor=event.actor, tenant=event.tenant, **event.payload)
        if self._sink is None:
            return
        tenant = _tenant_uuid(event.tenant)
        if tenant is None:
            # Chains are per tenant; a platform-wide principal's event stays in the log stream above.
            return
        try:
            await self._sink.append(tenant, event.actor, event.kind, event.payload)
        except Exception as exc:  # the audit store failing must not kill the writer; the log line stays
            _FAILED.inc()
            _log.error("audit_append_failed", kind=event.kind, error=f"{type(exc).__name__}: {exc}"[:300])
        else:
            _WRITTEN.inc()


def _tenant_uuid(tenant: str | None) -> uuid.UUID | None:
    if tenant is None:
        return None
    try:
        return uuid.UUID(tenant)
    except ValueError:
        return None
